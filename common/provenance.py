"""What code produced a record: the git commit of the checkout and whether it was dirty.

One definition of dirty for training results and analysis outputs alike: a tracked file differs
from the commit, anywhere in the checkout. Untracked files do not count (run directories, sweeps
and reports live beside the code untracked). Every field is None outside a git checkout or
without git, so an installed copy still records what it can.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess

CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_state(repo: str = CODE_ROOT) -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the checkout holding `repo`."""
    def git(*args):
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--verify", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def package_versions(names) -> dict:
    """{package: installed version or None}."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out
