"""The run directory contract: config.json (resolved config), result.json (atomic, last),
and the run's identity: the config hash that names it in result.json and results.csv."""

from __future__ import annotations

import hashlib
import json
import os

from common import files
from research.config import RunConfig
from research.errors import ConfigError

HASH_HEX = 12  # hex digits of sha256 in run names and config_hash
# Keys that do not change what a run computes: they neither enter the hash nor block resume.
VOLATILE = (("train", "allow_config_change"), ("log", "wandb"), ("log", "wandb_project"),
            ("log", "wandb_entity"), ("log", "wandb_group"), ("model", "scan_unroll"))


def identity(cfg: RunConfig) -> dict:
    """What identifies a run: its config as JSON would store it, without volatile keys, a
    branch's parent named by its run directory's name (so a moved sweep keeps its hashes)."""
    d = json.loads(json.dumps(cfg.to_dict()))
    for section, key in VOLATILE:
        d[section].pop(key, None)
        if not d[section]:  # a section of only volatile keys (log) leaves no trace
            del d[section]
    if d["train"]["init_from"]:
        d["train"]["init_from"] = os.path.basename(os.path.normpath(d["train"]["init_from"]))
    return d


def config_hash(cfg: RunConfig) -> str:
    """HASH_HEX hex digits naming a run's config."""
    blob = json.dumps(identity(cfg), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:HASH_HEX]


def read_config(stored: dict) -> RunConfig:
    """A stored config (config.json, a sweep plan's run) -> the checked RunConfig."""
    return RunConfig.from_configdict(stored)


def check_workdir(workdir: str, cfg: RunConfig) -> None:
    """Refuse a workdir that holds a run with another config; reads only (nothing is written
    before the config, corpus and tokenizer are checked, and read-only storage stays usable)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    try:
        old_identity = identity(read_config(files.read_json(path)))
    except ConfigError as e:  # written by another version, or not a run's config at all
        old_identity = {"unreadable": str(e)}
    new_identity = identity(cfg)
    if old_identity != new_identity and not cfg.train.allow_config_change:
        diff = sorted(_diff_keys(old_identity, new_identity))
        raise ConfigError(
            f"{workdir} holds a run with a different config (differs in {', '.join(diff[:5])}); "
            "use another --workdir, or --config.train.allow_config_change=True to resume it")


def claim_workdir(workdir: str, cfg: RunConfig) -> None:
    """Write config.json, or check that the workdir's run has the same config (an unchanged
    config.json is not rewritten, so a finished run on read-only storage still opens)."""
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
    return read_config(files.read_json(path))
