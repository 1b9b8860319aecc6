"""First check of an accelerator machine; writes one JSON report.

  python -m experiments.gpu_check --out DIR            (scripts/gpu_check.sh runs it)

On a machine with an accelerator it (1) lists the devices and the peak MFU is quoted against,
(2) runs the precision and attention tests on the device and checks that a few training steps
on the device equal the same steps on the CPU and, with several devices, on a data-parallel
mesh, (3) benchmarks a 124M-class and a 350M-class GPT with bf16 compute and cuDNN attention,
remat off and on (tokens/s, MFU against the device's vendor peak), and (4) trains the `tiny`
variant and compares its final loss with the CPU's. Where JAX sees only a CPU
(JAX_PLATFORMS=cpu) the same steps run as a dry run at toy sizes, so the script can be tested
anywhere; the report says which it was (`mode`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

from experiments import cli

PROG = "python -m experiments.gpu_check"

# The tiny variant's final validation loss on CPU (nats/token; docs/benchmarks.md, from
# `python -m experiments.train --config configs/gpt.py:tiny`). The device run must land within
# TINY_TOLERANCE of it: the same data order and init, only the device's arithmetic differs.
TINY_CPU_LOSS = 1.84
TINY_TOLERANCE = 0.05

# (layers, width, heads) of the benchmarked shapes, GPT-2 small and medium, with GPT-2's
# vocabulary padded to a multiple of 128 and context 1024.
BENCH_SHAPES = {"124m": (12, 768, 12), "350m": (24, 1024, 16)}
BENCH_VOCAB, BENCH_CONTEXT, BENCH_BATCH = 50304, 1024, 16
# Toy stand-ins for the dry run on CPU: same code path, seconds instead of minutes.
DRY_SHAPES = {"124m": (2, 64, 2), "350m": (2, 96, 2)}
DRY_VOCAB, DRY_CONTEXT, DRY_BATCH = 256, 32, 8  # 8: divisible by up to 8 fake CPU devices
# On the device: the precision/attention/remat tests and the model tests (shapes, causality,
# KV-cache decoding). The dry run keeps the first file only: on 2 CPU cores the second takes minutes.
DEVICE_TESTS = ("tests/test_precision_attention.py", "tests/test_model.py")


def build_parser() -> cli.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for report.json and the tiny run (created)")
    p.add_argument("--steps", type=int, default=10, metavar="N",
                   help="timed steps per benchmark (the dry run uses 2)")
    p.add_argument("--skip", default="", metavar="PARTS",
                   help="comma-separated parts to leave out: tests, equivalence, bench, train")
    return p


def _config(shape, vocab, context, batch, **model):
    from configs import gpt

    c = gpt.get_config("tiny")
    c.model.n_layers, c.model.d_model, c.model.n_heads = shape
    c.model.vocab_size, c.model.context_length = vocab, context
    c.train.batch_size = batch
    for key, value in model.items():
        setattr(c.model, key, value)
    return cli.run_config(c)


def devices_report() -> dict:
    import jax

    from research import peaks

    devices = jax.devices()
    peak = peaks.device_peak(devices[0])
    return {"backend": jax.default_backend(), "jax": jax.__version__,
            "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
            "peak_flops_per_s_per_device": peak.per_device, "peak_source": peak.source}


def run_device_tests(repo: str, dry_run: bool) -> dict:
    """The model's precision, attention and remat tests, on the default (accelerator) device."""
    files = DEVICE_TESTS[:1] if dry_run else DEVICE_TESTS
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    tail = proc.stdout.strip().splitlines()[-1:] or [proc.stderr.strip()[-300:]]
    return {"command": " ".join(cmd[2:]), "ok": proc.returncode == 0, "summary": tail[0],
            "wall_s": round(time.perf_counter() - t0, 1)}


def _steps(config, devices, batches):
    import jax
    import numpy as np

    from research import sharding, train_state

    mesh = sharding.make_mesh(config.mesh, devices)
    trainer = train_state.build_trainer(config, mesh, total_steps=len(batches) + 1)
    state = trainer.init(jax.random.key(0))
    losses = []
    for b in batches:
        state, m = trainer.train_step(state, train_state.put_batch(trainer, b))
        losses.append(float(m["loss"]))
    return np.array(losses)


def equivalence(n_steps: int = 4) -> dict:
    """Training steps on the first device equal the CPU's, and, when there are several devices,
    a data-parallel mesh over all of them equals one device (float32, highest matmul precision,
    so TF32 does not blur the comparison)."""
    import jax
    import numpy as np

    config = _config((2, 64, 4), 256, 32, 8)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (8, 33)).astype(np.int32) for _ in range(n_steps)]
    out = {}
    with jax.default_matmul_precision("highest"):
        device = _steps(config, jax.devices()[:1], batches)
        cpu = _steps(config, jax.devices("cpu")[:1], batches)
        out["device_vs_cpu_max_rel"] = float(np.max(np.abs(device - cpu) / np.abs(cpu)))
        n = jax.device_count()
        if n > 1 and 8 % n == 0:
            config = dataclasses.replace(config, mesh=dataclasses.replace(config.mesh, data=n))
            data_parallel = _steps(config, jax.devices(), batches)
            out["data_parallel_devices"] = n
            out["data_parallel_max_rel"] = float(np.max(np.abs(data_parallel - device)
                                                        / np.abs(device)))
    out["ok"] = all(v < 1e-4 for k, v in out.items() if k.endswith("_max_rel"))
    return out


