"""The worker loop: pick a runnable run, claim it, train it in a child process, record the outcome.

Any number of workers (threads here, processes or Slurm jobs elsewhere) may run this loop on one
sweep directory; the claim files make each run execute once. A worker ends when every run in its
scope is final (done or failed) and waits while the remaining ones are running elsewhere or wait
for their WSD parent (unless told not to wait, as batch jobs are).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from experiments.sweeplib import child, ledger, results
from experiments.sweeplib.claims import Claims
from experiments.sweeplib.layout import SweepDir, write_atomic

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
        self.proc: subprocess.Popen | None = None
        self.env = env or {}  # this worker's device share (devices.py)
        self.launcher = list(launcher)  # e.g. srun: one run as several processes (executors.py)

    def loop(self) -> None:
        while not self.stop.is_set():
            run, states = self._claim_next()
            if run is not None:
                self.execute(run, states[run.name].attempts + 1)
            elif all(states[n].state in ledger.FINAL for n in self.scope) or not self.wait_for_others:
                return
            else:
                self.stop.wait(float(self.sweep.runner.poll_s))

    def _claim_next(self):
        with self.dir.lock():
            states = ledger.all_states(self.dir, self.runs, self.claims, self.retries)
            for run in self.runs:
                if run.name in self.scope and states[run.name].state in ledger.RUNNABLE:
                    if self.claims.try_claim(run.name, self.label):
                        resumed = states[run.name].state == "interrupted"
                        ledger.append_event(self.dir, run.name, "started", worker=self.label,
                                            attempt=states[run.name].attempts + 1, resumed=resumed)
                        return run, states
        return None, states

    def execute(self, run, attempt: int) -> None:
        if self.progress:
            self.progress.started(run, self.label, attempt)
        reason_file = self.dir.logs / f"{run.name}.reason"
        reason_file.unlink(missing_ok=True)
        t0 = time.time()
        rc = self._spawn(run)
        wall = time.time() - t0
        with self.dir.lock():
            if self.stop.is_set() and rc != 0:
                # Interrupted on purpose (Ctrl-C): not the run's fault; it resumes next time.
                self.claims.release(run.name)
                return
            outcome, fields = self._outcome(run, rc, reason_file)
            ledger.append_event(self.dir, run.name, outcome, worker=self.label, attempt=attempt,
                                wall_s=round(wall, 2), **fields)
            self.claims.release(run.name)
            results.write(self.dir, self.runs)
        if self.progress:
            self.progress.finished(run, outcome, fields.get("reason", ""), wall)

    def _spawn(self, run) -> int:
        # Under a launcher the child's parent is srun's step daemon: Slurm, not the parent-death
        # signal, ends it with the worker (parent pid 0 = do not watch).
        parent = "0" if self.launcher else str(os.getpid())
        cmd = [*self.launcher, sys.executable, "-m", "experiments.sweeplib.child", str(self.dir.root),
               run.name, parent]
        self.dir.run_dir(run.name).mkdir(parents=True, exist_ok=True)
        # The child reads its run from here, not from sweep.json, which another plan may replace.
        spec = {"run": run.to_json(), "train_fn": self.sweep.runner.train_fn}
        write_atomic(self.dir.specs / f"{run.name}.json", json.dumps(spec, default=str))
        with open(self.dir.logs / f"{run.name}.log", "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {self.label}\n".encode())
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         env={**child_env(self.dir, self.sweep), **self.env})
            while chunk := os.read(self.proc.stdout.fileno(), 65536):
                log.write(chunk)
                log.flush()
                if self.echo:
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.flush()
            rc = self.proc.wait()
            self.proc.stdout.close()
        return rc

    def kill_child(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def _outcome(self, run, rc: int, reason_file) -> tuple[str, dict]:
        result = self.dir.result(run.name)
        status = (result or {}).get("status")
        if rc == child.EXIT_DONE and status == "done":
            return "finished", {"loss": result.get("loss")}
        if rc == child.EXIT_DIVERGED or status == "diverged":
            return "failed", {"reason": ledger.diverged_reason(result or {}), "permanent": True}
        reason = reason_file.read_text().strip() if reason_file.exists() else ""
        if rc == child.EXIT_CONFIG:
            return "failed", {"reason": reason or "bad config", "permanent": True}
        if rc < 0:
            reason = reason or f"killed by signal {signal.Signals(-rc).name}"
        elif rc == 0:
            reason = "the trainer returned without a finished result.json"
        reason = reason or f"exit code {rc}: {self._last_log_line(run)}"
        return "failed", {"reason": reason, "permanent": False}

    def _last_log_line(self, run) -> str:
        try:
            lines = (self.dir.logs / f"{run.name}.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return next((line.strip() for line in reversed(lines) if line.strip()), "")[:300]
