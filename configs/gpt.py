"""GPT training configs: `--config configs/gpt.py:VARIANT`.

The model-size ladder is a table. Within the family the aspect ratio d_model / n_layers is
constant (32) and heads are 64 wide where the width allows (narrower models use 2 heads).
Every key and its default is declared once, in research/config.py (typed, frozen dataclasses);
`base_config()` turns them into a ConfigDict, so a misspelt command-line override fails instead
of being ignored, and a variant here only says what it changes.
"""

import ml_collections

from research import config as run_config
from research.run_math import heads_for, resolve_variant  # noqa: F401  (heads_for: public)

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


def base_config() -> ml_collections.ConfigDict:
    """Every key with its default, as declared once in research/config.py."""
    return ml_collections.ConfigDict(run_config.defaults())


def _apply_ladder(c, n_layers, d_model, n_heads):
    c.model.n_layers = n_layers
    c.model.d_model = d_model
    c.model.n_heads = n_heads


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    c = base_config()
    c.variant = arg
    if arg == "tiny":
        # About 1.5 minutes on 2 CPU cores to Shakespeare-shaped text. Rotary positions: with
        # learned ones this model sits near 2.5 nats for its first ~400 steps (1.84 vs 2.11
        # nats after 1M tokens).
        _apply_ladder(c, 4, 128, 4)
        c.model.position = "rope"
        c.model.context_length = 128
        c.train.batch_size = 16
        c.train.tokens = 1_000_000
        c.train.eval_every = 100
        c.train.checkpoint_every = 100
    else:  # a ConfigError naming the closest variant when `arg` is not one
        dims = resolve_variant(arg, LADDER, extra_names=("tiny",))
        _apply_ladder(c, dims.n_layers, dims.d_model, dims.n_heads)
        c.train.learning_rate = LEARNING_RATES[dims.name]
    return c
