"""Train sweep runs in a child process: the runs named on stdin, one per line, until it closes.

  python -m experiments.sweeplib.child DIR PARENT_PID TOKEN [TRAIN_FN]

A crash here (exception, OOM kill, segfault) cannot take the sweep down. The child asks the kernel
to kill it when its supervising worker (PARENT_PID) dies (PR_SET_PDEATHSIG), so a killed sweep
leaves no orphan training behind and the restarted sweep resumes the run from its checkpoints.
PARENT_PID 0 means launched by srun, whose step daemon ends it with the worker; such a child joins
the step's other processes (one run as several processes) before JAX touches a device.

The child keeps imports, the data and compiled steps warm between runs (runs of one shape share
one compiled step); given TRAIN_FN it imports the trainer before reading the first name. After
each run it prints an end marker carrying TOKEN and the run's exit code, which the worker strips
from the log. At the end of stdin it exits with the last run's code: a child given one name and
then the end of stdin is a one-run process. A process that dies takes only the run it was
training with it; the worker starts a fresh one for the next run, and also replaces it after a
failed run, so a failure never leaves state behind for the runs after it.

Exit codes tell the worker what happened; the reason is written to DIR/state/logs/<run>.reason.
They are research/errors.py's codes: 0 done, 1 a crash (retried), a UserError's own code (2 bad
config or data, 3 storage, 4 no readable checkpoint: permanent, fixing them needs a person), and
EXIT_DIVERGED for a run whose loss became NaN/Inf (permanent: it would diverge again).
Where training starts (resumed from a checkpoint, or from scratch) is appended to the run's
events as soon as it is known. The child's start-up time is measured by startup.py.
"""

from __future__ import annotations

import ctypes
import importlib
import inspect
import os
import signal
import sys
import traceback

from common import files
from experiments.sweeplib import startup
from research import errors

EXIT_DONE = errors.EXIT_OK
EXIT_CRASH = errors.EXIT_FAILED
EXIT_STORAGE = errors.EXIT_STORAGE
EXIT_CORRUPT_CHECKPOINT = errors.EXIT_CORRUPT_CHECKPOINT
EXIT_DIVERGED = 5  # the child's own code: a diverged run (the train CLI says EXIT_FAILED)
# Failures an identical retry would repeat: final until a person fixes the cause.
PERMANENT = {errors.EXIT_USER: "user", errors.EXIT_STORAGE: "storage",
             errors.EXIT_CORRUPT_CHECKPOINT: "corrupt_checkpoint"}
_PR_SET_PDEATHSIG = 1
END_MARKER = b"@@sweep-run-end %s rc=%d@@\n"  # % (token, exit code), on a line of its own


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
        startup.report(sweep_dir, name)
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


def serve(root: str, token: str, train_fn: str = "") -> int:
    """Train each run named on stdin, one per line, until stdin closes; the last run's code."""
    if train_fn:
        startup.warm_up(lambda: load_train_fn(train_fn))
    rc = EXIT_DONE
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        rc = train_one(root, name)
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(sys.stdout.fileno(), b"\n" + END_MARKER % (token.encode(), rc))
    return rc


def main(argv: list[str]) -> int:
    root, parent_pid, token = argv[1], int(argv[2]), argv[3]
    if parent_pid > 0:
        die_with_parent(parent_pid)
    else:  # launched by srun: one run as several processes joins them before jax touches a device
        from research import distributed

        distributed.initialize()
    return serve(root, token, argv[4] if len(argv) > 4 else "")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
