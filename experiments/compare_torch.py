"""Our train step against the PyTorch eager peer (shared/bench/torch_gpt.py), interleaved.

  python -m experiments.bench --compare-torch [--torch-python PY] [--rounds 3] [--configs a,c]
  bash scripts/compare_torch.sh

For each config (a: d256 L4 ctx256 b16, b: d512 L8 ctx256 b8, c: d128 L2 ctx128 b32) it alternates
one timed measurement of ours (in this process, compiled once) with one of the peer (a
subprocess of the torch interpreter), `rounds` times, and reports the medians, the ratio
ours / torch and both MFUs against one matmul peak measured here. Interleaving matters: on a
shared machine the load changes from minute to minute, and both sides should see the same.

The torch interpreter comes from --torch-python, else $TORCH_PYTHON, else this interpreter if it
can import torch. torch is never a dependency of the project: install it in a separate venv.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

from research.errors import UserError  # one-line error, exit 2

REPO = pathlib.Path(__file__).resolve().parents[1]
# shared/ sits beside the clone (or beside its worktree folder).
PEER_CANDIDATES = [p / "shared" / "bench" / "torch_gpt.py" for p in (REPO.parent, REPO.parent.parent)]

# name: (d_model, n_layers, context, batch); heads 64 wide (2 below d=128), as configs/gpt.py.
CONFIGS = {"a": (256, 4, 256, 16), "b": (512, 8, 256, 8), "c": (128, 2, 128, 32)}


class CompareError(UserError):
    pass


def torch_python(explicit: str | None) -> str:
    """The interpreter that runs the peer; a one-line error if none can import torch."""
    candidates = [explicit] if explicit else [os.environ.get("TORCH_PYTHON"), sys.executable]
    for py in filter(None, candidates):
        ok = subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0
        if ok:
            return py
        if explicit or py == os.environ.get("TORCH_PYTHON"):
            raise CompareError(f"{py} cannot import torch; install the CPU wheel in a separate venv "
                               "(python3 -m venv /work/torchvenv && /work/torchvenv/bin/pip install "
                               "torch) and pass --torch-python /work/torchvenv/bin/python")
    raise CompareError("no Python with torch found; set --torch-python or TORCH_PYTHON to the "
                       "python of a venv with torch installed (never in requirements.txt)")


def our_config(name: str):
    import dataclasses

    from configs import gpt
    from research.config import RunConfig

    d, layers, ctx, batch = CONFIGS[name]
    c = RunConfig()
    model = dataclasses.replace(c.model, d_model=d, n_layers=layers, n_heads=gpt.heads_for(d),
                                context_length=ctx, position="learned")  # as the peer
    return dataclasses.replace(
        c, variant=f"compare-{name}", model=model,
        train=dataclasses.replace(c.train, batch_size=batch),
        mesh=dataclasses.replace(c.mesh, data=1))  # one CPU device, as the peer


class Ours:
    """Our train step of one config, compiled once, timed on demand."""

    def __init__(self, config):
        import jax
        import numpy as np

        from research import sharding
        from research.train_state import build_trainer, put_batch

        mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
        self.trainer = build_trainer(config, mesh, total_steps=1000)
        self.state = self.trainer.init(jax.random.key(0))
        ctx, batch = int(config.model.context_length), int(config.train.batch_size)
        rng = np.random.default_rng(0)
        self.batch = put_batch(self.trainer, rng.integers(0, 256, (batch, ctx + 1), dtype=np.int32))
        self.tokens_per_step = batch * ctx
        self.compiled = self.trainer.train_step.jitted.lower(
            self.state, self.batch, self.trainer.schedule).compile()
        self.time(1)  # warm-up

    def time(self, steps: int) -> float:
        """tokens/s over `steps` steps."""
        import jax

        t0 = time.perf_counter()
        for _ in range(steps):
            self.state, m = self.compiled(self.state, self.batch, self.trainer.schedule)
        jax.block_until_ready((self.state, m))
        return self.tokens_per_step * steps / (time.perf_counter() - t0)


def peer_tokens_per_s(py: str, script: pathlib.Path, name: str, steps: int, env: dict) -> float:
    d, layers, ctx, batch = CONFIGS[name]
    from configs import gpt

    cmd = [py, str(script), "--d", str(d), "--layers", str(layers), "--heads", str(gpt.heads_for(d)),
           "--ctx", str(ctx), "--batch", str(batch), "--steps", str(steps), "--warmup", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"torch peer failed: {proc.stderr.strip()[-500:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["tokens_per_s"])


def compare(names=("a", "b", "c"), rounds: int = 3, steps: int = 5, torch_py: str | None = None,
            script: str | None = None, out=print) -> list[dict]:
    from research import flops, peaks

    py = torch_python(torch_py)
    found = [pathlib.Path(script)] if script else [p for p in PEER_CANDIDATES if p.is_file()]
    if not found or not found[0].is_file():
        raise CompareError(f"torch peer {script or PEER_CANDIDATES[0]} not found; pass "
                           "--torch-script PATH to shared/bench/torch_gpt.py")
    script_path = found[0]
    # The peer runs as PyTorch ships: without an allocator preloaded for us.
    peer_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    peak = peaks.matmul_peak_flops()
    rows = []
    for name in names:
        config = our_config(name)
        ours = Ours(config)
        mine, theirs = [], []
        for _ in range(rounds):  # A, B, A, B, ...: both sides see the same load
            mine.append(ours.time(steps))
            theirs.append(peer_tokens_per_s(py, script_path, name, steps, peer_env))
        # The peak is re-measured per config and the best kept: one taken in a busy minute
        # understates it (MFU over 100% was seen on a loaded machine).
        peak = max(peak, peaks.matmul_peak_flops())
        fpt = flops.train_flops_per_token(config.model)
        ours_tps, torch_tps = statistics.median(mine), statistics.median(theirs)
        d, layers, ctx, batch = CONFIGS[name]
        row = {
            "config": name, "d_model": d, "n_layers": layers, "context": ctx, "batch": batch,
            "ours_tokens_per_s": round(ours_tps, 1), "torch_tokens_per_s": round(torch_tps, 1),
            "ratio": round(ours_tps / torch_tps, 3),
            "ours_mfu": round(ours_tps * fpt / peak, 4), "torch_mfu": round(torch_tps * fpt / peak, 4),
            "ours_all": [round(x, 1) for x in mine], "torch_all": [round(x, 1) for x in theirs],
            "matmul_peak_gflops": round(peak / 1e9, 1), "ld_preload_ours": os.environ.get("LD_PRELOAD", ""),
        }
        rows.append(row)
        out(json.dumps(row))
    out(summary(rows))
    return rows


def summary(rows) -> str:
    lines = [f"{'config':<28}{'ours tok/s':>12}{'torch tok/s':>13}{'ours/torch':>12}{'MFU ours':>10}{'MFU torch':>11}"]
    for r in rows:
        shape = f"{r['config']}: d{r['d_model']} L{r['n_layers']} ctx{r['context']} b{r['batch']}"
        lines.append(f"{shape:<28}{r['ours_tokens_per_s']:>12,.0f}{r['torch_tokens_per_s']:>13,.0f}"
                     f"{r['ratio']:>12.2f}{r['ours_mfu']:>10.1%}{r['torch_mfu']:>11.1%}")
    return "\n".join(lines)


def add_arguments(group) -> None:
    """The peer's options, shared with `experiments.bench --compare-torch`."""
    group.add_argument("--torch-python", default=None, metavar="PYTHON",
                       help="a Python with torch installed (default: $TORCH_PYTHON)")
    group.add_argument("--torch-script", default=None, metavar="FILE",
                       help="the peer (default: shared/bench/torch_gpt.py beside the repository)")
    group.add_argument("--rounds", type=int, default=3, help="interleaved rounds per config")
    group.add_argument("--configs", default="a,b,c", metavar="LIST",
                       help=f"comma-separated configs to time, of {', '.join(CONFIGS)}")


def run(args) -> None:
    """Checks --configs, then compares (args as parsed with add_arguments, plus --steps)."""
    from experiments import cli

    names = cli.split_list(args.configs, "--configs")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise CompareError(f"unknown config {unknown[0]!r}; choose from {', '.join(CONFIGS)}")
    cli.quiet_absl()
    compare(tuple(names), rounds=args.rounds, steps=args.steps, torch_py=args.torch_python,
            script=args.torch_script)


def build_parser():
    from experiments import cli

    p = cli.parser("python -m experiments.compare_torch", __doc__)
    add_arguments(p)
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    return p


def main(argv) -> int:
    from experiments import cli

    args, _ = cli.parse(build_parser(), argv, allow_overrides=False)
    run(args)
    return 0


if __name__ == "__main__":
    from experiments import cli

    cli.run(main)
