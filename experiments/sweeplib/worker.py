"""The worker loop: pick a runnable run, claim it, train it in a child process, record the outcome.

The child is long-lived: it trains up to runner.runs_per_child runs in a row (imports, data and
compiled steps stay warm), and is replaced when it dies or a run in it fails (child.py). Under a
launcher (srun: one run as several processes) each child is given one run, then the end of its
input.

Any number of workers (threads here, processes or Slurm jobs elsewhere) may run this loop on one
sweep directory; the claim files make each run execute once. A worker ends when every run in its
scope is final (done or failed) and waits while the remaining ones are running elsewhere or wait
for their WSD parent (unless told not to wait, as batch jobs are).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import signal
import subprocess
import sys
import threading
import time

from experiments.sweeplib import child, ledger, results, startup
from experiments.sweeplib.claims import Claims
from common.files import write_atomic
from experiments.sweeplib.layout import SweepDir

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def child_env(sweep_dir: SweepDir | None = None, sweep=None) -> dict:
    env = dict(os.environ)
    if sweep is not None and sweep.runner.compile_cache and "JAX_COMPILATION_CACHE_DIR" not in env:
        env["JAX_COMPILATION_CACHE_DIR"] = str(sweep_dir.root / sweep.runner.compile_cache)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Worker:
    def __init__(self, sweep_dir: SweepDir, runs, sweep, claims: Claims, label: str, *,
                 echo: bool = False, progress=None, stop: threading.Event | None = None, only=None,
                 wait_for_others: bool = True, env: dict | None = None, launcher=()):
        self.dir, self.runs, self.sweep, self.claims, self.label = sweep_dir, runs, sweep, claims, label
        self.echo, self.progress = echo, progress
        self.stop = stop or threading.Event()
        self.scope = set(only) if only else {r.name for r in runs}
        self.retries = int(sweep.runner.retries)
        # False for batch jobs: leave when nothing is runnable instead of idling on an allocation
        # (the workers still running finish the rest, and the last one finalizes).
        self.wait_for_others = wait_for_others
        self.runs_per_child = int(sweep.runner.get("runs_per_child", 1))
        self.proc: subprocess.Popen | None = None
        self.env = env or {}  # this worker's device share (devices.py)
        self.launcher = list(launcher)  # e.g. srun: one run as several processes (executors.py)
        self._marker = None  # the current child's end-of-run marker (child.END_MARKER)
        self._runs_in_child = 0

    def loop(self) -> None:
        try:
            while not self.stop.is_set():
                run, states = self._claim_next()
                if run is not None:
                    self.execute(run, states[run.name].attempts + 1)
                elif all(states[n].state in ledger.FINAL for n in self.scope) or not self.wait_for_others:
                    return
                else:
                    self.stop.wait(float(self.sweep.runner.poll_s))
        finally:
            self.close_child()

    def _claim_next(self):
        with self.dir.lock():
            states = ledger.all_states(self.dir, self.runs, self.claims, self.retries)
            for run in self.runs:
                if run.name in self.scope and states[run.name].state in ledger.RUNNABLE:
                    if self.claims.try_claim(run.name, self.label):
                        # Whether it then resumes from a checkpoint or starts afresh, the child
                        # records ("resumed" / "from_scratch") once it knows.
                        after_interrupt = states[run.name].state == "interrupted"
                        ledger.append_event(self.dir, run.name, "started", worker=self.label,
                                            attempt=states[run.name].attempts + 1,
                                            after_interrupt=after_interrupt)
                        return run, states
        return None, states

    def execute(self, run, attempt: int) -> None:
        if self.progress:
            self.progress.started(run, self.label, attempt)
        reason_file = self.dir.logs / f"{run.name}.reason"
        reason_file.unlink(missing_ok=True)
        startup.path(self.dir, run.name).unlink(missing_ok=True)  # the child writes it anew
        t0 = time.time()
        rc = self._train(run)
        wall = time.time() - t0
        with self.dir.lock():
            if self.stop.is_set() and rc != 0:
                # Interrupted on purpose (Ctrl-C): not the run's fault; it resumes next time.
                self.claims.release(run.name)
                return
            outcome, fields = self._outcome(run, rc, reason_file)
            if outcome == "finished":
                fields.update(startup.overhead_fields(self.dir.result(run.name), wall,
                                                      startup.read(self.dir, run.name)))
            ledger.append_event(self.dir, run.name, outcome, worker=self.label, attempt=attempt,
                                wall_s=round(wall, 2), **fields)
            self.claims.release(run.name)
            results.write(self.dir, self.runs)
        if self.progress:
            self.progress.finished(run, outcome, fields.get("reason", ""), wall, fields)

    def _train(self, run) -> int:
        """Train `run` in the child (started if there is none); its exit code."""
        self.dir.run_dir(run.name).mkdir(parents=True, exist_ok=True)
        # The child reads its run from here, not from sweep.json, which another plan may replace.
        spec = {"run": run.to_json(), "train_fn": self.sweep.runner.train_fn}
        write_atomic(self.dir.specs / f"{run.name}.json", json.dumps(spec, default=str))
        with open(self.dir.logs / f"{run.name}.log", "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {self.label}\n".encode())
            if self.proc is None or self.proc.poll() is not None:
                self.start_child()
            # Under a launcher the child trains this run alone: its name, then the end of its
            # input. srun's exit status (the highest of its processes') is then the run's.
            alone = bool(self.launcher)
            try:
                self.proc.stdin.write(f"{run.name}\n".encode())
                if alone:
                    self.proc.stdin.close()
                else:
                    self.proc.stdin.flush()
            except BrokenPipeError:
                pass  # it died meanwhile: _pump sees the end of its output
            rc = self._pump(log, to_end=alone)
            self._runs_in_child += 1
            if rc is None or alone:  # the process ended with the run: its exit status is the run's
                rc = self.proc.wait()
                self.close_child()
            elif rc != child.EXIT_DONE or self._runs_in_child >= self.runs_per_child > 0:
                self.close_child()
            return rc

    def start_child(self) -> None:
        """Start a child, which imports the trainer and initialises JAX at once, before any run
        is named: the sweep calls this early so that start-up overlaps its own checks."""
        self.close_child()
        token = secrets.token_hex(8)
        self._marker = re.compile(rb"\n@@sweep-run-end " + token.encode() + rb" rc=(-?\d+)@@\n")
        # Under a launcher the child's parent is srun's step daemon: Slurm, not the
        # parent-death signal, ends it with the worker (parent pid 0 = do not watch).
        parent = "0" if self.launcher else str(os.getpid())
        self.proc = self._popen([str(self.dir.root), parent, token,
                                 str(self.sweep.runner.train_fn)])
        self._runs_in_child = 0

    def _popen(self, args: list[str]) -> subprocess.Popen:
        env = {**child_env(self.dir, self.sweep), **self.env, **startup.spawn_env()}
        return subprocess.Popen([*self.launcher, sys.executable, "-m", "experiments.sweeplib.child",
                                 *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)

    def _pump(self, log, to_end: bool = False) -> int | None:
        """Copy the child's output to `log` (and the terminal), without its end markers, until
        a marker (returns its exit code) or the end of the output (returns the last marker's
        code, None if there was none). With `to_end`, on past the markers to the end: several
        processes of one run each print one."""
        pending, rc = b"", None
        keep = 128  # bytes held back in case a marker is split across reads
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            pending += chunk
            while found := self._marker.search(pending):
                self._emit(log, pending[:found.start()] + b"\n")
                rc, pending = int(found.group(1)), pending[found.end():]
                if not to_end:
                    return rc
            if len(pending) > keep:
                self._emit(log, pending[:-keep])
                pending = pending[-keep:]
        self._emit(log, pending)
        return rc

    def _emit(self, log, data: bytes) -> None:
        if not data:
            return
        log.write(data)
        log.flush()
        if self.echo:
            sys.stderr.buffer.write(data)
            sys.stderr.flush()

    def close_child(self) -> None:
        """End the child. It is idle between runs (it has printed its end marker, after
        the trainer's last write and its wait for async checkpoints), so it is killed rather
        than left to tear JAX down, which costs about half a second per child."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe:
                try:
                    pipe.close()
                except OSError:
                    pass

    def kill_child(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def _outcome(self, run, rc: int, reason_file) -> tuple[str, dict]:
        result = self.dir.result(run.name)
        status = (result or {}).get("status")
        if rc == child.EXIT_DONE and status == "done":
            return "finished", {"loss": result.get("loss")}
        if rc == child.EXIT_DIVERGED or status == "diverged":
            return "failed", {"reason": ledger.diverged_reason(result or {}), "permanent": True,
                              "kind": "diverged"}
        reason = reason_file.read_text().strip() if reason_file.exists() else ""
        if rc in child.PERMANENT:
            # A UserError (config, data, storage, no readable checkpoint): fixing it needs a
            # person (then `sweep run --retry-failed`).
            return "failed", {"reason": reason or f"{child.PERMANENT[rc]} error", "permanent": True,
                              "kind": child.PERMANENT[rc], "exit_code": rc}
        if rc < 0:
            reason = reason or f"killed by signal {signal.Signals(-rc).name}"
        elif rc == 0:
            reason = "the trainer returned without a finished result.json"
        reason = reason or f"exit code {rc}: {self._last_log_line(run)}"
        return "failed", {"reason": reason, "permanent": False, "kind": "crash", "exit_code": rc}

    def _last_log_line(self, run) -> str:
        try:
            lines = (self.dir.logs / f"{run.name}.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return next((line.strip() for line in reversed(lines) if line.strip()), "")[:300]
