"""Loss against learning rate per width, for each parametrization, from an LR-transfer sweep.

  python -m experiments.lr_transfer sweeps/lr_transfer --out reports/lr_transfer

Reads SWEEP_DIR/results.csv (or a CSV path) with columns parametrization, d_model, learning_rate
and loss; writes DIR/lr_transfer.png (a panel per parametrization, a curve per width) and
DIR/lr_transfer.json, and prints the verdict. The LR *transfers* when, at every width, the best
LR of the narrowest width is the best grid point too, or adjacent to it and either within 0.5% of
the best loss or within one standard error of it (seeds: the difference of the two means is at
most the standard error of that difference). With several seeds per cell every mean comes with
its standard error (printed, and in the JSON). Runs that diverged have no row and so no point.
"""

from __future__ import annotations

import csv
import math
import os

from common import files
from experiments import cli

PROG = "python -m experiments.lr_transfer"


def build_parser() -> cli.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    p.add_argument("results", metavar="SWEEP_DIR", help="an LR-transfer sweep directory, or its results.csv")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for lr_transfer.png and lr_transfer.json")
    return p

TOLERANCE = 0.005  # relative loss penalty allowed for an adjacent grid point


def read_rows(path: str) -> list[dict]:
    if os.path.isdir(path):
        path = os.path.join(path, "results.csv")
    if not os.path.isfile(path):
        cli.fail(f"{path} not found; pass a sweep directory with results.csv or the CSV itself")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"parametrization", "d_model", "learning_rate", "loss"} - set(rows[0] if rows else {})
    if not rows or missing:
        cli.fail(f"{path} has no rows or lacks columns {sorted(missing)}; run the "
                 "configs/sweeps/lr_transfer.py sweep first")
    return rows


def curves(rows) -> dict:
    """{parametrization: {width: {lr: mean loss over seeds}}}."""
    acc: dict = {}
    for r in rows:
        if not r["loss"] or not math.isfinite(float(r["loss"])):
            continue
        key = (r["parametrization"] or "sp", int(r["d_model"]), float(r["learning_rate"]))
        acc.setdefault(key, []).append(float(r["loss"]))
    out: dict = {}
    for (p, w, lr), losses in sorted(acc.items()):
        out.setdefault(p, {}).setdefault(w, {})[lr] = sum(losses) / len(losses)
    return out


def stderrs(rows) -> dict:
    """{parametrization: {width: {lr: standard error of the mean over seeds}}} (NaN for one
    seed: no spread measured, so nothing counts as tied by it)."""
    acc: dict = {}
    for r in rows:
        if r["loss"] and math.isfinite(float(r["loss"])):
            key = (r["parametrization"] or "sp", int(r["d_model"]), float(r["learning_rate"]))
            acc.setdefault(key, []).append(float(r["loss"]))
    out: dict = {}
    for (p, w, lr), v in sorted(acc.items()):
        n, mean = len(v), sum(v) / len(v)
        se = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1) / n) if n > 1 else math.nan
        out.setdefault(p, {}).setdefault(w, {})[lr] = se
    return out


def verdict(by_width: dict, stderr: dict | None = None) -> dict:
    """Best LR per width and whether the narrowest width's best LR holds at every width.
    `stderr` ({width: {lr: standard error}}) lets an adjacent point within one standard error
    of the difference count as tied."""
    grid = sorted({lr for losses in by_width.values() for lr in losses})
    widths = sorted(by_width)
    best = {w: min(by_width[w], key=by_width[w].get) for w in widths}
    reference = best[widths[0]]
    per_width, transfers = {}, True
    for w in widths:
        losses = by_width[w]
        penalty = (losses[reference] / losses[best[w]] - 1.0) if reference in losses else math.inf
        steps_apart = abs(grid.index(best[w]) - grid.index(reference))
        se = (stderr or {}).get(w, {})
        noise = math.hypot(se.get(reference, 0.0), se.get(best[w], 0.0))
        tied = bool(reference in losses and noise > 0
                    and losses[reference] - losses[best[w]] <= noise)
        ok = steps_apart == 0 or (steps_apart == 1 and (penalty < TOLERANCE or tied))
        transfers &= ok
        per_width[w] = {"best_lr": best[w], "best_loss": losses[best[w]],
                        "grid_steps_from_reference": steps_apart,
                        "best_loss_stderr": se.get(best[w], 0.0),
                        "penalty_at_reference_lr": penalty, "tied_within_stderr": tied, "ok": ok}
    return {"reference_lr": reference, "transfers": transfers, "widths": per_width}


def plot(data: dict, path: str, errors: dict | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = sorted(data)
    fig, axes = plt.subplots(1, len(params), figsize=(5 * len(params), 4), sharey=True,
                             squeeze=False)
    for ax, p in zip(axes[0], params):
        widths = sorted(data[p])
        colours = plt.cm.viridis([i / max(len(widths) - 1, 1) for i in range(len(widths))])
        for w, colour in zip(widths, colours):
            lrs = sorted(data[p][w])
            losses = [data[p][w][lr] for lr in lrs]
            se = [(errors or {}).get(p, {}).get(w, {}).get(lr, math.nan) for lr in lrs]
            ax.errorbar(lrs, losses, yerr=[0.0 if math.isnan(e) else e for e in se], marker="o",
                        color=colour, capsize=3, label=f"d_model {w}")
            best = min(lrs, key=data[p][w].get)
            ax.plot([best], [data[p][w][best]], marker="*", ms=14, color=colour, mec="k")
        ax.set(xscale="log", xlabel="learning rate (peak)", title=p.upper())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("final validation loss (nats/token, ± 1 s.e.)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv) -> int:
    args, _ = cli.parse(build_parser(), argv, allow_overrides=False)
    rows = read_rows(args.results)
    data, errors = curves(rows), stderrs(rows)
    report = {p: verdict(by_width, errors[p]) for p, by_width in data.items()}
    os.makedirs(args.out, exist_ok=True)
    files.write_json(os.path.join(args.out, "lr_transfer.json"),
                     {"curves": _by_name(data), "stderr": _by_name(errors), "verdict": report},
                     indent=1)
    plot(data, os.path.join(args.out, "lr_transfer.png"), errors)
    for line in _summary(data, errors, report):
        print(line)
    print(f"wrote {args.out}/lr_transfer.png and lr_transfer.json")
    return 0


def _by_name(table: dict) -> dict:
    """{p: {width: {lr: value}}} with JSON keys: the width as a string, the LR as %g."""
    return {p: {str(w): {f"{lr:g}": v for lr, v in c.items()} for w, c in by_w.items()}
            for p, by_w in table.items()}


def _summary(data, errors, report):
    """Every cell's loss ± stderr, then per parametrisation whether the best LR transfers."""
    for p, by_width in data.items():
        for w, losses in by_width.items():
            cells = ", ".join(f"{lr:.3g}: {m:.3f} ± {errors[p][w][lr]:.3f}"
                              for lr, m in sorted(losses.items()))
            yield f"{p} d{w}: {cells}"
    for p, v in report.items():
        bests = ", ".join(f"d{w}: {x['best_lr']:.3g}" for w, x in v["widths"].items())
        yield (f"{p}: best LR per width {bests}; the narrowest width's {v['reference_lr']:.3g} "
               f"{'transfers' if v['transfers'] else 'does not transfer'}")

if __name__ == "__main__":
    cli.run(main)
