"""Train one run of a sweep in its own process: `python -m experiments.sweeplib.child DIR RUN PARENT_PID`.

A crash here (exception, OOM kill, segfault) cannot take the sweep down. The child asks the kernel
to kill it when its supervising worker dies (PR_SET_PDEATHSIG), so a killed sweep leaves no
orphan training behind and the restarted sweep resumes the run from its checkpoints.

Exit codes tell the worker what happened; the reason is written to DIR/state/logs/<run>.reason.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
import traceback

EXIT_DONE, EXIT_CRASH, EXIT_CONFIG, EXIT_DIVERGED = 0, 1, 3, 4
_PR_SET_PDEATHSIG = 1


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


def is_config_error(e: BaseException) -> bool:
    return type(e).__name__ in ("ConfigError", "SweepError")


def main(argv: list[str]) -> int:
    root, name, parent_pid = argv[1], argv[2], int(argv[3])
    if parent_pid > 0:
        die_with_parent(parent_pid)
    # Imported after prctl: a sweep killed during these slow imports leaves no orphan.
    from experiments.sweeplib import layout, plan
    from research import distributed

    # One run as several processes (srun): join them before jax touches a device.
    distributed.initialize()

    sweep_dir = layout.SweepDir(root)
    reason_file = sweep_dir.logs / f"{name}.reason"
    spec = layout.read_json(sweep_dir.specs / f"{name}.json")
    run = plan.Run.from_json(spec["run"])
    config = run.config
    if run.depends_on:
        config.train.init_from = str(sweep_dir.run_dir(run.depends_on))
    try:
        train = load_train_fn(spec["train_fn"])
        result = train(config, str(sweep_dir.run_dir(name)), progress=True)
    except Exception as e:  # noqa: BLE001 - every failure is recorded, the sweep goes on
        traceback.print_exc()
        message = " ".join(f"{type(e).__name__}: {e}".split())
        layout.write_atomic(reason_file, message[:500])
        return EXIT_CONFIG if is_config_error(e) else EXIT_CRASH
    return EXIT_DIVERGED if result.get("status") == "diverged" else EXIT_DONE


if __name__ == "__main__":
    sys.exit(main(sys.argv))
