"""scaling-lab: one command for every entry point (installed by `pip install -e .`).

  scaling-lab COMMAND [ARGS...]       the same as  python -m MODULE [ARGS...]

Each command is a thin name for a module's own command line: `scaling-lab train --help` is
`python -m experiments.train --help`, `scaling-lab fit runs.csv --out fits/a` is
`python -m analysis fit runs.csv --out fits/a`.
"""

from __future__ import annotations

import importlib
import sys

# name: (module, what it does, how its main is called)
#   "guarded": main(argv) -> code, a UserError made one line by experiments.cli.guarded
#   "code":    main(argv) -> code, errors already handled
#   "analysis": the analysis CLI, with the command name kept as its subcommand
COMMANDS = {
    "train": ("experiments.train", "train one run, or resume it", "guarded"),
    "sample": ("experiments.sample", "continue a prompt from a run's checkpoint", "guarded"),
    "sweep": ("experiments.sweep", "plan, run and follow a sweep (plan | run | status)", "code"),
    "fit": ("analysis.__main__", "fit a scaling law to results, with intervals, plots and a report",
            "analysis"),
    "isoflop": ("analysis.__main__", "iso-FLOP parabolas (Approach 2)", "analysis"),
    "envelope": ("analysis.__main__", "lower envelope of training curves (Approach 1)", "analysis"),
    "curves": ("analysis.__main__", "a sweep's training curves as a table", "analysis"),
    "bench": ("experiments.bench", "throughput and MFU of one config's training step", "guarded"),
    "devices": ("experiments.devices", "what JAX sees: platform, devices, processes, peak",
                "guarded"),
    "coord-check": ("experiments.coord_check", "muP coordinate check across widths", "guarded"),
    "lr-transfer": ("experiments.lr_transfer", "loss against LR per width of a sweep",
                    "guarded"),
    "data-bench": ("experiments.data_bench", "time building and reading a token store", "code"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [__doc__.strip(), "", "commands:"]
    lines += [f"  {name:<{width}}  {what}  (python -m {module.removesuffix('.__main__')}"
              f"{' ' + name if kind == 'analysis' else ''})"
              for name, (module, what, kind) in COMMANDS.items()]
    lines += ["", "scaling-lab COMMAND --help lists a command's flags."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib
        guess = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"did you mean {guess[0]}? " if guess else ""
        print(f"error: unknown command {name!r}; {hint}see scaling-lab --help", file=sys.stderr)
        return 2
    module_name, _, kind = COMMANDS[name]
    if kind == "analysis":
        from analysis.__main__ import main as analysis_main
        return int(analysis_main([name, *rest]) or 0)
    module = importlib.import_module(module_name)
    if kind == "guarded":
        from experiments import cli
        return cli.guarded(module.main, rest)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
