"""Train sweep runs in a child process, one per run or several in a row.

  python -m experiments.sweeplib.child DIR RUN PARENT_PID            one run, then exit
  python -m experiments.sweeplib.child --serve DIR PARENT_PID TOKEN [TRAIN_FN]
                                                                     runs named on stdin

A crash here (exception, OOM kill, segfault) cannot take the sweep down. The child asks the kernel
to kill it when its supervising worker dies (PR_SET_PDEATHSIG), so a killed sweep leaves no
orphan training behind and the restarted sweep resumes the run from its checkpoints.

The serving child keeps imports, the data and compiled steps warm between runs (runs of one
shape share one compiled step). After each run it prints an end marker carrying TOKEN and the
run's exit code, which the worker strips from the log. A process that dies takes only the run it
was training with it; the worker starts a fresh one for the next run, and also replaces it after
a failed run, so a failure never leaves state behind for the runs after it.

Exit codes tell the worker what happened; the reason is written to DIR/state/logs/<run>.reason.
They are research/errors.py's codes: 0 done, 1 a crash (retried), a UserError's own code (2 bad
config or data, 3 storage, 4 no readable checkpoint: permanent, fixing them needs a person), and
EXIT_DIVERGED for a run whose loss became NaN/Inf (permanent: it would diverge again).
Where training starts (resumed from a checkpoint, or from scratch) is appended to the run's
events as soon as it is known.

Start-up: before each run the child writes DIR/state/logs/<run>.startup, the seconds from its
spawn (SPAWNED_ENV, set by the worker) until it was ready to train: the trainer imported and the
JAX backend initialised. That is the process's start-up cost for its first run, and 0 for the
runs after it in the same process (they find everything warm). The worker puts it in the run's
timing (worker.overhead_fields). A serving child given TRAIN_FN gets ready before it reads its
first run name: the sweep starts it while it is still checking the runs' configs (the two
overlap on separate cores), and the start-up it reports ends when it was ready, not when its
first run arrived.
"""

from __future__ import annotations

import ctypes
import importlib
import inspect
import os
import signal
import sys
import time
import traceback

from common import files
from research import errors

EXIT_DONE = errors.EXIT_OK
EXIT_CRASH = errors.EXIT_FAILED
EXIT_CONFIG = errors.EXIT_USER  # any UserError exits with its own exit_code (2, 3 or 4)
EXIT_STORAGE = errors.EXIT_STORAGE
EXIT_CORRUPT_CHECKPOINT = errors.EXIT_CORRUPT_CHECKPOINT
EXIT_DIVERGED = 5  # the child's own code: a diverged run (the train CLI says EXIT_FAILED)
# Failures an identical retry would repeat: final until a person fixes the cause.
PERMANENT = {errors.EXIT_USER: "user", errors.EXIT_STORAGE: "storage",
             errors.EXIT_CORRUPT_CHECKPOINT: "corrupt_checkpoint"}
_PR_SET_PDEATHSIG = 1
END_MARKER = b"@@sweep-run-end %s rc=%d@@\n"  # % (token, exit code), on a line of its own
SPAWNED_ENV = "SWEEP_CHILD_SPAWNED_AT"  # time.time() when the worker started this process
_IMPORTED_AT = time.time()  # the fallback spawn time: misses only the interpreter's own start
_started = False  # whether this process has reported its start-up (to its first run)
_ready_seconds: float | None = None  # start-up of a child that warmed up before its first run


def die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: an orphan then finishes its run, which is harmless
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(EXIT_CRASH)


def load_train_fn(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def exit_code_of(e: BaseException) -> int:
    """A UserError (bad config, data, corpus, tokenizer, storage...) keeps its code and is not
    retried; anything else is a crash, retried up to runner.retries."""
    return e.exit_code if isinstance(e, errors.UserError) else EXIT_CRASH


def start_recorder(sweep_dir, name: str):
    """on_start for the trainer: one event saying whether the run resumed or started afresh."""
    from experiments.sweeplib import ledger

    def record(info: dict) -> None:
        event = "resumed" if info.get("checkpoint_time") else "from_scratch"
        ledger.append_event(sweep_dir, name, event, **info)
    return record


def startup_seconds() -> float:
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


def report_startup(sweep_dir, name: str) -> None:
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
            seconds = startup_seconds()
        _started = True
    files.write_atomic(sweep_dir.logs / f"{name}.startup", f"{seconds:.3f}\n")


def train_one(root: str, name: str) -> int:
    """Train run `name` of the sweep in `root`; its exit code."""
    from experiments.sweeplib import layout, plan

    sweep_dir = layout.SweepDir(root)
    reason_file = sweep_dir.logs / f"{name}.reason"
    spec = layout.read_json(sweep_dir.specs / f"{name}.json")
    run = plan.Run.from_json(spec["run"])
    config = run.config
    parent_dir = str(sweep_dir.run_dir(run.depends_on)) if run.depends_on else ""
    if run.depends_on and not run.point:  # a WSD branch starts from its parent's checkpoint
        config = plan.replace_train(config, init_from=parent_dir)
    try:
        train = load_train_fn(spec["train_fn"])
        report_startup(sweep_dir, name)
        extra = {}
        if "on_start" in inspect.signature(train).parameters:
            extra["on_start"] = start_recorder(sweep_dir, name)
        if "point" in inspect.signature(train).parameters:
            # A preference sweep's point: its stage, and the directory of the point it needs.
            extra["point"] = {**run.point, "parent_dir": parent_dir}
        result = train(config, str(sweep_dir.run_dir(name)), progress=True, **extra)
    except Exception as e:  # noqa: BLE001 - every failure is recorded, the sweep goes on
        if isinstance(e, errors.UserError):
            print(f"error: {e}", file=sys.stderr)  # one line; the cause is the input, not code
        else:
            traceback.print_exc()
        message = " ".join(f"{type(e).__name__}: {e}".split())
        files.write_atomic(reason_file, message[:500])
        return exit_code_of(e)
    return EXIT_DIVERGED if result.get("status") == "diverged" else EXIT_DONE


def warm_up(train_fn: str) -> None:
    """Import the trainer and initialise the JAX backend before the first run is named, and
    note how long that took from spawn. A failure is left for the first run to meet and
    record as its own (train_one), so it is not reported twice."""
    global _ready_seconds
    try:
        load_train_fn(train_fn)
        _init_backend()
    except Exception:  # noqa: BLE001 - see the docstring
        return
    _ready_seconds = startup_seconds()


def serve(root: str, token: str, train_fn: str = "") -> int:
    """Train each run named on stdin, one per line, until stdin closes."""
    if train_fn:
        warm_up(train_fn)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        rc = train_one(root, name)
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(sys.stdout.fileno(), b"\n" + END_MARKER % (token.encode(), rc))
    return 0


def main(argv: list[str]) -> int:
    if argv[1] == "--serve":
        root, parent_pid, token = argv[2], int(argv[3]), argv[4]
        die_with_parent(parent_pid)
        return serve(root, token, argv[5] if len(argv) > 5 else "")
    root, name, parent_pid = argv[1], argv[2], int(argv[3])
    if parent_pid > 0:  # 0: launched by srun, whose step daemon ends it with the worker
        die_with_parent(parent_pid)
    # Imported after prctl: a sweep killed during these slow imports leaves no orphan.
    from research import distributed

    # One run as several processes (srun): join them before jax touches a device.
    distributed.initialize()
    return train_one(root, name)

if __name__ == "__main__":
    sys.exit(main(sys.argv))
