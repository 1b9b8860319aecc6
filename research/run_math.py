"""Run arithmetic, defined once for the trainer and the sweep planner.

- the config hash that names a run and is recorded in its result.json and results.csv;
- tokens per optimizer step and the number of steps a token budget buys;
- warmup length and the WSD decay start (one rounding rule: nearest step, `round`);
- a model variant (a ladder name or (n_layers, d_model[, n_heads])) resolved to dimensions;
- a run's analytic training FLOPs (research/flops.py defines FLOPs per token).

Functions take the typed configs of research/config.py; `config_hash` also takes a ConfigDict
or a config.json dict, converting it first, so both sides hash the same canonical form.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from typing import Mapping, NamedTuple

from research.config import ModelConfig, RunConfig, TrainConfig
from research.config_checks import ConfigError
from research.flops import run_flops, train_flops_per_token  # noqa: F401  (re-exported)

HASH_HEX = 12  # hex digits of sha256 in run names and config_hash
# Keys that do not change what a run computes: they neither enter the hash nor block resume.
VOLATILE = (("train", "allow_config_change"), ("log", "wandb"), ("log", "wandb_project"),
            ("log", "wandb_entity"), ("log", "wandb_group"), ("model", "scan_unroll"))


# ---------------------------------------------------------------- identity


def identity(config) -> dict:
    """What identifies a run: the canonical config dict without volatile keys, a branch's
    parent named by its run directory's name (so a moved sweep keeps its hashes)."""
    d = json.loads(json.dumps(RunConfig.from_configdict(config).to_dict()))
    for section, key in VOLATILE:
        d[section].pop(key, None)
        if not d[section]:  # a section of only volatile keys (log) leaves no trace
            del d[section]
    if d["train"]["init_from"]:
        d["train"]["init_from"] = os.path.basename(os.path.normpath(d["train"]["init_from"]))
    return d


def config_hash(config) -> str:
    """HASH_HEX hex digits naming a run's config (RunConfig, ConfigDict or config.json dict)."""
    blob = json.dumps(identity(config), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:HASH_HEX]


def hash_of_name(run_name: str) -> str:
    """The config hash a sweep run's name ends with (`<readable>-s<seed>-<hash>`)."""
    return run_name.rsplit("-", 1)[-1]


# ---------------------------------------------------------------- steps and schedule


def tokens_per_step(train: TrainConfig, model: ModelConfig) -> int:
    return train.batch_size * model.context_length


def steps(cfg: RunConfig) -> int:
    """Whole optimizer steps the token budget buys (the remainder is not trained)."""
    return cfg.train.tokens // tokens_per_step(cfg.train, cfg.model)


def steps_for_tokens(tokens: float, train: TrainConfig, model: ModelConfig) -> int:
    return int(tokens) // tokens_per_step(train, model)


def nearest_step(x: float) -> int:
    """The one rounding rule for schedule boundaries."""
    return int(round(x))


def warmup_steps(train: TrainConfig, total_steps: int) -> int:
    """train.warmup_steps when set (> 0), else warmup_fraction of the run, at least 1."""
    if train.warmup_steps > 0:
        return train.warmup_steps
    return max(1, nearest_step(train.warmup_fraction * total_steps))


def decay_start(decay_fraction: float, total_steps: int) -> int:
    """WSD: the step where the decay phase begins (a branch starts from this checkpoint)."""
    return nearest_step(total_steps * (1.0 - decay_fraction))


# ---------------------------------------------------------------- variants


class Dims(NamedTuple):
    name: str
    n_layers: int
    d_model: int
    n_heads: int


def heads_for(d_model: int) -> int:
    """Heads of 64 where the width allows; otherwise 2 narrower heads."""
    return d_model // 64 if d_model >= 128 else 2


def resolve_variant(variant, ladder: Mapping[str, tuple[int, int]], extra_names=()) -> Dims:
    """A ladder name or (n_layers, d_model[, n_heads]) -> Dims; ConfigError (with a "did you
    mean") otherwise. `extra_names` are further names the caller accepts (for the message)."""
    if isinstance(variant, str):
        if variant not in ladder:
            known = [*extra_names, *ladder]
            close = difflib.get_close_matches(variant, known, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown variant {variant!r}; {hint}choose one of: "
                              f"{', '.join(known)} (or (n_layers, d_model) in a sweep)")
        n_layers, d_model = ladder[variant]
        return Dims(variant, n_layers, d_model, heads_for(d_model))
    try:
        dims = tuple(int(v) for v in variant)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise ConfigError(
            f"variant {variant!r} must be a ladder name or (n_layers, d_model[, n_heads])")
    n_layers, d_model = dims[:2]
    n_heads = dims[2] if len(dims) == 3 else heads_for(d_model)
    if d_model % n_heads:
        raise ConfigError(
            f"variant {variant!r}: d_model={d_model} is not divisible by n_heads={n_heads}")
    return Dims(f"L{n_layers}d{d_model}", n_layers, d_model, n_heads)


# ---------------------------------------------------------------- compute


def tokens_trained(cfg: RunConfig, steps_done: int) -> int:
    return steps_done * tokens_per_step(cfg.train, cfg.model)


def flops_per_step(cfg: RunConfig) -> float:
    return train_flops_per_token(cfg.model) * tokens_per_step(cfg.train, cfg.model)
