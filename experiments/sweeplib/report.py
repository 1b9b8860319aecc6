"""What people read: the plan table, the status table, and the sweep-level progress line."""

from __future__ import annotations

import json
import math
import statistics
import sys
import threading
import time

import numpy as np

from experiments.sweeplib import ledger
from experiments.sweeplib.layout import SweepDir
from experiments.sweeplib.plan import human


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def table(header: list[str], body: list[list]) -> str:
    cells = [header] + [[str(x) for x in row] for row in body]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(cells[0]), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells[1:]])


def plan_table(runs, estimates: dict | None, workers: int) -> str:
    """name, N, non-embedding N, D, C, tokens/param, estimated wall time; then the totals."""
    body = []
    for run in runs:
        est = estimates.get(run.name) if estimates else None
        body.append([
            run.name, human(run.params), human(run.nonembedding_params), human(run.tokens),
            f"{run.flops:.2e}", f"{run.tokens / run.params:.1f}",
            f"{run.start_step}..{run.steps}" if run.start_step else run.steps,
            run.depends_on and "after parent" or run.role, duration(est) if estimates else "-",
        ])
    text = table(["run", "N", "N_nonemb", "D", "C", "D/N", "steps", "role", "est. wall"], body)
    trained = sum(r.flops * r.steps_to_train / r.steps for r in runs)
    total = f"\n{len(runs)} runs, {trained:.3g} training FLOPs"
    if estimates:
        serial = sum(estimates.values())
        total += f", estimated {duration(serial)} on one worker"
        if workers > 1:
            total += f" (about {duration(serial / workers)} with {workers} workers)"
    return text + total


