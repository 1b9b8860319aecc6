"""AdamW with masked weight decay, global-norm clipping and the learning-rate schedules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from research import run_math
from research.config import TrainConfig


def learning_rate_schedule(t: TrainConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup, then cosine to min_lr_ratio x peak at exactly the run's last step
    (default), constant, or warmup-stable-decay with a linear decay to min_lr_ratio x peak."""
    peak, floor = t.learning_rate, t.learning_rate * t.min_lr_ratio
    warmup = run_math.warmup_steps(t, total_steps)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        ramp = peak * jnp.minimum(1.0, (step + 1.0) / warmup)
        if t.schedule == "constant":
            return ramp
        if t.schedule == "cosine":
            span = max(total_steps - warmup, 1)
            frac = jnp.clip((step - warmup) / span, 0.0, 1.0)
            decayed = floor + (peak - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
            return jnp.where(step < warmup, ramp, decayed)
        if t.schedule == "wsd":
            start = run_math.decay_start(t.decay_fraction, total_steps)
            span = max(total_steps - start, 1)
            frac = jnp.clip((step - start) / span, 0.0, 1.0)
            return jnp.where(step < start, ramp, peak + (floor - peak) * frac)
        raise ValueError(f"unknown schedule {t.schedule!r}")

    return schedule


def decay_mask(params):
    """Weight decay on matmul kernels only: not on norms, biases or embeddings."""
    def is_kernel(path, _):
        return getattr(path[-1], "key", None) == "kernel"
    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(t: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(t.grad_clip),
        optax.adamw(learning_rate_schedule(t, total_steps), b1=t.b1, b2=t.b2,
                    weight_decay=t.weight_decay, mask=decay_mask),
    )
