"""AdamW with masked weight decay, global-norm clipping and the learning-rate schedules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def warmup_steps_of(t, total_steps: int) -> int:
    if t.warmup_steps > 0:
        return int(t.warmup_steps)
    return max(1, int(round(t.warmup_fraction * total_steps)))


def decay_start_of(t, total_steps: int) -> int:
    """WSD: the step where the decay phase begins (a branch starts from this checkpoint)."""
    return int(round(total_steps * (1.0 - t.decay_fraction)))


def learning_rate_schedule(t, total_steps: int) -> optax.Schedule:
    """Linear warmup, then cosine to min_lr_ratio x peak at exactly the run's last step
    (default), constant, or warmup-stable-decay with a linear decay to min_lr_ratio x peak."""
    peak, floor = float(t.learning_rate), float(t.learning_rate) * float(t.min_lr_ratio)
    warmup = warmup_steps_of(t, total_steps)

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
            start = decay_start_of(t, total_steps)
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


def make_optimizer(t, total_steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(t.grad_clip),
        optax.adamw(learning_rate_schedule(t, total_steps), b1=t.b1, b2=t.b2,
                    weight_decay=t.weight_decay, mask=decay_mask),
    )
