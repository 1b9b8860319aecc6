"""Figures for a fit and an iso-FLOP analysis, each saved as PNG (and SVG when asked: writing
SVG too costs about half as much again).

Drawn on bare `Figure`s (no pyplot: no global figure state, and its import is
not paid), with tick labels in plain text: matplotlib's default log-axis labels
are mathtext, whose parser was a large part of the time to write a report.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

import matplotlib
import matplotlib.colors
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

from . import allocation

# SVG text as <text> elements rather than one path per glyph: much cheaper to write.
STYLE = {"svg.fonttype": "none"}
_FORMATS = contextvars.ContextVar("plot_formats", default=("png",))
_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3"
                             "\u2074\u2075\u2076\u2077\u2078\u2079")


def _figure(*shape, **kw):
    """A figure and its axes, like pyplot.subplots but with no pyplot state."""
    fig = Figure(figsize=kw.pop("figsize"))
    return fig, fig.subplots(*shape, **kw)


def _power_label(v):
    """v as '10' with superscript digits (or 'm×10ⁿ' for a whole mantissa), else %.3g."""
    if not np.isfinite(v) or v <= 0:
        return f"{v:.3g}"
    e = int(np.floor(np.log10(v) + 1e-9))
    m = v / 10.0 ** e
    if abs(m - round(m)) > 1e-6 * m:
        return f"{v:.3g}"
    power = "10" + str(e).translate(_SUPERSCRIPT)
    return power if round(m) == 1 else f"{round(m)}\u00d7{power}"


class _PlainLogFormatter(matplotlib.ticker.LogFormatter):
    """matplotlib's choice of which log ticks to label, written without mathtext."""

    def __call__(self, x, pos=None):
        return _power_label(x) if super().__call__(x, pos) else ""


MINOR_MAX_DECADES = 3   # log axes spanning more than this get no minor ticks


