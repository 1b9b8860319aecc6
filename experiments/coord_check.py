"""Coordinate check: activation RMS against width under SP and µP, as a PNG and a JSON file.

  python -m experiments.coord_check --config configs/gpt.py:tiny --widths 64,128,256,512 --out DIR

Writes DIR/coord_check.json (per parametrization, step, layer and width: the RMS of the layer's
output and the RMS of its change since init, and each curve's slope in log width) and
DIR/coord_check.png (a panel per parametrization and recorded step), and prints the curves that
break µP (research/coord_check.py:violations). Under µP every slope should be near 0 (the
attention and output logits at init: -1/2); under SP some grow. The depth, heads,
context, batch and LR come from the config; only d_model varies. Research code:
research/coord_check.py.
"""

from __future__ import annotations

import os

from common import files
from experiments import cli

PROG = "python -m experiments.coord_check"


def build_parser() -> cli.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    cli.add_config(p, "configs/gpt.py:tiny", "model config (only d_model varies)")
    p.add_argument("--widths", default="64,128,256,512", help="comma-separated d_model values")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for coord_check.json and coord_check.png")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps per width")
    p.add_argument("--seeds", type=int, default=3, help="seeds averaged per width")
    p.add_argument("--record-steps", default="0,1,2,5",
                   help="also record after these steps (the last step always is)")
    return p


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        cli.fail(f"--{flag}={text!r} is not a comma-separated list of integers; write e.g. 64,128")
    if not values or min(values) < 0:
        cli.fail(f"--{flag} needs non-negative integers, got {text!r}")
    return values


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params, steps = list(result["rms"]), result["steps"]
    kinds = sorted({layer.split("/")[-1] for p in params for layer in result["rms"][p][steps[0]]})
    colours = dict(zip(kinds, plt.cm.tab20.colors))
    fig, axes = plt.subplots(len(params), len(steps), figsize=(3.2 * len(steps), 3.0 * len(params)),
                             sharex=True, squeeze=False)
    for row, p in enumerate(params):
        for col, t in enumerate(steps):
            ax = axes[row][col]
            for layer, values in sorted(result["rms"][p][t].items()):
                ax.plot(result["widths"], values, marker=".", lw=1,
                        color=colours[layer.split("/")[-1]])
            ax.set(xscale="log", yscale="log", title=f"{p.upper()}, step {t}")
            ax.set_xticks(result["widths"], [str(w) for w in result["widths"]])
            ax.minorticks_off()
            if row == len(params) - 1:
                ax.set_xlabel("width (d_model)")
            if col == 0:
                ax.set_ylabel("activation RMS")
    handles = [plt.Line2D([], [], color=colours[k], label=k) for k in kinds]
    fig.legend(handles=handles, loc="center right", fontsize=7, title="module")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv) -> int:
    args, overrides = cli.parse(build_parser(), argv)
    config = cli.load_run_config(args.config, overrides)
    cli.quiet_absl()
    from research import coord_check

    widths = _ints(args.widths, "widths")
    if len(widths) < 2:
        cli.fail("--widths needs at least two widths to fit a slope; write e.g. 64,128,256,512")
    if args.steps < 1 or args.seeds < 1:
        cli.fail("--steps and --seeds must be >= 1")
    result = coord_check.measure(config, widths, steps=args.steps, seeds=args.seeds,
                                 record_steps=_ints(args.record_steps, "record-steps"))
    result["variant"] = config.variant
    os.makedirs(args.out, exist_ok=True)
    files.write_json(os.path.join(args.out, "coord_check.json"), result, indent=1)
    plot(result, os.path.join(args.out, "coord_check.png"))
    for line in _summary(result, coord_check.violations):
        print(line)
    print(f"wrote {args.out}/coord_check.json and coord_check.png")
    return 0


def _summary(result, violations):
    """Per parametrisation: the curves that break µP's rule, and the steepest one at the end."""
    for p in result["rms"]:
        broken = violations(result, p)
        yield (f"{p}: {len(broken)} curves break µP's flat-in-width rule"
               + (": " + ", ".join(f"{k} ({v:+.2f})" for k, v in sorted(broken.items())[:6])
                  if broken else ""))
    last = result["steps"][-1]
    for p, by_step in result["slopes"].items():
        worst = max(by_step[last].items(), key=lambda kv: abs(kv[1]))
        yield (f"{p}: after {last} steps the steepest curve is {worst[0]} "
               f"(slope {worst[1]:+.2f} in log RMS per log width)")

if __name__ == "__main__":
    cli.run(main)
