"""Per-run event log and the run state derived from it.

The trainer's result.json is the truth about finished runs (status "done" or "diverged"); the
append-only DIR/state/events/<run>.jsonl records what the runner did (started, finished, failed
with a reason, reset by --retry-failed), and the claim file says whether someone runs it now.

States: done | failed (final: diverged, bad config, retries used up, or its parent run failed) |
running | waiting (for its parent run: a WSD parent, or a preference sweep's shared point) |
retry (failed, attempts left) | interrupted (started before, will resume from its checkpoints) |
pending.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from common import files
from experiments.sweeplib.claims import HOST, Claims
from experiments.sweeplib.layout import SweepDir

FINAL = ("done", "failed")
RUNNABLE = ("pending", "retry", "interrupted")
_LIFECYCLE = ("started", "finished", "failed", "reset")


def append_event(sweep_dir: SweepDir, run: str, event: str, **fields) -> None:
    record = {"event": event, "time": time.time(), "host": HOST, "pid": os.getpid(), **fields}
    sweep_dir.events.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir.events / f"{run}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def events(sweep_dir: SweepDir, run: str) -> list[dict]:
    try:
        return files.read_jsonl(sweep_dir.events / f"{run}.jsonl")
    except FileNotFoundError:
        return []


def failures_since_reset(evts: list[dict]) -> list[dict]:
    out = []
    for e in evts:
        if e["event"] == "reset":
            out = []
        elif e["event"] == "failed":
            out.append(e)
    return out


@dataclasses.dataclass
class RunState:
    state: str
    detail: str = ""
    attempts: int = 0  # starts since the last reset


def run_state(sweep_dir: SweepDir, run, claims: Claims, states: dict, retries: int) -> RunState:
    """`states` holds the states of runs earlier in plan order (a WSD parent precedes its branches)."""
    result = sweep_dir.result(run.name)
    evts = events(sweep_dir, run.name)
    starts = sum(e["event"] == "started" for e in evts)
    if result and result.get("status") == "done":
        return RunState("done", f"loss {float(result['loss']):.4f}", starts)
    if result and result.get("status") == "diverged":
        return RunState("failed", diverged_reason(result), starts)
    failed = failures_since_reset(evts)
    if any(e.get("permanent") for e in failed):
        return RunState("failed", failed[-1]["reason"], starts)
    if len(failed) > retries:
        return RunState("failed", f"{len(failed)} attempts failed, last: {failed[-1]['reason']}", starts)
    claim = claims.read(run.name)
    if claims.is_live(claim):
        return RunState("running", f"{claim['worker']} on {claim['host']} (pid {claim['pid']})", starts)
    if run.depends_on:
        parent = states.get(run.depends_on)
        if parent is None or parent.state != "done":
            if parent is not None and parent.state == "failed":
                return RunState("failed", f"its parent run {run.depends_on} failed", starts)
            return RunState("waiting", f"for its parent run {run.depends_on}", starts)
    # "resumed" / "from_scratch" (written by the child) only describe a start.
    last = next((e["event"] for e in reversed(evts) if e["event"] in _LIFECYCLE), "")
    if last == "started":  # began and never ended: killed with its worker
        return RunState("interrupted", "resumes from its latest checkpoint", starts)
    if failed:
        return RunState("retry", f"attempt {len(failed)} failed: {failed[-1]['reason']}", starts)
    return RunState("pending", "", starts)


def diverged_reason(result: dict) -> str:
    step = result.get("diverged_step", result.get("steps", "?"))
    return f"diverged (non-finite loss) at step {step}"


def all_states(sweep_dir: SweepDir, runs, claims: Claims, retries: int) -> dict[str, RunState]:
    states: dict[str, RunState] = {}
    for run in runs:
        states[run.name] = run_state(sweep_dir, run, claims, states, retries)
    return states
