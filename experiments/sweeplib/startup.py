"""Start-up timing of sweep children: how long a child took from its spawn until it was ready to
train, so a run's timing can tell process start-up from the trainer's own setup.

The worker stamps the spawn time into the child's environment (`spawn_env`). Before each run the
child writes DIR/state/logs/<run>.startup (`report`): the seconds from its spawn until it was
ready (the trainer imported and the JAX backend initialised), all of it for the first run in the
process and 0 for the runs after it, which find everything warm. A child that warms up before its
first run is named (`warm_up`) reports when it was ready, not when its first run arrived: the
sweep starts it while it is still checking the runs' configs. The worker then folds the report
into the run's timing (`overhead_fields`). Nothing here changes what is trained.
"""

from __future__ import annotations

import os
import sys
import time

from common import files

SPAWNED_ENV = "SWEEP_CHILD_SPAWNED_AT"  # time.time() when the worker started the child
_IMPORTED_AT = time.time()  # the fallback spawn time: misses only the interpreter's own start
_started = False  # whether this process has reported its start-up (to its first run)
_ready_seconds: float | None = None  # start-up of a child that warmed up before its first run


def spawn_env() -> dict:
    """The environment entry that lets a child measure its start-up from this moment."""
    return {SPAWNED_ENV: repr(time.time())}


def seconds_since_spawn() -> float:
    """Seconds from this process's spawn until now; call it once ready to train."""
    try:
        spawned = float(os.environ[SPAWNED_ENV])
    except (KeyError, ValueError):
        spawned = _IMPORTED_AT
    return max(0.0, time.time() - spawned)


def _init_backend() -> None:
    """A trainer that imported JAX uses it at once: initialising it counts as start-up."""
    if "jax" in sys.modules:
        sys.modules["jax"].devices()


def warm_up(load_trainer) -> None:
    """Import the trainer (`load_trainer()`) and initialise the JAX backend before the first run
    is named, and note how long that took from spawn. A failure is left for the first run to
    meet and record as its own, so it is not reported twice."""
    global _ready_seconds
    try:
        load_trainer()
        _init_backend()
    except Exception:  # noqa: BLE001 - see the docstring
        return
    _ready_seconds = seconds_since_spawn()


def path(sweep_dir, name: str):
    return sweep_dir.logs / f"{name}.startup"


def report(sweep_dir, name: str) -> None:
    """Write the run's share of this process's start-up (all of it for its first run, 0 after),
    once the trainer is imported and the JAX backend initialised (a trainer that imported JAX
    uses it at once; initialising it here counts it as start-up, not as the run's setup)."""
    global _started
    seconds = 0.0
    if not _started:
        if _ready_seconds is not None:
            seconds = _ready_seconds
        else:
            _init_backend()
            seconds = seconds_since_spawn()
        _started = True
    files.write_atomic(path(sweep_dir, name), f"{seconds:.3f}\n")


def read(sweep_dir, name: str) -> float | None:
    """What the child reported for run `name`, or None."""
    try:
        return float(path(sweep_dir, name).read_text())
    except (OSError, ValueError):
        return None


def overhead_fields(result: dict | None, wall_s: float, startup_s: float | None = None) -> dict:
    """The run's timing from result.json, plus the worker's wall time the trainer did not see.

    `startup_s` is what the child reported: its process start-up (spawn, imports, JAX backend)
    for the first run it trains, 0 for later runs in the same process. The rest of the unseen
    time (handing the run over, the trainer's last writes) is added to `setup_s`, so the phases
    still sum to the worker's wall time. Without a report, all of it is start-up."""
    timing = dict((result or {}).get("timing") or {})
    if not timing:
        return {}
    unseen = max(0.0, wall_s - float(timing.get("total_s", 0.0)))
    startup = unseen if startup_s is None else min(max(0.0, startup_s), unseen)
    timing["startup_s"] = round(startup, 3)
    timing["setup_s"] = round(float(timing.get("setup_s", 0.0)) + unseen - startup, 3)
    return {"timing": timing}
