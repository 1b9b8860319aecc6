"""Train one run (or resume it): writes config.json, metrics.jsonl, tb/, checkpoints/ and
result.json into the run directory.

  python -m experiments.train --config configs/gpt.py:VARIANT --workdir DIR [--config.KEY=VALUE ...]

Exit status: 0 done, 1 the run diverged (NaN/Inf loss), 2 bad input (one line on stderr),
3 storage error, 4 no readable checkpoint, 130 interrupted.
"""

from __future__ import annotations

import sys

from experiments import cli

from research.errors import EXIT_FAILED, ConfigError

PROG = "python -m experiments.train"


def variants_help() -> str:
    """The model-size ladder of configs/gpt.py, one variant a line (read from the config itself)."""
    from configs import gpt

    lines = ["variants (--config configs/gpt.py:VARIANT; dimensions are layers x width, heads):"]
    for name in cli.config_variants(gpt):
        m = gpt.get_config(name).model
        lines.append(f"  {name:>6}  {m.n_layers} x {m.d_model}, {m.n_heads} heads, "
                     f"{m.position} positions, context {m.context_length}")
    return "\n".join(lines)


def build_parser() -> cli.ArgumentParser:
    p = cli.parser(PROG, __doc__, epilog=variants_help())
    cli.add_config(p, "configs/gpt.py:tiny", "run config")
    p.add_argument("--workdir", metavar="DIR",
                   help="run directory; the same command again resumes the run it holds "
                        "(required unless --dry-run)")
    p.add_argument("--dry-run", action="store_true",
                             help="compile the train step for the configured mesh and print "
                                  "per-device memory, FLOPs and the largest shardings; no "
                                  "training, nothing written")
    p.add_argument("--progress", nargs="?", const=True, default=True, type=cli.parse_bool,
                   metavar="BOOL", help="progress bar on a terminal, periodic lines otherwise")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress output")
    multi = p.add_argument_group("multi-host (run the same command on every host)")
    multi.add_argument("--coordinator", default="127.0.0.1:12355", metavar="HOST:PORT",
                       help="address of process 0")
    multi.add_argument("--num-processes", type=int, default=1, metavar="N",
                       help="number of processes")
    multi.add_argument("--process-id", type=int, default=0, metavar="I",
                       help="this process's index")
    return p


def main(argv) -> int:
    args, overrides = cli.parse(build_parser(), argv)
    config = cli.load_run_config(args.config, overrides)
    cli.quiet_absl()
    cli.maybe_initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    if args.dry_run:
        from research import preflight
        print(preflight.format_report(preflight.run(config)))
        return 0
    if not args.workdir:
        raise ConfigError("--workdir is required; name the run directory (or pass --dry-run)")
    from research import metrics, train as train_lib

    metrics.check_tracking(config)
    result = train_lib.train(config, args.workdir, progress=args.progress)
    if result["status"] != "done":
        print(f"error: run {result['status']} after {result['steps']} steps (loss became "
              "NaN/Inf); lower --config.train.learning_rate", file=sys.stderr)
        return EXIT_FAILED
    print(f"done: loss {result['loss']:.4f} ± {result['loss_stderr']:.4f} nats/token "
          f"({result['bits_per_byte']:.3f} bits/byte), {result['tokens']:,} tokens, "
          f"{result['flops']:.3g} FLOPs, {result['wall_s']:.0f}s -> {args.workdir}/result.json")
    return 0


if __name__ == "__main__":
    cli.run(main)