def _tidy_log_axes(fig):
    """Every log axis of `fig` (colour bars too) labelled in plain text; formatters an axis
    was given on purpose (not matplotlib's log defaults) are left alone. Axes spanning
    many decades lose their minor ticks: unlabelled there, and each tick is costly to draw."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() != "log":
                continue
            lo, hi = sorted(axis.get_view_interval())
            if lo > 0 and np.log10(hi / lo) > MINOR_MAX_DECADES:
                axis.set_minor_locator(matplotlib.ticker.NullLocator())
            for get, put in ((axis.get_major_formatter, axis.set_major_formatter),
                             (axis.get_minor_formatter, axis.set_minor_formatter)):
                if isinstance(get(), matplotlib.ticker.LogFormatterSciNotation):
                    put(_PlainLogFormatter(10.0, labelOnlyBase=False))


@contextlib.contextmanager
def _formats(svg: bool):
    token = _FORMATS.set(("png", "svg") if svg else ("png",))
    try:
        yield
    finally:
        _FORMATS.reset(token)


def _save(fig, out_dir, name):
    """PNG (and SVG when asked), cropped to the drawn content (the bounding box is measured once: each
    `bbox_inches="tight"` save costs an extra pass over every artist)."""
    _tidy_log_axes(fig)
    paths = []
    with matplotlib.rc_context(STYLE):
        fig.draw_without_rendering()
        bbox = fig.get_tightbbox().padded(matplotlib.rcParams["savefig.pad_inches"])
        for ext in _FORMATS.get():
            p = os.path.join(out_dir, f"{name}.{ext}")
            fig.savefig(p, dpi=120, bbox_inches=bbox)
            paths.append(p)
    return paths[0]


def _log_norm(values):
    """A log colour scale over the values (widened a hair when they are all equal)."""
    return matplotlib.colors.LogNorm(values.min(), max(values.max(), values.min() * 1.001))


def _plain_log_ticks(ax):
    """Loss spans less than a decade: label the y minor ticks in plain numbers, not 2x10^0,
    and leave x minor ticks unlabelled so they do not overlap."""
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def fit_plots(fit: dict, out_dir: str, svg: bool = False) -> list:
    """Loss vs N (coloured by D) with fitted curves, loss vs compute with the frontier,
    N_opt(C)/D_opt(C) with bootstrap bands, the loss-vs-LR scan, and residuals. A plot that
    cannot be drawn (e.g. a parameter ran to a bound) is skipped with a warning in `fit`.
    Returns the PNG paths; `svg` also writes each as SVG."""
    with _formats(svg):
        return _fit_plots(fit, out_dir)


def _fit_plots(fit: dict, out_dir: str) -> list:
    pngs = []
    for name, draw in (("loss_vs_x", _plot_loss_vs_x), ("frontier", _plot_frontier),
                       ("predicted_vs_actual", _plot_predicted_vs_actual),
                       ("residuals", _plot_residuals)):
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                pngs += draw(fit, out_dir)
        except (ValueError, OverflowError, FloatingPointError, ZeroDivisionError) as e:
            fit.setdefault("warnings", []).append(f"plot {name} skipped: it cannot be drawn "
                                                  f"for this fit ({str(e).splitlines()[0]})")
    return pngs


LOSS_LABEL = "loss (nats/token)"
AXIS_LABELS = {"params": "parameters N", "tokens": "training tokens D",
               "flops": "compute C (FLOPs)"}
MAX_LEVELS = 8          # more distinct values than this are binned for colouring
BAND_SAMPLES = 200      # bootstrap resamples drawn into a curve's band


def _axis_label(fit, name):
    if name == "params" and fit.get("params_column", "params") != "params":
        return f"{fit['params_column'].replace('_', '-')} N"
    return AXIS_LABELS.get(name, name)


def _levels(values):
    """(level labels, level index per point) for discrete colours: the distinct values of a
    grid, or log-spaced bins when the values are scattered."""
    logv = np.log(values)
    distinct = np.unique(np.round(logv, 6))
    if len(distinct) <= MAX_LEVELS:
        idx = np.searchsorted(distinct, np.round(logv, 6))
        return [f"{np.exp(v):.3g}" for v in distinct], idx, np.exp(distinct)
    edges = np.linspace(logv.min(), logv.max() + 1e-9, 6)
    idx = np.clip(np.searchsorted(edges, logv, side="right") - 1, 0, 4)
    labels = [f"{np.exp(edges[i]):.2g}–{np.exp(edges[i + 1]):.2g}" for i in range(5)]
    used = np.unique(idx)
    remap = {u: k for k, u in enumerate(used)}
    centres = np.exp([(edges[u] + edges[u + 1]) / 2 for u in used])
    return [labels[u] for u in used], np.array([remap[i] for i in idx]), centres


def _colours(n):
    return matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(n, 2)))[:n]


def _heldout_mask(fit, n: int):
    """Which of the n rows were held out of the extrapolation check's fit (matched by run
    name); none when the rows do not match the runs."""
    runs = fit["_data"].get("runs") or []
    held = {r["run"] for r in (fit.get("extrapolation") or {}).get("heldout", [])}
    if len(runs) != n:
        return np.zeros(n, bool)
    return np.array([r in held for r in runs], bool)


def _points(ax, x, y, yerr, colour, held, label=None):
    """Error-bar points; held-out ones open (white face)."""
    yerr = None if yerr is None or not np.isfinite(yerr).any() else np.nan_to_num(yerr)
    for mask, face in ((~held, colour), (held, "white")):
        if mask.any():
            ax.errorbar(x[mask], y[mask], yerr=None if yerr is None else yerr[mask], fmt="o",
                        ms=4.5, color=colour, mfc=face, mec=colour, elinewidth=1, capsize=2,
                        label=label)
            label = None  # one legend entry per colour


def _band(fit, grid):
    """2.5–97.5% of the law's prediction over the bootstrap resamples, or None."""
    boot = fit["_data"].get("boot")
    if boot is None or len(boot) < 2:
        return None
    from .laws import _jitted
    import jax
    law = fit["_data"]["law"]
    step = max(1, len(boot) // BAND_SAMPLES)
    with jax.enable_x64(True):
        logp = np.asarray(_jitted(law.log_pred)(np.asarray(boot[::step]), np.asarray(grid)))
    return np.nanpercentile(np.exp(logp), [2.5, 97.5], axis=0)


def _legend_extras(ax, fit, held, band_drawn):
    """Legend entries for held-out runs and bands, then the legend."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles, labels = ax.get_legend_handles_labels()
    if held.any():
        handles.append(Line2D([], [], ls="", marker="o", mfc="white", mec="k", ms=5))
        labels.append("held out (predicted by the fit without them)")
    if band_drawn:
        handles.append(Patch(color="0.6", alpha=0.3))
        labels.append("95% bootstrap band")
    ax.legend(handles, labels, fontsize=7)


def _plot_loss_vs_x(fit, out_dir):
    d = fit["_data"]
    law, theta, logX, logL = d["law"], d["theta"], d["logX"], d["logL"]
    loss, err = np.exp(logL), d.get("stderr")
    held = _heldout_mask(fit, len(loss))
    fig, ax = _figure(figsize=(6.4, 4.4))
    x = np.exp(logX[:, 0])
    band_drawn = False
    if logX.shape[1] > 2:  # e.g. the data-constrained law: observed against predicted
        pred = law.predict(theta, logX)
        epochs = np.exp(logX[:, 1] - logX[:, 2])
        sc = ax.scatter(pred, loss, c=epochs, cmap="viridis", norm=_log_norm(epochs), s=14)
        fig.colorbar(sc, ax=ax, label="epochs (tokens / unique_tokens)")
        lim = [min(pred.min(), loss.min()), max(pred.max(), loss.max())]
        ax.plot(lim, lim, "k-", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel=f"predicted {LOSS_LABEL}",
               ylabel=f"actual {LOSS_LABEL}", title=f"{law.name} fit{_identified_note(fit)}")
        _plain_log_ticks(ax)
        return [_save(fig, out_dir, "loss_vs_x")]
    xs = np.linspace(logX[:, 0].min(), logX[:, 0].max(), 100)
    if logX.shape[1] == 2:
        names, idx, values = _levels(np.exp(logX[:, 1]))
        colours = _colours(len(names))
        unit = "tokens" if law.x[1] == "tokens" else law.x[1]
        for k, (name, colour) in enumerate(zip(names, colours)):
            m = idx == k
            _points(ax, x[m], loss[m], None if err is None else err[m], colour, held[m],
                    f"D = {name} {unit}")
            grid = np.stack([xs, np.full_like(xs, np.log(values[k]))], 1)
            ax.plot(np.exp(xs), law.predict(theta, grid), color=colour, lw=1.3)
            band = _band(fit, grid)
            if band is not None:
                ax.fill_between(np.exp(xs), band[0], band[1], color=colour, alpha=0.18, lw=0)
                band_drawn = True
    else:
        _points(ax, x, loss, err, "C0", held, "runs")
        ax.plot(np.exp(xs), law.predict(theta, xs[:, None]), color="C1", lw=1.5, label="fit")
        band = _band(fit, xs[:, None])
        if band is not None:
            ax.fill_between(np.exp(xs), band[0], band[1], color="C1", alpha=0.25, lw=0)
            band_drawn = True
    ax.set(xscale="log", yscale="log", xlabel=_axis_label(fit, law.x[0]), ylabel=LOSS_LABEL,
           title=f"{law.name} fit{_identified_note(fit)}")
    _plain_log_ticks(ax)
    _legend_extras(ax, fit, held, band_drawn)
    return [_save(fig, out_dir, "loss_vs_x")]


def _shade_extrapolation(ax, data_max, right):
    if right > data_max:
        ax.axvspan(data_max, right, color="0.5", alpha=0.12, lw=0,
                   label="extrapolation (beyond the data)")


def _plot_frontier(fit, out_dir):
    d = fit["_data"]
    law, logX, logL = d["law"], d["logX"], d["logL"]
    loss, err = np.exp(logL), d.get("stderr")
    held = _heldout_mask(fit, len(loss))
    pngs = []
    if allocation.for_law(law):
        params = fit["params"]
        logC, cost = d["logC"], d["cost"]
        optimum = allocation.optimum_for(law.name)
        c_label = "compute C (FLOPs, 6ND)" if fit["compute"]["name"] == "6ND" else \
            "compute C (FLOPs, from the flops column)"
        fig, ax = _figure(figsize=(6.4, 4.4))
        C = np.exp(logC)
        names, idx, _ = _levels(np.exp(logX[:, 0]))
        for k, (name, colour) in enumerate(zip(names, _colours(len(names)))):
            m = idx == k
            _points(ax, C[m], loss[m], None if err is None else err[m], colour, held[m],
                    f"N = {name}")
        c_max = float(max(fit["reference_flops"]))
        cs = np.exp(np.linspace(logC.min(), np.log(c_max), 100))
        _, _, frontier = optimum(params, cs, cost)
        ax.plot(cs, frontier, "k-", lw=1.5, label="compute-optimal frontier")
        samples = fit.get("_samples")
        if samples is not None:
            s = {k: np.asarray(samples[k])[:, None] for k in law.natural}
            band = np.nanpercentile(optimum(s, cs[None], cost)[2], [2.5, 97.5], axis=0)
            ax.fill_between(cs, band[0], band[1], color="k", alpha=0.15, lw=0)
        _shade_extrapolation(ax, float(C.max()), c_max)
        ax.set(xscale="log", yscale="log", xlabel=c_label, ylabel=LOSS_LABEL,
               title=f"compute-optimal frontier{_identified_note(fit)}")
        _plain_log_ticks(ax)
        _legend_extras(ax, fit, held, samples is not None)
        pngs.append(_save(fig, out_dir, "loss_vs_compute"))

        fig, axes = _figure(1, 2, figsize=(10.5, 4))
        n_opt, d_opt, _ = optimum(params, cs, cost)
        for ax, val, name, key, unit in ((axes[0], n_opt, "N_opt", 0, "parameters"),
                                         (axes[1], d_opt, "D_opt", 1, "training tokens")):
            ax.plot(cs, val, "C0-", label=name)
            if samples is not None:
                sn, sd, _ = optimum({k: np.asarray(samples[k])[:, None] for k in law.natural},
                                    cs[None], cost)
                band = np.nanpercentile(sn if key == 0 else sd, [2.5, 97.5], axis=0)
                ax.fill_between(cs, band[0], band[1], alpha=0.3, label="95% bootstrap band")
            _shade_extrapolation(ax, float(C.max()), c_max)
            ax.set(xscale="log", yscale="log", xlabel=c_label, ylabel=f"{name} ({unit})")
            ax.legend(fontsize=7)
        pngs.append(_save(fig, out_dir, "compute_optimal"))
    if fit.get("lr_scan"):
        pngs.append(lr_plot(fit["lr_scan"], out_dir, "D"))

    return pngs


def _plot_predicted_vs_actual(fit, out_dir):
    """Each run's loss against the law's prediction; held-out runs against the prediction of
    the fit made without them."""
    d = fit["_data"]
    law, theta, logX, logL = d["law"], d["theta"], d["logX"], d["logL"]
    loss, err = np.exp(logL), d.get("stderr")
    held = _heldout_mask(fit, len(loss))
    pred = np.asarray(law.predict(theta, logX))
    by_run = {r["run"]: r["predicted"] for r in (fit.get("extrapolation") or {}).get("heldout", [])}
    for i, run in enumerate(d.get("runs") or []):
        if held[i] and run in by_run:
            pred[i] = by_run[run]
    fig, ax = _figure(figsize=(5.2, 4.8))
    colour_by = logX[:, 1] if logX.shape[1] >= 2 else logX[:, 0]
    names, idx, _ = _levels(np.exp(colour_by))
    what = "D" if logX.shape[1] >= 2 else _axis_label(fit, law.x[0])
    unit = " tokens" if logX.shape[1] >= 2 else ""
    for k, (name, colour) in enumerate(zip(names, _colours(len(names)))):
        m = idx == k
        _points(ax, pred[m], loss[m], None if err is None else err[m], colour, held[m],
                f"{what} = {name}{unit}")
    lo, hi = min(pred.min(), loss.min()), max(pred.max(), loss.max())
    pad = (hi / lo) ** 0.05
    ax.plot([lo / pad, hi * pad], [lo / pad, hi * pad], "k-", lw=0.8, label="predicted = actual")
    ax.set(xlabel=f"predicted {LOSS_LABEL}", ylabel=f"actual {LOSS_LABEL}",
           title=f"{law.name} fit: predicted against actual")
    ax.set_aspect("equal", adjustable="datalim")
    _legend_extras(ax, fit, held, False)
    return [_save(fig, out_dir, "predicted_vs_actual")]


def _plot_residuals(fit, out_dir):
    d = fit["_data"]
    law, logX = d["law"], d["logX"]
    resid = np.array(fit["residuals"]["log_loss"], float)
    held = _heldout_mask(fit, len(resid))
    by_run = {r["run"]: r for r in (fit.get("extrapolation") or {}).get("heldout", [])}
    for i, run in enumerate(d.get("runs") or []):
        if held[i] and run in by_run:  # a held-out run's residual is that of the fit without it
            resid[i] = np.log(by_run[run]["predicted"]) - np.log(by_run[run]["loss"])
    fig, ax = _figure(figsize=(6.4, 3.6))
    x = np.exp(logX[:, 0])
    if logX.shape[1] >= 2:
        names, idx, _ = _levels(np.exp(logX[:, 1]))
        for k, (name, colour) in enumerate(zip(names, _colours(len(names)))):
            m = idx == k
            _points(ax, x[m], resid[m], None, colour, held[m], f"D = {name} tokens")
    else:
        _points(ax, x, resid, None, "C0", held, "runs")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel=_axis_label(fit, law.x[0]),
           ylabel="residual, log L_pred − log L", title="residuals (colour: D)"
           if logX.shape[1] >= 2 else "residuals")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    _legend_extras(ax, fit, held, False)
    return [_save(fig, out_dir, "residuals")]


def _identified_note(fit):
    missing = [k for k, ok in fit.get("identified", {}).items() if not ok and k in fit["params"]]
    return f"\n(not identified: {', '.join(missing)})" if missing else ""


def lr_plot(scan: dict, out_dir: str, group_name: str) -> str:
    """Loss against learning rate, one panel per size, one line per D (or budget); the best
    point of each line is ringed, and a size whose best LR is at its grid's edge says so."""
    sizes = scan["sizes"]
    cols = min(4, len(sizes))
    rows = -(-len(sizes) // cols)
    fig, axes = _figure(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, size in zip(axes.flat, sizes):
        for i, c in enumerate(size["curves"]):
            ax.plot(c["lr"], c["loss"], "o-", ms=3, color=f"C{i % 10}",
                    label=f"{group_name}={c['group']:.3g}")
            ax.plot(c["best_lr"], min(c["loss"]), "o", mfc="none", ms=9, color="k" if not
                    c["at_edge"] else "r")
        title = f"N={size['N']:.3g}"
        if size["best_at_edge"]:
            title += "\nbest LR at grid edge: widen the grid"
        ax.set_title(title, fontsize=9, color="r" if size["best_at_edge"] else "k")
        ax.set(xscale="log", xlabel=scan["column"], ylabel="loss")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(sizes):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, out_dir, "loss_vs_lr")


def isoflop_plots(result: dict, out_dir: str, svg: bool = False) -> list:
    """Iso-FLOP parabolas with their minima, and N_opt/D_opt against budget (PNG paths;
    `svg` also writes each as SVG)."""
    with _formats(svg):
        return _isoflop_plots(result, out_dir)


def _isoflop_plots(result: dict, out_dir: str) -> list:
    cur = result["_curves"]
    fig, ax = _figure(figsize=(6, 4.2))
    labels = np.unique(cur["labels"])
    colours = matplotlib.colormaps["viridis"](np.linspace(0, 1, max(len(labels), 2)))
    for col, lab in zip(colours, labels):
        m = cur["labels"] == lab
        ax.scatter(np.exp(cur["logN"][m]), cur["loss"][m], color=col, s=14)
    for o in cur["opt"]:
        c2, c1, c0, mid, c3 = o["parabola_N"]  # at the planned budget (FLOP jitter removed)
        col = colours[list(labels).index(o["label"])]
        m = cur["labels"] == o["label"]
        xs = np.linspace(cur["logN"][m].min(), cur["logN"][m].max(), 60) - mid
        ax.plot(np.exp(xs + mid), c3 * xs ** 3 + c2 * xs ** 2 + c1 * xs + c0, color=col, lw=1.2)
        ax.plot(np.exp(o["log_N_opt"]), o["loss_opt"], "x", color="k" if o["inside"] else "r", ms=8)
    ax.set(xscale="log", xlabel="params N", ylabel="loss", title="iso-FLOP profiles")
    pngs = [_save(fig, out_dir, "isoflop_parabolas")]

    fig, axes = _figure(1, 2, figsize=(10, 4))
    b = [x for x in result["budgets"] if x["used"]]
    cs = np.array([x["budget"] for x in b])
    grid = np.exp(np.linspace(np.log(cs.min()), np.log(cs.max()), 50))
    from .isoflop import line_band
    band = line_band(result, grid)
    t = (result.get("interval") or {}).get("t", 1.96)
    for ax, key, exp_key in ((axes[0], "N_opt", "a"), (axes[1], "D_opt", "b")):
        to_key = (lambda n, c: n) if key == "N_opt" else \
            (lambda n, c: c / (result["compute"].get("k", 6.0) * n ** result["compute"].get("p", 1.0)))
        y = np.array([x[key] for x in b])
        se = np.array([x.get("log_N_opt_stderr") or 0.0 for x in b])
        if key == "D_opt":  # log D_opt = log C - log k - p log N_opt: the same error, times p
            se = se * result["compute"].get("p", 1.0)
        ax.errorbar(cs, y, yerr=[y - y * np.exp(-t * se), y * np.exp(t * se) - y], fmt="o",
                    color="C0", capsize=3, label="budget optimum (95%)")
        n_line = result["N_coeff"] * grid ** result["a"]
        ax.plot(grid, to_key(n_line, grid), "C1-", label=f"{key} ∝ C^{result[exp_key]:.3f}")
        if band is not None:
            lo, _, hi = band
            a, c = to_key(lo, grid), to_key(hi, grid)
            ax.fill_between(grid, np.minimum(a, c), np.maximum(a, c), color="C1", alpha=0.25,
                            label="95% band of the line")
        ax.set(xscale="log", yscale="log", xlabel=cur.get("axis", "compute C (FLOPs)"), ylabel=key)
        ax.legend()
    pngs.append(_save(fig, out_dir, "isoflop_optima"))
    if result.get("lr_scan"):
        pngs.append(lr_plot(result["lr_scan"], out_dir, "log10 C"))
    return pngs
