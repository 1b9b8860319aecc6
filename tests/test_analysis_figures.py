"""Figures and report fit for a paper: error bars from loss_stderr, one colour per budget with a
legend, bootstrap bands, units on the axes, the extrapolated region shaded, held-out runs
marked, a predicted-vs-actual plot, residuals coloured by D, and report tables of the input
runs and of the fitted parameters."""

import os

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer

from analysis import plots, report
from analysis.data import load_results
from analysis.fit import fit_law

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "docs", "figures", "example_runs.csv")
TRUTH_START = [[np.log(406.4), np.log(410.7), np.log(1.69), 0.34, 0.28]]  # a, b, e, alpha, beta


@pytest.fixture(scope="module")
def fit():
    """The shipped example grid, fitted from a start at the truth (fast), with one run marked
    as held out the way the extrapolation check reports it."""
    out = fit_law(load_results(EXAMPLE), "chinchilla", bootstrap=12, starts=TRUTH_START)
    last = out["_data"]["runs"][-1]
    out["extrapolation"] = dict(threshold_params=3e8, n_fit=15, n_heldout=1, params={},
                                heldout=[dict(run=last, flops=1.0, loss=2.5, predicted=2.51,
                                              rel_error=0.004)],
                                mean_abs_rel_error=0.004, max_abs_rel_error=0.004)
    return out


@pytest.fixture
def figures(monkeypatch, tmp_path):
    """Every figure a fit draws, by name, instead of writing it."""
    drawn = {}

    def keep(fig, out_dir, name):
        drawn[name] = fig
        return os.path.join(out_dir, f"{name}.png")
    monkeypatch.setattr(plots, "_save", keep)
    return drawn


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_loss_against_n(fit, figures, tmp_path):
    plots._fit_plots(fit, str(tmp_path))
    ax = figures["loss_vs_x"].axes[0]
    assert len(figures["loss_vs_x"].axes) == 1  # a legend, no colour bar
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert bars and all(c.has_yerr for c in bars)  # error bars from loss_stderr
    texts = legend_texts(ax)
    budgets = [t for t in texts if t.startswith("D = ")]
    assert budgets == ["D = 1e+09 tokens", "D = 3e+09 tokens", "D = 1e+10 tokens",
                       "D = 3e+10 tokens"]
    colours = {tuple(np.round(c.lines[0].get_color(), 3)) for c in bars}
    assert len(colours) == 4  # one discrete colour per budget
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) >= 4  # a band per curve
    assert any("held out" in t for t in texts) and any("bootstrap band" in t for t in texts)
    assert "nats/token" in ax.get_ylabel() and "parameters" in ax.get_xlabel()


def test_frontier_shades_the_extrapolation_and_allocation_has_bands(fit, figures, tmp_path):
    plots._fit_plots(fit, str(tmp_path))
    ax = figures["loss_vs_compute"].axes[0]
    assert any("extrapolation" in t for t in legend_texts(ax))
    assert "FLOPs" in ax.get_xlabel() and "nats/token" in ax.get_ylabel()
    for ax in figures["compute_optimal"].axes:
        texts = legend_texts(ax)
        assert "95% bootstrap band" in texts and any("extrapolation" in t for t in texts)
        assert "(" in ax.get_ylabel()  # a unit


def test_predicted_vs_actual_and_residuals_coloured_by_d(fit, figures, tmp_path):
    plots._fit_plots(fit, str(tmp_path))
    ax = figures["predicted_vs_actual"].axes[0]
    assert "predicted = actual" in legend_texts(ax) and "nats/token" in ax.get_xlabel()
    held = [c for c in ax.containers if isinstance(c, ErrorbarContainer)
            and str(c.lines[0].get_markerfacecolor()) == "white"]
    # The held-out run is drawn at the prediction of the fit made without it.
    assert len(held) == 1 and held[0].lines[0].get_xdata()[0] == pytest.approx(2.51)
    ax = figures["residuals"].axes[0]
    assert sum(t.startswith("D = ") for t in legend_texts(ax)) == 4


def test_report_tables_list_the_input_runs_and_the_parameters(fit, tmp_path):
    rows = report.input_runs(fit)
    assert len(rows) == 16 and sum(r[-1] == "fitted" for r in rows) == 15
    assert rows[-1][-1].startswith("held out: predicted 2.51")
    first = rows[0]
    assert first[1] == "2e+07" and first[2] == "1e+09"  # N and D, read back from the table
    md, page = report.write_report(str(tmp_path), "t", "summary", report.fit_table_rows(fit), [],
                                   runs=rows)
    text = open(md).read()
    assert "## Input runs" in text and "## Fitted parameters" in text
    assert text.count("| fitted |") == 15 and "| alpha |" in text
    html = open(page).read()
    assert "<h2>Input runs</h2>" in html and html.count("<td>fitted</td>") == 15
