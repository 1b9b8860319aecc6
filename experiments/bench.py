"""Throughput benchmark of one config's training step; prints one JSON object: tokens/s, step
time, compile time, model FLOP/s and MFU against a matmul peak measured in the same process.

  python -m experiments.bench --config configs/gpt.py:VARIANT [--steps N] [--config.KEY=VALUE ...]
"""

from __future__ import annotations

import json

from experiments import cli

PROG = "python -m experiments.bench"


def build_parser() -> cli.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    cli.add_config(p, "configs/gpt.py:tiny", "run config to benchmark")
    p.add_argument("--steps", type=int, default=10, metavar="N",
                   help="timed steps after compilation and one warm-up step")
    torch = p.add_argument_group("PyTorch comparison (experiments/compare_torch.py)")
    torch.add_argument("--compare-torch", action="store_true",
                       help="time configs a, b, c against the PyTorch eager peer, interleaved, "
                            "and print the ratios")
    torch.add_argument("--torch-python", default=None, metavar="PYTHON",
                       help="a Python with torch installed (default: $TORCH_PYTHON)")
    torch.add_argument("--torch-script", default=None, metavar="FILE",
                       help="the peer (default: shared/bench/torch_gpt.py beside the repository)")
    torch.add_argument("--rounds", type=int, default=3, help="interleaved rounds per config")
    return p


def main(argv) -> int:
    args, overrides = cli.parse(build_parser(), argv)
    if args.compare_torch:
        from experiments import compare_torch
        compare_torch.compare(rounds=args.rounds, steps=args.steps, torch_py=args.torch_python,
                              script=args.torch_script)
        return 0
    config = cli.load_run_config(args.config, overrides)
    cli.quiet_absl()
    from research import bench

    print(json.dumps(bench.measure(config, steps=args.steps)))
    return 0


if __name__ == "__main__":
    cli.run(main)
