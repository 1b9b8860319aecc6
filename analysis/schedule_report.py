"""The schedule law end to end: fit, fit.json, its figure, the text summary and the report."""

from __future__ import annotations

import os

import numpy as np

from . import report
from .errors import AnalysisError
from .schedule_fit import fit_schedule_law
from .schedule_law import predict
from .uncertainty import describe


def run_schedule_fit(results, out_dir, *, svg=False, **kwargs):
    """Writes out_dir/fit.json, schedule_curves.png (and .svg), report.md, report.html.
    Returns (fit, summary)."""
    fit = fit_schedule_law(results, **kwargs)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise AnalysisError(f"cannot create output directory {out_dir}: {e.strerror}") from None
    pngs = []
    try:
        pngs = curves_figure(fit, out_dir, svg)
    except Exception as e:  # noqa: BLE001 - a figure never costs the fit
        fit["warnings"].append(f"schedule_curves figure skipped: {e}")
    report.write_json(fit, os.path.join(out_dir, "fit.json"))
    page = os.path.join(out_dir, "report.html")
    summary = summary_text(fit, page)
    extra = [("Extrapolation check", extrapolation_text(fit["extrapolation"]))] \
        if "extrapolation" in fit else []
    report.write_report(out_dir, "Scaling-law fit: schedule", summary,
                        report.fit_table_rows(fit), pngs, extra)
    return fit, summary


def _rule(ex):
    if "schedule" in ex:
        return f"schedule != {ex['schedule']}"
    return f"N <= {ex['threshold_params']:.3g}"


def summary_text(fit: dict, report_path: str | None = None) -> str:
    lines = [f"schedule fit on {fit['n_points']} curve points of {fit['n_runs']} runs: "
             f"{report.headline(fit)}",
             f"  areas: S1 = LR area, S2 = annealing area (momentum {fit['areas']['momentum']}); "
             f"points from step {fit['areas']['min_step']} on, warmup excluded",
             f"  compute convention: {fit['compute']['formula']}",
             f"  allocation: final losses of {fit['allocation_schedule']['kind']} runs "
             f"(peak LR {fit['allocation_schedule']['peak']:g}, "
             f"{fit['allocation_schedule']['tokens_per_step']} tokens per step)"]
    for n, v, se, ci, ok in report.fit_table_rows(fit):
        lines.append(f"  {describe(n, v, se, ci, ok)}")
    lines.append(f"  final losses of the fitted runs: mean |rel err| "
                 f"{fit['final_loss_fit']['mean_abs_rel_error']:.3%}, max "
                 f"{fit['final_loss_fit']['max_abs_rel_error']:.3%} (curve-to-final factor "
                 f"{fit['curve_to_final']:.4f})")
    lines.append(f"  starts: {fit['n_starts']} ({fit['n_starts_abandoned']} abandoned), at best "
                 f"objective: {fit['n_starts_at_best']}, objective {fit['objective']:.6g}")
    if fit.get("bootstrap"):
        b = fit["bootstrap"]
        lines.append(f"  bootstrap: {b['n']} resamples of {b['n_units']} {b['unit']}, seed {b['seed']}")
    if "extrapolation" in fit:
        e = fit["extrapolation"]
        lines.append(f"  extrapolation: fit on {e['n_fit']} runs with {_rule(e)}, "
                     f"{e['n_heldout']} held out: mean |rel err| {e['mean_abs_rel_error']:.3%}, "
                     f"max {e['max_abs_rel_error']:.3%}; {e['n_inside']}/{e['n_heldout']} inside "
                     f"their 95% prediction intervals")
    return "\n".join(lines + report.closing_lines(fit, report_path))


