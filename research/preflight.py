"""Ahead-of-time preflight: lower and compile the train step for the configured mesh, without
data, parameters or training, and report what each device will hold.

Everything is abstract (`jax.eval_shape` shapes carrying the target shardings), so a 64-device
mesh can be checked on a laptop with XLA_FLAGS=--xla_force_host_platform_device_count=64.
The memory figures are XLA's for the compiled per-device program (on CPU they are the CPU
backend's; a GPU/TPU compile can fuse and schedule differently, so treat them as a close guide).
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from research import checkpoint, run_math
from research.config import RunConfig
from research.train import validate
from research.train_state import build_trainer


def _device_bytes(shape_dtype, sharding) -> int:
    """Bytes one device holds of an array with this sharding."""
    return int(np.prod(sharding.shard_shape(shape_dtype.shape))) * jnp.dtype(shape_dtype.dtype).itemsize


def _path(keys) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in keys)


def run(cfg: RunConfig, *, largest: int = 6) -> dict:
    """Compile `cfg`'s train step on its mesh; returns the report (see `format_report`)."""
    t0 = time.perf_counter()
    mesh = validate(cfg)  # a mesh that cannot shard the model is a one-line ConfigError
    trainer = build_trainer(cfg, mesh, max(run_math.steps(cfg), 1))
    abstract = checkpoint.abstract_like(trainer.state_shapes, trainer.state_shardings)
    t = cfg.train
    batch = jax.ShapeDtypeStruct((t.batch_size, cfg.model.context_length + 1),
                                 jnp.int32, sharding=trainer.batch_sharding)
    with trainer.activate():
        compiled = trainer.train_step.jitted.lower(abstract, batch, trainer.schedule).compile()
    compile_s = time.perf_counter() - t0

    def held(tree):
        return sum(_device_bytes(s, s.sharding) for s in jax.tree.leaves(tree))

    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    n_devices = int(mesh.devices.size)
    leaves = jax.tree_util.tree_flatten_with_path(abstract)[0]
    biggest = sorted(leaves, key=lambda kv: -math.prod(kv[1].shape))[:largest]
    return {
        "mesh": dict(mesh.shape),
        "devices": n_devices,
        "platform": mesh.devices.flat[0].platform,
        "compile_s": round(compile_s, 2),
        "per_device_bytes": {
            "params": held(abstract["params"]),
            "optimizer_state": held(abstract["opt_state"]),
            "arguments": int(mem.argument_size_in_bytes),
            "outputs": int(mem.output_size_in_bytes),
            "aliased": int(mem.alias_size_in_bytes),
            "temporaries": int(mem.temp_size_in_bytes),
            "code": int(mem.generated_code_size_in_bytes),
            # Donated state is aliased into the outputs, so it is counted once.
            "peak_estimate": int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                                 - mem.alias_size_in_bytes + mem.temp_size_in_bytes),
        },
        "flops_per_step_per_device_xla": float(cost.get("flops", float("nan"))),
        "flops_per_step_analytic": run_math.flops_per_step(cfg),
        "largest_arrays": [
            {"name": _path(k), "shape": list(v.shape), "dtype": str(v.dtype),
             "spec": str(v.sharding.spec), "per_device_bytes": _device_bytes(v, v.sharding)}
            for k, v in biggest],
    }


def _gib(n: float) -> str:
    return f"{n / 2**30:.3f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def format_report(r: dict) -> str:
    b = r["per_device_bytes"]
    mesh = " x ".join(f"{k} {v}" for k, v in r["mesh"].items())
    lines = [
        f"preflight: compiled the train step for {r['devices']} {r['platform']} devices "
        f"(mesh {mesh}) in {r['compile_s']:.1f}s",
        "per-device memory (XLA memory analysis):",
        f"  parameters       {_gib(b['params'])}",
        f"  optimizer state  {_gib(b['optimizer_state'])}",
        f"  temporaries      {_gib(b['temporaries'])}",
        f"  arguments {_gib(b['arguments'])}, outputs {_gib(b['outputs'])} "
        f"(aliased {_gib(b['aliased'])}), code {_gib(b['code'])}",
        f"  peak estimate    {_gib(b['peak_estimate'])} (arguments + outputs - aliased + temporaries)",
        f"FLOPs per step: {r['flops_per_step_analytic']:.4g} analytic for the whole batch, "
        f"{r['flops_per_step_analytic'] / r['devices']:.4g} per device; XLA's cost analysis "
        f"counts {r['flops_per_step_per_device_xla']:.4g} per device (a scanned layer once)",
        "largest arrays (global shape, sharding, per-device size):",
    ]
    lines += [f"  {a['name']:<40} {str(a['shape']):<22} {a['dtype']:<8} {a['spec']:<34} "
              f"{_gib(a['per_device_bytes'])}" for a in r["largest_arrays"]]
    return "\n".join(lines)


def shape_key(cfg: RunConfig) -> tuple:
    """Runs with equal keys compile the same train step (budgets and seeds do not matter)."""
    mesh = cfg.mesh
    return (cfg.model, cfg.train.batch_size, cfg.train.microbatches,
            (mesh.data, mesh.fsdp, mesh.tensor))


def check_shapes(configs, out=print) -> None:
    """Preflight each distinct shape of a sweep; one line each. Raises on the first bad one."""
    seen = set()
    for cfg in configs:
        key = shape_key(cfg)
        if key in seen:
            continue
        seen.add(key)
        r = run(cfg)
        b = r["per_device_bytes"]
        m = cfg.model
        out(f"preflight {m.n_layers}x{m.d_model} batch {cfg.train.batch_size} on "
            f"{r['devices']} devices: params {_gib(b['params'])}, optimizer {_gib(b['optimizer_state'])}, "
            f"temporaries {_gib(b['temporaries'])}, peak ~{_gib(b['peak_estimate'])} per device")
