"""What produced a result: code version, package versions, Python, devices, command line.

Recorded in every result.json (`provenance`) so a law refitted months later can say what made
its points. Each field degrades to None rather than failing: a run from an installed copy or a
tarball has no git commit, and that must not stop training.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint")
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_state(repo: str = CODE_ROOT) -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the checkout holding `repo`.

    Dirty means a tracked file differs from the commit (untracked files such as runs/ do not
    count). None when `repo` is not a git checkout or git is missing.
    """
    def git(*args):
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--verify", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def package_versions(names=PACKAGES) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


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
        "packages": package_versions(),
        "python": platform.python_version(),
        "os": platform.platform(),
        **device_info(),
        "command": command_line(),
    }
