"""The run directory contract: config.json (resolved config), result.json (atomic, last)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

from research.config_checks import ConfigError

# Keys that do not change what a run computes, so they neither enter the hash nor block resume.
_VOLATILE = {("train", "allow_config_change")}


def config_to_dict(config) -> dict:
    d = json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else dict(config)
    return d


def _identity(d: dict) -> dict:
    d = json.loads(json.dumps(d))
    for section, key in _VOLATILE:
        d.get(section, {}).pop(key, None)
    train = d.get("train", {})
    if train.get("init_from"):
        # A branch is identified by its parent run's directory name, not where that lives, so
        # a moved sweep directory still resumes its branches (and keeps their hashes).
        train["init_from"] = os.path.basename(os.path.normpath(train["init_from"]))
    return d


def config_hash(config) -> str:
    blob = json.dumps(_identity(config_to_dict(config)), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def write_json_atomic(path: str, obj) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def check_workdir(workdir: str, config) -> None:
    """Refuse a workdir that holds a run with another config; reads only (nothing is written
    before the config, corpus and tokenizer are checked, and read-only storage stays usable)."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        old = read_json(path)
        new = config_to_dict(config)
        if _identity(old) != _identity(new) and not config.train.allow_config_change:
            diff = sorted(_diff_keys(_identity(old), _identity(new)))
            raise ConfigError(
                f"{workdir} holds a run with a different config (differs in {', '.join(diff[:5])}); "
                "use another --workdir, or --config.train.allow_config_change=True to resume it")


def claim_workdir(workdir: str, config) -> None:
    """Write config.json, or check that the workdir's run has the same config."""
    check_workdir(workdir, config)
    path = os.path.join(workdir, "config.json")
    new = config_to_dict(config)
    if not os.path.exists(path) or read_json(path) != new:  # unchanged: no write
        write_json_atomic(path, new)


def cut_metrics(workdir: str, step: int) -> int:
    """Drop the rows of metrics.jsonl past `step` (and a line cut short by a kill), so that
    after a resume from `step` every step appears once. Atomic; returns the rows dropped."""
    path = os.path.join(workdir, "metrics.jsonl")
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0
    kept = []
    for line in lines:
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            pass  # a partial row
    if len(kept) == len(lines) and (not lines or _ends_with_newline(path)):
        return 0
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("".join(line + "\n" for line in kept))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(lines) - len(kept)


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _diff_keys(a, b, prefix=""):
    keys = set(a) | set(b) if isinstance(a, dict) and isinstance(b, dict) else set()
    if not keys:
        return [prefix.rstrip(".")] if a != b else []
    out = []
    for k in keys:
        out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
    return out


def finished_result(workdir: str):
    """The result.json of a finished run in workdir, or None."""
    path = os.path.join(workdir, "result.json")
    if os.path.exists(path):
        return read_json(path)
    return None
