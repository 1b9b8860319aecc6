"""Per-run claim files: each run is executed by exactly one worker at a time.

A claim is DIR/state/claims/<run>.json naming the holder (host, pid, process start time, worker
label); its mtime is the heartbeat, refreshed by a background thread while the run trains.
Claims are taken and released only under the sweep lock, so deciding "free or stale, then take"
is atomic. A claim is stale, and may be taken over, when
  - it was made on this host and its process is gone (or the pid now belongs to another process), or
  - it was made on another host and its heartbeat is older than `timeout_s` (that worker died or
    lost the filesystem).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import psutil

from common.files import write_atomic
from experiments.sweeplib.layout import SweepDir, read_json

HOST = socket.gethostname()


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def worker_name(label: str) -> str:
    """`label@host:pid`: two sweep processes on one host (each with local0, local1, ...) get
    names the ledger and the claims tell apart."""
    return f"{label}@{HOST}:{os.getpid()}"


def holder(worker: str) -> dict:
    pid = os.getpid()
    return {"host": HOST, "pid": pid, "start": _process_start(pid), "worker": worker, "token": uuid.uuid4().hex}


class Claims:
    def __init__(self, sweep_dir: SweepDir, timeout_s: float, heartbeat_s: float):
        self.dir = sweep_dir
        self.timeout_s = float(timeout_s)
        self.heartbeat_s = float(heartbeat_s)
        self._held: dict[str, str] = {}  # run -> token
        self._held_lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = None

    def path(self, run: str):
        return self.dir.claims / f"{run}.json"

    def read(self, run: str) -> dict | None:
        claim = read_json(self.path(run))
        if claim is not None:
            try:
                claim["heartbeat"] = os.path.getmtime(self.path(run))
            except FileNotFoundError:
                return None
        return claim

    def is_live(self, claim: dict | None) -> bool:
        if claim is None:
            return False
        if claim.get("host") == HOST:  # exact answer: is that process still alive?
            start = _process_start(int(claim["pid"]))
            return start is not None and not (claim.get("start") and abs(start - claim["start"]) > 1.0)
        return time.time() - claim["heartbeat"] <= self.timeout_s

    def try_claim(self, run: str, worker: str) -> dict | None:
        """Call under SweepDir.lock(). Takes the run if unclaimed or stale; returns the claim."""
        current = self.read(run)
        if self.is_live(current):
            return None
        claim = holder(worker)
        if current is not None:
            claim["took_over"] = {k: current.get(k) for k in ("host", "pid", "worker")}
        write_atomic(self.path(run), json.dumps(claim))
        with self._held_lock:
            self._held[run] = claim["token"]
        self._ensure_heartbeat()
        return claim

    def release(self, run: str) -> None:
        """Call under SweepDir.lock(). Removes the claim only if it is still ours."""
        with self._held_lock:
            token = self._held.pop(run, None)
        current = read_json(self.path(run))
        if token and current and current.get("token") == token:
            self.path(run).unlink(missing_ok=True)

    def _ensure_heartbeat(self) -> None:
        if self._beat is None or not self._beat.is_alive():
            self._beat = threading.Thread(target=self._heartbeat, name="claim-heartbeat", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._held_lock:
                runs = list(self._held)
            for run in runs:
                try:
                    os.utime(self.path(run))
                except FileNotFoundError:
                    pass

    def close(self) -> None:
        self._stop.set()
