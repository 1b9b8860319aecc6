"""Throughput of a config's train step: compile time, step time, tokens/s, model FLOP/s, MFU.

MFU is quoted against a matmul peak measured in the same process, so the ratio is honest on
whatever machine this runs (a noisy shared CPU included).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from research import flops
from research.train import steps_of, validate
from research.train_state import build_trainer, put_batch


def matmul_peak_flops(n: int = 1024, repeats: int = 20) -> float:
    """Best-of FLOP/s of a jitted n x n x n float32 matmul on the default device(s)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def measure(config, steps: int = 5, peak: float | None = None) -> dict:
    """Compile and time `steps` train steps of `config` on random tokens (no workdir)."""
    mesh = validate(config)
    t = config.train
    ctx = int(config.model.context_length)
    trainer = build_trainer(config, mesh, max(steps_of(config), steps + 1))
    state = trainer.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    local = int(t.batch_size) // jax.process_count()
    batch = put_batch(trainer, rng.integers(0, int(config.model.vocab_size), (local, ctx + 1),
                                            dtype=np.int32))
    t0 = time.perf_counter()
    compiled = trainer.train_step.jitted.lower(state, batch, trainer.schedule).compile()
    compile_s = time.perf_counter() - t0
    state, m = compiled(state, batch, trainer.schedule)  # warm-up
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, batch, trainer.schedule)
    jax.block_until_ready((state, m))
    step_s = (time.perf_counter() - t0) / steps
    tokens_per_step = int(t.batch_size) * ctx
    model_flops = flops.train_flops_per_token(config.model) * tokens_per_step / step_s
    peak = peak if peak is not None else matmul_peak_flops()
    return {
        "variant": config.variant,
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
        "params": flops.param_counts(config.model)["params"],
        "tokens_per_step": tokens_per_step,
        "compile_s": round(compile_s, 3),
        "step_s": round(step_s, 5),
        "tokens_per_s": round(tokens_per_step / step_s, 1),
        "model_flops_per_s": model_flops,
        "matmul_peak_flops_per_s": peak,
        "mfu": model_flops / peak,
    }
