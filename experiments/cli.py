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
            # A UserError's exit code says which kind (storage 3, corrupt checkpoint 4, ...).
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__,
                 getattr(e, "exit_code", 2))

    app.run(guarded)


def maybe_initialize_distributed(coordinator: str, num_processes: int, process_id: int) -> None:
    """Multi-host: every process calls this with the same coordinator before touching devices."""
    if num_processes > 1:
        import jax
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