def last_step(sweep_dir: SweepDir, name: str) -> int | None:
    """The latest step the trainer logged (metrics.jsonl), for runs in progress."""
    try:
        with open(sweep_dir.run_dir(name) / "metrics.jsonl", "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


TIMING_PARTS = (("startup_s", "start-up"), ("setup_s", "setup"), ("data_s", "data"),
                ("compile_s", "compile"), ("eval_s", "curve evals"), ("final_eval_s", "final eval"),
                ("checkpoint_s", "checkpoint"))


def timing_text(timing: dict) -> str:
    """'fixed 3.1s: start-up 1.2, ..., checkpoint 0.1; training 15.2s'."""
    fixed = sum(float(timing.get(k) or 0.0) for k, _ in TIMING_PARTS)
    parts = ", ".join(f"{label} {float(timing.get(k) or 0.0):.1f}" for k, label in TIMING_PARTS)
    return f"fixed {fixed:.1f}s: {parts}; training {float(timing.get('train_s') or 0.0):.1f}s"


def run_timing(sweep_dir: SweepDir, name: str) -> dict | None:
    """The timing of a run's last finished attempt (its ledger event, else its result.json)."""
    for e in reversed(ledger.events(sweep_dir, name)):
        if e.get("event") == "finished" and e.get("timing"):
            return e["timing"]
    return ((sweep_dir.result(name) or {}).get("timing")) or None


def timing_totals(sweep_dir: SweepDir, runs, states: dict) -> str | None:
    """Summed fixed costs and steady training time of the finished runs, or None if none."""
    timings = [t for r in runs if states[r.name].state == "done"
               for t in [run_timing(sweep_dir, r.name)] if t]
    if not timings:
        return None
    total = {k: sum(float(t.get(k) or 0.0) for t in timings) for k, _ in TIMING_PARTS + (("train_s", ""),)}
    fixed = sum(total[k] for k, _ in TIMING_PARTS)
    return (f"time of {len(timings)} finished runs: {timing_text(total)} "
            f"(fixed {fixed / len(timings):.1f}s per run, "
            f"{fixed / max(fixed + total['train_s'], 1e-9):.0%} of their time)")


def status_table(sweep_dir: SweepDir, runs, states: dict) -> str:
    body = []
    for run in runs:
        st = states[run.name]
        step = last_step(sweep_dir, run.name) if st.state in ("running", "interrupted", "retry") else None
        where = f"step {step}/{run.steps}" if step is not None else f"{run.steps} steps"
        body.append([run.name, st.state, where, st.detail])
    counts = {}
    for st in states.values():
        counts[st.state] = counts.get(st.state, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    text = table(["run", "state", "progress", "detail"], body) + f"\n{len(runs)} runs: {summary}"
    totals = timing_totals(sweep_dir, runs, states)
    return text + (f"\n{totals}" if totals else "")


def remaining_seconds(finished: list[tuple[float, float, float, float]],
                      left: list[tuple[float, float]]) -> float:
    """Seconds the runs `left` (tokens, FLOPs to train) will take, from the `finished` ones
    (tokens, FLOPs, training seconds, fixed seconds). Training time is modelled as
    a * tokens + b * FLOPs with a, b >= 0: a per-token cost dominates the smallest models, a
    per-FLOP one the larger (seconds per FLOP alone, from a small first run, overshot a
    7-minute job as 3 hours). Each run adds the median fixed cost (start-up, compilation,
    evaluation, checkpoints) of the finished ones."""
    x = np.array([[tok, fl] for tok, fl, _, _ in finished], float)
    y = np.array([train for _, _, train, _ in finished], float)
    scale = np.maximum(x.max(axis=0), 1e-30)  # columns of similar size for lstsq
    xs = x / scale
    fits = [np.linalg.lstsq(xs, y, rcond=None)[0]]
    for i in range(2):  # one term alone (total seconds over total units): never negative
        one = np.zeros(2)
        one[i] = y.sum() / max(xs[:, i].sum(), 1e-30)
        fits.append(one)
    coef = min((c for c in fits if (c >= 0).all()), key=lambda c: float(np.sum((xs @ c - y) ** 2)))
    fixed = statistics.median(f for _, _, _, f in finished)
    return float(sum((np.asarray(run) / scale) @ coef + fixed for run in left))


class Progress:
    """One sweep-level line on each start and finish: done/total, failures, current run, ETA.

    ETA = `remaining_seconds` of the runs still to train, fitted on those finished so far,
    divided among the workers (before the first run finishes, the plan's benchmark estimate
    when there is one).
    """

    def __init__(self, sweep_dir: SweepDir, runs, claims, retries: int, workers: int,
                 estimates: dict | None = None, stream=None):
        self.dir, self.runs, self.claims, self.retries = sweep_dir, runs, claims, retries
        self.workers, self.estimates = max(1, workers), estimates or {}
        self.stream = stream or sys.stderr
        self.t0 = time.time()
        self.finished_runs: list[tuple[float, float, float, float]] = []
        self._lock = threading.Lock()

    @staticmethod
    def _to_train(run) -> tuple[float, float]:
        """(tokens, FLOPs) this sweep trains for the run (a branch only its own steps)."""
        share = run.steps_to_train / run.steps
        return run.tokens * share, run.flops * share

    def started(self, run, label: str, attempt: int) -> None:
        self._line(f"{label} starts {run.name}" + (f" (attempt {attempt})" if attempt > 1 else ""))

    def finished(self, run, outcome: str, reason: str, wall_s: float, fields: dict | None = None) -> None:
        timing = (fields or {}).get("timing")
        if outcome == "finished":
            train_s = float((timing or {}).get("train_s", wall_s))
            train_s = min(train_s, wall_s) if math.isfinite(train_s) and train_s >= 0 else wall_s
            with self._lock:
                self.finished_runs.append((*self._to_train(run), train_s, wall_s - train_s))
        what = f"{run.name} done in {duration(wall_s)}" if outcome == "finished" else f"{run.name} FAILED: {reason}"
        if outcome == "finished" and timing:
            what += f" ({timing_text(timing)})"
        self._line(what)

    def _eta(self, states) -> float | None:
        left = [r for r in self.runs if states[r.name].state not in ledger.FINAL]
        if not left:
            return 0.0
        if self.finished_runs:
            with self._lock:
                finished = list(self.finished_runs)
            return remaining_seconds(finished, [self._to_train(r) for r in left]) / self.workers
        if self.estimates and all(r.name in self.estimates for r in left):
            return sum(self.estimates[r.name] for r in left) / self.workers
        return None

    def _line(self, event: str) -> None:
        states = ledger.all_states(self.dir, self.runs, self.claims, self.retries)
        n = {s: sum(st.state == s for st in states.values()) for s in ("done", "failed", "running")}
        line = (
            f"[sweep] {n['done']}/{len(self.runs)} done, {n['failed']} failed, {n['running']} running"
            f" | {event} | elapsed {duration(time.time() - self.t0)} | ETA {duration(self._eta(states))}"
        )
        with self._lock:
            print(line, file=self.stream, flush=True)
