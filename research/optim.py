"""AdamW with masked weight decay, global-norm clipping and the learning-rate schedules.

The schedule's numbers (peak, floor, warmup, decay start, length) are computed on the host by
`schedule_inputs` and enter the compiled train step as traced inputs, not constants: every run
of one model shape then shares one compiled step whatever its budget or learning rate.
Only the schedule's kind ("cosine", "constant", "wsd") is static.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import run_math

def schedule_inputs(t, total_steps: int) -> dict:
    """The schedule of a run of `total_steps` as float32 scalars (host arrays, fed to the step).

    Differences such as peak - floor are taken here in float64 and rounded once, as the
    constants of a baked-in schedule were, so the learning rate is the same to the bit.
    """
    peak = float(t.learning_rate)
    floor = peak * float(t.min_lr_ratio)
    warmup = run_math.warmup_steps(t, total_steps)
    start = run_math.decay_start(t.decay_fraction, total_steps)
    values = {
        "peak": peak, "floor": floor, "peak_minus_floor": peak - floor,
        "floor_minus_peak": floor - peak, "warmup": warmup,
        "cosine_span": max(total_steps - warmup, 1),
        "decay_start": start, "decay_span": max(total_steps - start, 1),
    }
    return {k: np.float32(v) for k, v in values.items()}


def lr_at(kind: str, step, s: dict):
    """Learning rate at `step` for schedule `kind` with the numbers `s` of schedule_inputs:
    linear warmup, then cosine to the floor at exactly the run's last step, constant, or
    warmup-stable-decay with a linear decay to the floor."""
    step = jnp.asarray(step, jnp.float32)
    ramp = s["peak"] * jnp.minimum(1.0, (step + 1.0) / s["warmup"])
    if kind == "constant":
        return ramp
    if kind == "cosine":
        frac = jnp.clip((step - s["warmup"]) / s["cosine_span"], 0.0, 1.0)
        decayed = s["floor"] + s["peak_minus_floor"] * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        return jnp.where(step < s["warmup"], ramp, decayed)
    if kind == "wsd":
        frac = jnp.clip((step - s["decay_start"]) / s["decay_span"], 0.0, 1.0)
        return jnp.where(step < s["decay_start"], ramp, s["peak"] + s["floor_minus_peak"] * frac)
    raise ValueError(f"unknown schedule {kind!r}")


def decay_mask(params):
    """Weight decay on matmul kernels only: not on norms, biases or embeddings."""
    def is_kernel(path, _):
        return getattr(path[-1], "key", None) == "kernel"
    return jax.tree_util.tree_map_with_path(is_kernel, params)


def decoupled_weight_decay(weight_decay: float, scale=None) -> optax.GradientTransformation:
    """Adds weight_decay x scale(path) x param to each kernel's update (decay_mask), before the
    learning rate multiplies it. `scale` (path -> factor) lets µP decay hidden matrices by λ·m so
    that, after their LR of η/m, the decay per step η·λ does not depend on width (MuAdamW)."""
    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params):
        mask = decay_mask(params)

        def add(path, u, p, decayed):
            if not decayed:
                return u
            factor = weight_decay * (scale(path) if scale is not None else 1.0)
            return u + factor * p

        return jax.tree_util.tree_map_with_path(add, updates, params, mask), state

    return optax.GradientTransformation(init, update)


def optimizer_with_schedule(t, schedule: optax.Schedule,
                            weight_decay_scale=None) -> optax.GradientTransformation:
    """AdamW + clipping. Its state does not depend on the schedule, so `tx.init` of any
    schedule fits a step that builds the same optimizer from traced schedule inputs.
    `weight_decay_scale` (path -> factor, µP's MuAdamW; research/mup.py) scales each kernel's λ;
    None is plain optax.adamw."""
    if weight_decay_scale is None:
        return optax.chain(
            optax.clip_by_global_norm(t.grad_clip),
            optax.adamw(schedule, b1=t.b1, b2=t.b2, weight_decay=t.weight_decay, mask=decay_mask),
        )
    # optax.adamw's own steps (Adam, decoupled decay, -LR), with a per-parameter decay.
    return optax.chain(
        optax.clip_by_global_norm(t.grad_clip),
        optax.scale_by_adam(b1=t.b1, b2=t.b2),
        decoupled_weight_decay(t.weight_decay, weight_decay_scale),
        optax.scale_by_learning_rate(schedule),
    )

