"""Where things live inside a sweep directory, and the file helpers the sweep uses
(common/files.py: atomic writes that honour the umask, one JSON reader).

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
import pathlib
import threading

from common import files


def read_json(path: pathlib.Path):
    """The JSON in `path`, or None when it is missing or unreadable (not written yet)."""
    return files.read_json(path, default=None)


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
