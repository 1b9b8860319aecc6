"""Throughput of a config's train step: compile time, step time, tokens/s, model FLOP/s, MFU.

MFU is quoted against a matmul peak measured in the same process, so the ratio is honest on
whatever machine this runs (a noisy shared CPU included).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from research import flops, run_math
from research.config import RunConfig
from research.train import validate
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
    cfg = RunConfig.from_configdict(config)
    # Throughput does not depend on where a branch starts (its parent may not exist yet).
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, init_from="", init_step=-1))
    mesh = validate(cfg)
    ctx = cfg.model.context_length
    trainer = build_trainer(cfg, mesh, max(run_math.steps(cfg), steps + 1))
    state = trainer.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    local = cfg.train.batch_size // jax.process_count()
    batch = put_batch(trainer, rng.integers(0, cfg.model.vocab_size, (local, ctx + 1),
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
    tokens_per_step = run_math.tokens_per_step(cfg.train, cfg.model)
    model_flops = run_math.flops_per_step(cfg) / step_s
    peak = peak if peak is not None else matmul_peak_flops()
    return {
        "variant": cfg.variant,
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
        "params": flops.param_counts(cfg.model)["params"],
        "tokens_per_step": tokens_per_step,
        "compile_s": round(compile_s, 3),
        "step_s": round(step_s, 5),
        "tokens_per_s": round(tokens_per_step / step_s, 1),
        "model_flops_per_s": model_flops,
        "matmul_peak_flops_per_s": peak,
        "mfu": model_flops / peak,
    }
