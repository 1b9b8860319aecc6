"""GPT training configs: `--config configs/gpt.py:VARIANT`.

The model-size ladder is a table. Within the family the aspect ratio d_model / n_layers is
constant (32) and heads are 64 wide where the width allows (narrower models use 2 heads).
Every key and its default is declared once, in research/config.py (typed, frozen dataclasses);
`base_config()` turns them into a ConfigDict, so a misspelt command-line override fails instead
of being ignored, and a variant here only says what it changes.
"""

import dataclasses
import difflib
from typing import NamedTuple

import ml_collections

from research.config import RunConfig
from research.errors import ConfigError

ASPECT_RATIO = 32

# name: (n_layers, d_model). Non-embedding parameters ~ 12 * n_layers * d_model^2.
LADDER = {
    "100k": (2, 64),
    "300k": (3, 96),
    "800k": (4, 128),
    "1.5m": (5, 160),
    "2.7m": (6, 192),
    "6m": (8, 256),
    "20m": (12, 384),
    "50m": (16, 512),
    "170m": (24, 768),
    "400m": (32, 1024),
    "800m": (40, 1280),
    "1.4b": (48, 1536),
}
# Every ARG get_config accepts (the CLI checks it and suggests the closest on a typo).
VARIANTS = ("tiny", *LADDER)

# Peak learning rate per variant under SP (model.parametrization="sp"). 100k, 300k and 800k are
# MEASURED: each size's best point of a factor-2 grid (7.5e-4 .. 2.4e-2) at 524k tokens of the
# embedded corpus, context 128, batch 16, from configs/sweeps/lr_ladder.py (reproduce:
# `python -m experiments.sweep run --config configs/sweeps/lr_ladder.py --workdir sweeps/lr_ladder`).
# 1.5m-50m are EXTRAPOLATED from 800k as 1/d_model (what µP prescribes across width; these also
# deepen); 170m and up follow GPT-3's table for similar widths (Brown et al. 2020, Table 2.1).
# Under µP, train.learning_rate is the base width's LR instead (research/mup.py).
LEARNING_RATES = {
    "100k": 6e-3,
    "300k": 6e-3,
    "800k": 3e-3,
    "1.5m": 2.4e-3,
    "2.7m": 2e-3,
    "6m": 1.5e-3,
    "20m": 1e-3,
    "50m": 7.5e-4,
    "170m": 4e-4,
    "400m": 3e-4,
    "800m": 2.5e-4,
    "1.4b": 2e-4,
}


class Dims(NamedTuple):
    name: str
    n_layers: int
    d_model: int
    n_heads: int


def heads_for(d_model: int) -> int:
    """Heads of 64 where the width allows; otherwise 2 narrower heads."""
    return d_model // 64 if d_model >= 128 else 2


def variant_dims(variant) -> Dims:
    """A ladder name or (n_layers, d_model[, n_heads]) -> Dims; ConfigError (with a "did you
    mean") otherwise. A shape on the ladder takes the ladder's name, so equal shapes get equal
    names (and, through the config, equal hashes)."""
    if isinstance(variant, str):
        if variant not in LADDER:
            close = difflib.get_close_matches(variant, VARIANTS, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown variant {variant!r}; {hint}choose one of: "
                              f"{', '.join(VARIANTS)} (or (n_layers, d_model) in a sweep)")
        n_layers, d_model = LADDER[variant]
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
    on_ladder = [name for name, shape in LADDER.items()
                 if shape == (n_layers, d_model) and heads_for(d_model) == n_heads]
    return Dims(on_ladder[0] if on_ladder else f"L{n_layers}d{d_model}", n_layers, d_model,
                n_heads)


def variant_config(base: RunConfig, variant) -> RunConfig:
    """`base` with a variant's dimensions and name: the one rule for configs/gpt.py:VARIANT and
    a sweep's variants. Under SP a ladder shape also takes its LEARNING_RATES entry (tuned per
    size); under µP the base's LR is the base width's and transfers, so it stays."""
    dims = variant_dims(variant)
    model = dataclasses.replace(base.model, n_layers=dims.n_layers, d_model=dims.d_model,
                                n_heads=dims.n_heads)
    train = base.train
    if model.parametrization == "sp" and dims.name in LEARNING_RATES:
        train = dataclasses.replace(train, learning_rate=LEARNING_RATES[dims.name])
    return dataclasses.replace(base, variant=dims.name, model=model, train=train)


def tiny() -> RunConfig:
    """About 1.5 minutes on 2 CPU cores to Shakespeare-shaped text. Rotary positions: with
    learned ones this model sits near 2.5 nats for its first ~400 steps (1.84 vs 2.11 nats
    after 1M tokens)."""
    d = RunConfig()
    model = dataclasses.replace(d.model, n_layers=4, d_model=128, n_heads=4, position="rope",
                                context_length=128)
    train = dataclasses.replace(d.train, batch_size=16, tokens=1_000_000, eval_every=100,
                                checkpoint_every=100)
    return dataclasses.replace(d, variant="tiny", model=model, train=train)


def base_config() -> ml_collections.ConfigDict:
    """Every key with its default, as declared once in research/config.py."""
    return ml_collections.ConfigDict(RunConfig().to_dict())


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    """The ConfigDict the command line overrides (a ConfigError naming the closest variant
    when `arg` is not one)."""
    cfg = tiny() if arg == "tiny" else variant_config(RunConfig(), arg)
    return ml_collections.ConfigDict(cfg.to_dict())
