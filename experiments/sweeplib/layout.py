"""Where things live inside a sweep directory, and atomic file writes.

  DIR/sweep.json              the expanded plan (runs + settings) the workers and children read
  DIR/runs/<name>/            each run's trainer workdir (config.json, checkpoints/, result.json)
  DIR/state/lock              serialises claim decisions between workers (flock)
  DIR/state/claims/<name>.json   who runs <name> now (host, pid, heartbeat = file mtime)
  DIR/state/events/<name>.jsonl  started / finished / failed events with reasons
  DIR/state/logs/<name>.log      the child's stdout and stderr
  DIR/state/specs/<name>.json    what the child trains (run + trainer function), written at start
  DIR/results.csv             finished data points in the analysis schema
  DIR/analysis/               fit.json, plots and report from `python -m analysis fit`
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import tempfile
import threading


def write_atomic(path: pathlib.Path, text: str) -> None:
    """Readers see the old file or the new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: pathlib.Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class SweepDir:
    def __init__(self, root):
        self.root = pathlib.Path(root).absolute()
        self.plan_file = self.root / "sweep.json"
        self.runs = self.root / "runs"
        self.state = self.root / "state"
        self.claims = self.state / "claims"
        self.events = self.state / "events"
        self.logs = self.state / "logs"
        self.specs = self.state / "specs"
        self.results_csv = self.root / "results.csv"
        self.analysis = self.root / "analysis"
        self._thread_lock = threading.Lock()

    def make(self) -> None:
        for d in (self.runs, self.claims, self.events, self.logs, self.specs):
            d.mkdir(parents=True, exist_ok=True)

    def run_dir(self, name: str) -> pathlib.Path:
        return self.runs / name

    def result(self, name: str) -> dict | None:
        return read_json(self.run_dir(name) / "result.json")

    @contextlib.contextmanager
    def lock(self):
        """Exclusive across threads and processes (and hosts, where the filesystem honours flock)."""
        with self._thread_lock:
            self.state.mkdir(parents=True, exist_ok=True)
            with open(self.state / "lock", "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
