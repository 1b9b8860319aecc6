"""Coordinate check: activation RMS against width under SP and µP, as a PNG and a JSON file.

  python -m experiments.coord_check --config configs/gpt.py:tiny --widths 64,128,256,512 --out DIR

Writes DIR/coord_check.json (RMS per parametrization, step, layer and width, and each curve's
slope of log RMS against log width) and DIR/coord_check.png (a panel per parametrization and
recorded step). Under µP every slope should be near 0; under SP some grow. The depth, heads,
context, batch and LR come from the config; only d_model varies. Research code:
research/coord_check.py.
"""

from experiments import cli  # noqa: F401  (sets quiet logging before jax loads)

import json
import os

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/gpt.py:tiny", "Model config.",
                                          lock_config=True)
_WIDTHS = flags.DEFINE_string("widths", "64,128,256,512", "Comma-separated d_model values.")
_OUT = flags.DEFINE_string("out", None, "Folder for coord_check.json and coord_check.png.",
                           required=True)
_STEPS = flags.DEFINE_integer("steps", 10, "Optimizer steps per width.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds averaged per width.")
_RECORD = flags.DEFINE_string("record-steps", "0,1,2,5",
                              "Also record after these steps (the last step always is).")


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


def main(argv):
    del argv
    from research import coord_check

    widths = _ints(_WIDTHS.value, "widths")
    if len(widths) < 2:
        cli.fail("--widths needs at least two widths to fit a slope; write e.g. 64,128,256,512")
    if _STEPS.value < 1 or _SEEDS.value < 1:
        cli.fail("--steps and --seeds must be >= 1")
    result = coord_check.measure(_CONFIG.value, widths, steps=_STEPS.value, seeds=_SEEDS.value,
                                 record_steps=_ints(_RECORD.value, "record-steps"))
    result["variant"] = _CONFIG.value.variant
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, "coord_check.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot(result, os.path.join(_OUT.value, "coord_check.png"))
    last = result["steps"][-1]
    for p, by_step in result["slopes"].items():
        worst = max(by_step[last].items(), key=lambda kv: abs(kv[1]))
        print(f"{p}: after {last} steps the steepest curve is {worst[0]} "
              f"(slope {worst[1]:+.2f} in log RMS per log width)")
    print(f"wrote {_OUT.value}/coord_check.json and coord_check.png")


if __name__ == "__main__":
    cli.run_main(main)
