"""Step arithmetic, defined once for the trainer and the sweep planner.

- tokens per optimizer step and the number of steps a token budget buys;
- warmup length and the WSD decay start (one rounding rule: nearest step, `round`);
- the tokens and analytic FLOPs of steps (research/flops.py defines FLOPs per token).

Functions take the typed configs of research/config.py.
"""

from __future__ import annotations

from research.config import ModelConfig, RunConfig, TrainConfig
from research.flops import train_flops_per_token


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


# ---------------------------------------------------------------- compute


def tokens_trained(cfg: RunConfig, steps_done: int) -> int:
    return steps_done * tokens_per_step(cfg.train, cfg.model)


def flops_per_step(cfg: RunConfig) -> float:
    return train_flops_per_token(cfg.model) * tokens_per_step(cfg.train, cfg.model)
