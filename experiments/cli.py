"""Shared bits of the command-line entry points: one-line errors, quiet logs, multi-host init."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run_main(main):
    """absl.app.run, but a ValueError (bad config, missing data) is one line, not a traceback."""
    from absl import app

    def guarded(argv):
        try:
            return main(argv)
        except ValueError as e:  # ConfigError, DataError, ... carry a one-line message and fix
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)

    app.run(guarded)


def maybe_initialize_distributed(coordinator: str, num_processes: int, process_id: int) -> None:
    """Multi-host: explicit flags (num_processes > 1), else a Slurm srun step or a TPU pod is
    detected (research/distributed.py). Call before touching devices; says what it found."""
    from research import distributed

    found = distributed.initialize(coordinator, num_processes, process_id)
    if found.method != "none":
        print(f"distributed: {found.describe()}", file=sys.stderr)