def extrapolation_text(ex: dict) -> str:
    lines = [f"fit on {ex['n_fit']} runs with {_rule(ex)}; predicted the final losses of "
             f"{ex['n_heldout']} held-out runs ({ex['interval_note']})"]
    for r in ex["heldout"]:
        lo, hi = r["interval"]
        lines.append(f"{r['run']}: loss={r['loss']:.4f} predicted={r['predicted']:.4f} "
                     f"[{lo:.4f}, {hi:.4f}] rel.err={r['rel_error']:+.3%} "
                     f"{'inside' if r['inside'] else 'OUTSIDE'}")
    return "\n".join(lines)


COLOURS = {"constant": "tab:blue", "cosine": "tab:orange", "wsd": "tab:green"}


def _draw_run(ax, fit, r, held):
    """Run r's measured points, the law along its schedule and, when `held` (its row of the
    extrapolation check), the prediction interval of its final loss."""
    pts, ex = fit["_points"], fit.get("extrapolation")
    a = pts.all
    n = pts.N[r]
    sch = pts.schedules[r]
    colour = COLOURS.get(sch.kind, "k")
    rows = np.array([x == r for x in a["runs"]])
    ax.plot(a["steps"][rows], a["curve"][rows], "o", ms=3, color=colour, alpha=0.8,
            mfc="none" if held else colour)
    s1, s2 = sch.areas(pts.momentum)
    lo = max(fit["areas"]["min_step"], sch.warmup + 1, int(a["steps"][rows].min()))
    steps = np.arange(lo, sch.total_steps + 1)
    use = ex["params"] if ex else fit["params"]  # with a holdout: the fit without it
    ax.plot(steps, predict(use, n, s1[steps], s2[steps]), "--" if held else "-",
            color=colour, lw=1.2,
            label=f"{sch.kind} {sch.total_steps}" + (" (held out)" if held else ""))
    if r in pts.final_loss:
        ax.plot([sch.total_steps], [pts.final_loss[r]], "s", color=colour, ms=5,
                mfc="none" if held else colour)
    if held:
        ax.errorbar([sch.total_steps * 1.01], [held["predicted"]],
                    yerr=[[held["predicted"] - held["interval"][0]],
                          [held["interval"][1] - held["predicted"]]],
                    fmt="x", color="k", ms=5, capsize=3)


def curves_figure(fit: dict, out_dir: str, svg: bool = False) -> list:
    """Measured curve points (dots; the final evaluation as a square) and the fitted law along
    each run's schedule (lines), one panel per model size; held-out runs drawn dashed with the
    fit that did not see them, their final-loss prediction interval as an error bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = fit["_points"]
    ex = fit.get("extrapolation")
    held = {r["run"]: r for r in ex["heldout"]} if ex else {}
    sizes = sorted({pts.N[r] for r in pts.schedules})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.8), squeeze=False,
                             sharey=True)
    a = pts.all
    scale = fit["curve_to_final"]
    for ax, n in zip(axes[0], sizes):
        for r in sorted(x for x in pts.schedules if pts.N[x] == n):
            _draw_run(ax, fit, r, held.get(r))
        ax.set_title(f"N = {n:,.0f}")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    # One y range for the shared axis, over every fitted point (setting it per panel would
    # leave every panel with the last one's range).
    shown = a["curve"][a["keep"]]
    if shown.size:
        axes[0][0].set_ylim(shown.min() * 0.97, shown.max() * 1.03)
    axes[0][0].set_ylabel("validation loss")
    note = f"final = law × {scale:.4f}"
    what = ("fitted without the held-out runs (dashed; x: predicted final loss, 95% interval)"
            if ex else "fitted to every run")
    fig.suptitle(f"schedule law (lines) over measured curves (dots: curve windows, squares: final "
                 f"evaluation)\n{what}; {note}", fontsize=9)
    fig.tight_layout()
    out = []
    for ext in ("png", "svg") if svg else ("png",):
        path = os.path.join(out_dir, f"schedule_curves.{ext}")
        fig.savefig(path, dpi=110)
        if ext == "png":
            out.append(path)
    plt.close(fig)
    return out