def benchmarks(dry_run: bool, steps: int, devices: dict) -> list[dict]:
    """tokens/s and MFU per shape, bf16 compute with cuDNN attention, remat none and full;
    MFU against the peak `devices_report` found (on CPU a timed matmul: measured once)."""
    from research import bench, peaks

    peak = peaks.Peak(devices["peak_flops_per_s_per_device"], devices["peak_source"])
    shapes, dims = (DRY_SHAPES, (DRY_VOCAB, DRY_CONTEXT, DRY_BATCH)) if dry_run else \
        (BENCH_SHAPES, (BENCH_VOCAB, BENCH_CONTEXT, BENCH_BATCH))
    attention = "auto" if dry_run else "cudnn"  # cuDNN attention exists only on NVIDIA GPUs
    rows = []
    for name, shape in shapes.items():
        for remat in ("none", "full"):
            config = _config(shape, *dims, compute_dtype="bfloat16", attention=attention,
                             remat=remat)
            row = {"model": name, "remat": remat, "attention": attention,
                   "compute_dtype": "bfloat16", "layers_width_heads": list(shape)}
            try:
                m = bench.measure(config, steps=2 if dry_run else steps, peak=peak)
                row.update({k: m[k] for k in ("params", "tokens_per_step", "compile_s", "step_s",
                                              "tokens_per_s", "mfu", "peak_source")})
                row["ok"] = True
            except Exception as e:  # noqa: BLE001  (one failed shape must not hide the others)
                row.update(ok=False, error=cli.one_line(e))
            rows.append(row)
    return rows


def train_tiny(out: str, dry_run: bool) -> dict:
    """The tiny variant on the device; its final loss against the CPU's."""
    import math

    from configs import gpt
    from research import train as train_lib

    config = gpt.get_config("tiny")
    if dry_run:  # a few steps: the path is exercised, the loss is not comparable
        config.train.tokens = 16 * 128 * 10
        config.train.final_eval_batches = 2
    t0 = time.perf_counter()
    result = train_lib.train(cli.run_config(config), os.path.join(out, "tiny"), progress=False)
    row = {"loss": result["loss"], "steps": result["steps"], "status": result["status"],
           "wall_s": round(time.perf_counter() - t0, 1)}
    if dry_run:
        row["ok"] = result["status"] == "done" and result["loss"] < math.log(256)
        row["check"] = "dry run: finite and below the uniform loss ln(256)"
    else:
        row["cpu_loss"] = TINY_CPU_LOSS
        row["ok"] = result["status"] == "done" and abs(result["loss"] - TINY_CPU_LOSS) < TINY_TOLERANCE
        row["check"] = f"|loss - CPU loss| < {TINY_TOLERANCE}"
    return row


def main(argv) -> int:
    args, _ = cli.parse(build_parser(), argv, allow_overrides=False)
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - {"tests", "equivalence", "bench", "train"}
    if unknown:
        cli.fail(f"--skip names unknown parts {sorted(unknown)}; "
                 "choose from tests, equivalence, bench, train")
    cli.quiet_absl()
    os.makedirs(args.out, exist_ok=True)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    t0 = time.perf_counter()
    report = {"devices": devices_report()}
    dry_run = report["devices"]["backend"] == "cpu"
    report["mode"] = "dry-run (cpu: toy sizes, no loss target)" if dry_run else "device"
    print(json.dumps(report["devices"]), flush=True)
    parts = {"tests": lambda: run_device_tests(repo, dry_run), "equivalence": equivalence,
             "bench": lambda: benchmarks(dry_run, args.steps, report["devices"]),
             "train": lambda: train_tiny(args.out, dry_run)}
    for name, part in parts.items():
        if name in skip:
            continue
        report[name] = part()
        print(f"[gpu_check] {name}: {json.dumps(report[name])}", flush=True)
    checked = [report[k] for k in parts if k in report]
    oks = [r["ok"] for r in checked if isinstance(r, dict)]
    oks += [row["ok"] for r in checked if isinstance(r, list) for row in r]
    report["ok"] = all(oks)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    from common import files

    files.write_json(os.path.join(args.out, "report.json"), report)
    print(f"[gpu_check] {'all checks passed' if report['ok'] else 'SOME CHECKS FAILED'} in "
          f"{report['wall_s']:.0f}s -> {os.path.join(args.out, 'report.json')}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    cli.run(main)
