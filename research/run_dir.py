"""The run directory contract: config.json (resolved config), result.json (atomic, last)."""

from __future__ import annotations

import json
import os

from research import files, run_math
from research.config import RunConfig
from research.config_checks import ConfigError


def config_hash(config) -> str:
    """The run's config hash (one definition: research.run_math.config_hash)."""
    return run_math.config_hash(config)


def check_workdir(workdir: str, cfg) -> None:
    """Refuse a workdir that holds a run with another config; reads only (nothing is written
    before the config, corpus and tokenizer are checked, and read-only storage stays usable)."""
    cfg = RunConfig.from_configdict(cfg)
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    try:
        old_identity = run_math.identity(files.read_json(path))
    except ConfigError as e:  # written by another version, or not a run's config at all
        old_identity = {"unreadable": str(e)}
    new_identity = run_math.identity(cfg)
    if old_identity != new_identity and not cfg.train.allow_config_change:
        diff = sorted(_diff_keys(old_identity, new_identity))
        raise ConfigError(
            f"{workdir} holds a run with a different config (differs in {', '.join(diff[:5])}); "
            "use another --workdir, or --config.train.allow_config_change=True to resume it")


def claim_workdir(workdir: str, cfg) -> None:
    """Write config.json, or check that the workdir's run has the same config (an unchanged
    config.json is not rewritten, so a finished run on read-only storage still opens)."""
    cfg = RunConfig.from_configdict(cfg)
    check_workdir(workdir, cfg)
    path = os.path.join(workdir, "config.json")
    new = cfg.to_dict()
    if files.read_json(path, default=None) != json.loads(json.dumps(new)):
        files.write_json(path, new)


def cut_metrics(workdir: str, step: int) -> int:
    """Drop the rows of metrics.jsonl past `step` (and a line cut short by a kill), so that
    after a resume from `step` every step appears once. Atomic; returns the rows dropped."""
    path = os.path.join(workdir, "metrics.jsonl")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return 0
    lines = text.splitlines()
    kept = []
    for line in lines:
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            pass  # a partial row
    if len(kept) == len(lines) and (not lines or text.endswith("\n")):
        return 0
    files.write_atomic(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


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
    return files.read_json(path) if os.path.exists(path) else None


def load_config(workdir: str) -> RunConfig:
    """The run config a workdir's config.json records."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{workdir} has no config.json; pass the directory of a training run")
    return RunConfig.from_configdict(files.read_json(path))
