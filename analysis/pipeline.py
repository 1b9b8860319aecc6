"""Fit or iso-FLOP analysis end to end: table -> JSON, plots, report (what the CLI runs)."""

from __future__ import annotations

import importlib
import os
import threading

from . import report
from .data import load_results, to_results, use_loss_column, use_tokens_column
from .envelope import envelope
from .errors import AnalysisError
from .fit import fit_law
from .isoflop import isoflop


def _import_plots_meanwhile() -> None:
    """matplotlib takes ~0.7 s to import; the fit spends most of its time in XLA, which
    releases the GIL, so the import runs beside it on the other core."""
    threading.Thread(target=importlib.import_module, args=(f"{__package__}.plots",),
                     daemon=True).start()


def _plots():
    from . import plots  # waits for a background import still under way (the import lock)
    return plots


def _table(results, duplicates="drop", loss_column="loss", tokens_column="tokens"):
    if isinstance(results, (str, os.PathLike)):
        return load_results(results, duplicates, loss_column, tokens_column)
    table = to_results(results, duplicates)  # a Results or a DataFrame
    return use_tokens_column(use_loss_column(table, loss_column), tokens_column)


def _out_dir(out_dir):
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise AnalysisError(f"cannot create output directory {out_dir}: {e.strerror}") from None


def run_fit(results, out_dir, law="chinchilla", x=None, *, bootstrap=1000, huber_delta=1e-3,
            holdout_above_flops=None, holdout_above_params=None, seed=0,
            params_column="params", reference_flops=None, compute="auto", select="best",
            select_by=None, base_law=None, duplicates="drop", loss_column="loss", abandon=True,
            svg=False, tokens_column="tokens", progress=None, plots="wait", starts=None):
    """Writes out_dir/fit.json, plots (PNG, and SVG with `svg`), report.md, report.html.
    `progress(message)`, when given, hears each stage as it starts; `starts` as in fit_law.
    Returns (fit, summary).

    plots="background" (a law given by name only): fit.json is written and the summary
    returned at once, and a second process draws the plots and writes the report (then
    fit.json again, with any plot warnings); `fit["_plots_process"]` is its process id."""
    if plots not in ("wait", "background"):
        raise AnalysisError(f"plots={plots!r}; use 'wait' or 'background'")
    background = plots == "background" and isinstance(law, str)
    table = _table(results, duplicates, loss_column, tokens_column)
    if not background:
        _import_plots_meanwhile()
    fit = fit_law(table, law, x, huber_delta=huber_delta, bootstrap=bootstrap, seed=seed,
                  holdout_above_flops=holdout_above_flops,
                  holdout_above_params=holdout_above_params, params_column=params_column,
                  reference_flops=reference_flops, compute=compute, select=select,
                  select_by=select_by, base_law=base_law, abandon=abandon, progress=progress,
                  starts=starts)
    if progress:
        progress("plots and report")
    if table.has("step") and table.has("run"):
        try:
            fit["approach1"] = envelope(table, params_column=params_column, compute=compute)
        except AnalysisError as e:
            fit["notes"].append(f"Approach 1 skipped: {e}")
    _out_dir(out_dir)
    report.write_json(fit, os.path.join(out_dir, "fit.json"))
    if background:
        from .background import draw_later
        fit["_plots_process"] = draw_later(fit, out_dir, svg, (law, x, base_law))
        return fit, report.fit_summary(fit, os.path.join(out_dir, "report.html"))
    return fit, plots_and_report(fit, out_dir, svg)


def plots_and_report(fit, out_dir, svg=False):
    """The fit's plots, fit.json again (with any plot warnings), report.md and report.html.
    Returns the summary."""
    pngs = _plots().fit_plots(fit, out_dir, svg)
    report.write_json(fit, os.path.join(out_dir, "fit.json"))  # with any plot warnings
    extra = []
    if "extrapolation" in fit:
        extra.append(("Extrapolation check", report.extrapolation_text(fit["extrapolation"])))
    if "approach1" in fit:
        a1 = fit["approach1"]
        extra.append(("Approach 1 (training-curve envelope)",
                      report.envelope_text(a1)))
    page = os.path.join(out_dir, "report.html")
    summary = report.fit_summary(fit, page)
    report.write_report(out_dir, f"Scaling-law fit: {fit['law']}", summary,
                        report.fit_table_rows(fit), pngs, extra, runs=report.input_runs(fit))
    return summary


def run_isoflop(results, out_dir, *, bootstrap=1000, seed=0, bin_width_dex=None,
                params_column="params", compute="auto", select="best", select_by=None,
                reference_flops=None, duplicates="drop", loss_column="loss", svg=False,
                tokens_column="tokens"):
    """Writes out_dir/isoflop.json, plots (PNG, and SVG with `svg`) and report.
    Returns (result, summary)."""
    table = _table(results, duplicates, loss_column, tokens_column)
    _import_plots_meanwhile()
    res = isoflop(table, bootstrap=bootstrap, seed=seed, bin_width_dex=bin_width_dex,
                  params_column=params_column, compute=compute, select=select,
                  select_by=select_by, reference_flops=reference_flops)
    _out_dir(out_dir)
    report.write_json(res, os.path.join(out_dir, "isoflop.json"))
    pngs = _plots().isoflop_plots(res, out_dir, svg)
    page = os.path.join(out_dir, "report.html")
    summary = report.isoflop_summary(res, page)
    rows = [(k, res[k], (res.get("stderr") or {}).get(k), (res.get("ci95") or {}).get(k))
            for k in ("a", "b")]
    report.write_report(out_dir, "Iso-FLOP analysis (Approach 2)", summary, rows, pngs)
    return res, summary
