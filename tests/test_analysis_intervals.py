"""Honest uncertainty in every mode: no bootstrap, flat objectives, exponents, rounding,
held-out prediction intervals, and the cost model's range."""

import numpy as np
import pytest

from analysis import allocation, uncertainty
from analysis.compute import cost_model
from analysis.fit import _outside_range_warnings, extrapolation_check, fit_law
from analysis.laws import make_law
from analysis.report import fit_summary

from tests.test_analysis_fit import TRUE, chinchilla_loss, table


def test_without_bootstrap_an_unidentified_e_is_not_printed_as_a_value():
    """E = 1.69 under losses of 8-18 (1% noise): the best starts agree on E = 1.81, which
    --bootstrap 0 used to print as a value. A profile check (refit with no floor, E = 0)
    fits as well within the F test's 95% threshold, so E is not identified; the exponents'
    approximate (Gauss-Newton) intervals cover the truth."""
    rng = np.random.default_rng(1)
    N = np.repeat(np.logspace(5, 6.25, 5), 5)
    D = np.tile(np.logspace(6, 7.25, 5), 5)
    loss = chinchilla_loss(N, D) * np.exp(0.01 * rng.standard_normal(len(N)))
    assert 8 < loss.min() and loss.max() < 19
    starts = make_law("chinchilla").grid[::10]  # 450 of the 4500 starts: the same optimum here
    fit = fit_law(table(params=N, tokens=D, loss=loss), bootstrap=0, starts=starts)
    assert 1 < fit["params"]["E"] < 3 and not any("disagree on E" in w for w in fit["warnings"])
    assert fit["identified"]["E"] is False and fit["ci95"]["E"][0] == 0.0
    assert any("E = 0 fits the runs as well" in w for w in fit["warnings"])
    summary = fit_summary(fit)
    assert "E: not identified by these runs" in summary
    assert not any(line.strip().startswith("E = ") for line in summary.splitlines())
    assert "approximate (no bootstrap)" in summary
    for k in ("alpha", "beta"):
        lo, hi = fit["ci95"][k]
        assert lo <= TRUE[k] <= hi


def test_exponents_need_an_absolute_width():
    # 0.39 (95% CI 0.138 .. 0.931) passed the relative rules; a 95% width of 0.79 says nothing.
    assert not uncertainty.is_identified(0.39, 0.19, [0.138, 0.931], exponent=True)
    assert uncertainty.is_identified(0.39, 0.19, [0.138, 0.931], exponent=False)
    assert uncertainty.is_identified(0.39, 0.05, [0.30, 0.48], exponent=True)
    got = uncertainty.classify(dict(a=0.39, E=1.2), dict(a=0.19, E=0.1),
                               dict(a=[0.138, 0.931], E=[1.0, 1.4]))
    assert got == dict(a=False, E=True)


def test_numbers_round_to_their_error_and_reference_computes_are_round():
    assert uncertainty.pm(99511, 48353) == "(1.00 ± 0.48)e+5"
    assert uncertainty.pm(1.69000000000164330, 4.5e-16) == "1.69 ± 4.5e-16"
    assert uncertainty.pm(12345, 230) == "(1.234 ± 0.023)e+4"
    assert uncertainty.pm(0.34123, 0.0123) == "0.341 ± 0.012"
    assert allocation.reference_computes([3e11, 1.2e13]) == [1e13, 1e14, 1e15]
    assert allocation.reference_computes([7e18]) == [1e19, 1e20, 1e21]


def test_holdout_runs_get_prediction_intervals_and_an_inside_flag():
    rng = np.random.default_rng(1)
    N = np.logspace(6, 9, 40)
    loss = (1.8 + 900 / N ** 0.3) * np.exp(0.01 * rng.standard_normal(40))
    law = make_law("power", "params")
    ex = extrapolation_check(table(params=N, tokens=np.full(40, 1e10), loss=loss), law, 3e8,
                             by="params", bootstrap=40)
    assert ex["n_heldout"] == 7 and ex["prediction_interval"]["n"] == 40
    for r in ex["heldout"]:
        lo, hi = r["pi95"]
        assert lo < r["predicted"] < hi and r["inside"] == (lo <= r["loss"] <= hi)
        assert 0.01 < np.log(hi / lo) < 0.1  # law uncertainty plus ~1% run scatter, both sides
    assert ex["n_inside"] >= 6
    # A run 10% above the law would fall outside its interval.
    assert all(r["pi95"][1] < 1.1 * r["loss"] for r in ex["heldout"])


def test_cost_model_reads_flops_per_token_and_warns_outside_the_table_range():
    N = np.logspace(6, 7, 4)
    fpt = 6 * N + 2e6  # analytic FLOPs per token: 6N plus attention and vocabulary terms
    t = table(params=N, tokens=np.full(4, 1e9), flops=fpt * 1e9 * 1.03,  # flops a bit off
              flops_per_token=fpt, loss=np.full(4, 3.0))
    cost = cost_model(t)
    p, logk = np.polyfit(np.log(N), np.log(fpt), 1)
    assert cost.source == "flops_per_token"
    assert (cost.k, cost.p) == pytest.approx((np.exp(logk), p), rel=1e-9)
    inside = {"1e+15": dict(flops=1e15, N_opt=5e6)}
    outside = {"1e+17": dict(flops=1e17, N_opt=4e7)}
    assert _outside_range_warnings(inside, N, cost) == []
    (w,) = _outside_range_warnings({**inside, **outside}, N, cost)
    assert "N_opt leaves the table's N range" in w and "C=1e+17" in w and "1e+15" not in w
