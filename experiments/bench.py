"""Throughput benchmark of one config's training step; prints one JSON object: tokens/s, step
time, compile time, model FLOP/s and MFU against a matmul peak measured in the same process.

  python -m experiments.bench --config configs/gpt.py:VARIANT [--steps N] [--config.KEY=VALUE ...]
"""

from __future__ import annotations

import json

from experiments import cli, compare_torch

PROG = "python -m experiments.bench"


def build_parser() -> cli.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    cli.add_config(p, "configs/gpt.py:tiny", "run config to benchmark")
    p.add_argument("--steps", type=int, default=10, metavar="N",
                   help="timed steps after compilation and one warm-up step")
    torch = p.add_argument_group("PyTorch comparison (experiments/compare_torch.py)")
    torch.add_argument("--compare-torch", action="store_true",
                       help="time configs a, b, c (or --configs) against the PyTorch eager "
                            "peer, interleaved, and print the ratios")
    compare_torch.add_arguments(torch)
    return p


def main(argv) -> int:
    args, overrides = cli.parse(build_parser(), argv)
    if args.compare_torch:
        compare_torch.run(args)
        return 0
    config = cli.load_run_config(args.config, overrides)
    cli.quiet_absl()
    from research import bench

    print(json.dumps(bench.measure(config, steps=args.steps)))
    return 0


if __name__ == "__main__":
    cli.run(main)
