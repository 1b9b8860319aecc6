"""What produced a result: code version, package versions, Python, devices, command line.

Recorded in every result.json (`provenance`) so a law refitted months later can say what made
its points. Each field degrades to None rather than failing: a run from an installed copy or a
tarball has no git commit, and that must not stop training.
"""

from __future__ import annotations

import platform
import shlex
import sys

from common.provenance import CODE_ROOT, git_state, package_versions

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint")


def device_info() -> dict:
    import jax

    devices = jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
            "process_count": jax.process_count()}


def command_line() -> str:
    """The command as typed (interpreter and flags included), quoted for a shell."""
    return shlex.join(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])


def collect(repo: str = CODE_ROOT) -> dict:
    git = git_state(repo)
    return {
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "packages": package_versions(PACKAGES),
        "python": platform.python_version(),
        "os": platform.platform(),
        **device_info(),
        "command": command_line(),
    }
