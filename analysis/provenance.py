"""Provenance of an analysis output: what was read, which rows were used, which code ran.

Enough to refit a law months later and to know whether an output is stale: the
input's SHA-256, the rows used and dropped with reasons, the code's git commit (and
whether the checkout was dirty) and the versions of the packages it ran on.
"""

from __future__ import annotations

import hashlib
import os

from common.provenance import git_state, package_versions

PACKAGES = ("numpy", "scipy", "jax", "jaxlib", "matplotlib")
RESULT_FILES = ("result.json", "results.csv", "metrics.jsonl")


def input_digest(path) -> dict:
    """sha256 of a results file, or of a directory's result files (sorted, path-qualified)."""
    path = os.fspath(path)
    h = hashlib.sha256()
    if os.path.isfile(path):
        with open(path, "rb") as fh:
            h.update(fh.read())
        return dict(path=os.path.abspath(path), sha256=h.hexdigest(), files=1)
    if not os.path.isdir(path):
        return dict(path=path, sha256=None, files=0)
    n = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in ("checkpoints", "state", "tb"))
        for f in sorted(files):
            if f in RESULT_FILES:
                p = os.path.join(root, f)
                h.update(os.path.relpath(p, path).encode() + b"\0")
                with open(p, "rb") as fh:
                    h.update(hashlib.sha256(fh.read()).digest())
                n += 1
    return dict(path=os.path.abspath(path), sha256=h.hexdigest(), files=n,
                note="over the result.json / results.csv / metrics.jsonl files, path-qualified")


def code_version() -> dict:
    """The checkout's commit and whether it was dirty (common/provenance.py: one definition)."""
    git = git_state()
    return dict(git_commit=git["commit"], git_dirty=git["dirty"])


def provenance(source, n_read, n_used, dropped) -> dict:
    """The provenance block of fit.json / isoflop.json."""
    return dict(input=input_digest(source) if source and source != "test" else None,
                rows=dict(read=int(n_read), used=int(n_used), dropped=list(dropped)),
                code=code_version(), packages=package_versions(PACKAGES))
