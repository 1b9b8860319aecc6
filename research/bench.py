"""Throughput of a config's train step: compile time, step time, tokens/s, model FLOP/s, MFU.

MFU = whole-mesh model FLOP/s / (per-device peak x mesh devices). The per-device peak is the
vendor dense bf16 figure on known accelerators and a matmul measured in the same process on CPU
(research/peaks.py); the output names the peak and its source.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from research import flops, peaks, run_math
from research.config import RunConfig
from research.train import validate
from research.train_state import build_trainer, put_batch


def measure(cfg: RunConfig, steps: int = 5, peak: float | peaks.Peak | None = None) -> dict:
    """Compile and time `steps` train steps of `cfg` on random tokens (no workdir).

    peak: the per-device peak (FLOP/s or a Peak); None = research/peaks.device_peak()."""
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
    for _ in range(2):  # warm-up: the first call after compiling is several times slower
        state, m = compiled(state, batch, trainer.schedule)
        jax.block_until_ready(m)
    times = []
    for _ in range(steps):  # each step timed alone: the median ignores a step slowed by load
        t0 = time.perf_counter()
        state, m = compiled(state, batch, trainer.schedule)
        jax.block_until_ready((state, m))
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    tokens_per_step = run_math.tokens_per_step(cfg.train, cfg.model)
    model_flops = run_math.flops_per_step(cfg) / step_s
    if peak is None:
        peak = peaks.device_peak(mesh.devices.flat[0])
    elif not isinstance(peak, peaks.Peak):
        peak = peaks.Peak(float(peak), "given by the caller")
    n_devices = int(mesh.devices.size)
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
        "mesh_devices": n_devices,
        "peak_flops_per_s_per_device": peak.per_device,
        "peak_source": peak.source,
        "peak_flops_per_s": peak.of_mesh(n_devices),
        "mfu": model_flops / peak.of_mesh(n_devices),
    }
