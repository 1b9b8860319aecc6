"""Fitting known laws: recovery, bootstrap coverage, allocation, identifiability."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from analysis import allocation
from analysis.data import Results
from analysis.errors import AnalysisError
from analysis.fit import bootstrap_groups, bootstrap_starts, bootstrap_weights, \
    extrapolation_check, fit_law
from analysis.optimize import Result
from analysis.laws import make_law

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def chinchilla_loss(N, D, p=TRUE):
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


def table(**cols):
    n = len(next(iter(cols.values())))
    return Results({k: list(v) for k, v in cols.items()}, [f"row {i + 1}" for i in range(n)], "test")


def sample_nd(n, seed):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n))
    D = np.exp(rng.uniform(np.log(1e8), np.log(1e11), n))
    return N, D


@pytest.mark.slow
def test_noise_free_chinchilla_recovered_to_1e_4_and_extrapolates():
    N, D = sample_nd(100, 0)
    C = 6 * N * D
    fit = fit_law(table(params=N, tokens=D, loss=chinchilla_loss(N, D)), "chinchilla", bootstrap=0,
                  holdout_above_flops=float(np.quantile(C, 0.8)))
    for k, v in TRUE.items():
        assert abs(fit["params"][k] / v - 1) < 1e-4, (k, fit["params"][k])
    assert fit["n_starts"] == 4500
    assert 1 <= fit["n_starts_at_best"] <= 4500
    assert fit["warnings"] == []
    a, b, G = allocation.exponents(TRUE["alpha"], TRUE["beta"], TRUE["A"], TRUE["B"])
    assert fit["a"] == pytest.approx(a, rel=1e-4) and fit["G"] == pytest.approx(G, rel=1e-3)
    # Fit on the 80 smallest-compute runs, predict the 20 largest: a true law extrapolates.
    ex = fit["extrapolation"]
    assert ex["n_heldout"] == 20 and ex["n_fit"] == 80
    assert ex["max_abs_rel_error"] < 1e-4
    assert all(r["flops"] > ex["threshold_flops"] for r in ex["heldout"])


def test_extrapolation_without_the_largest_models():
    N, D = sample_nd(60, 4)
    runs = table(params=N, tokens=D, loss=chinchilla_loss(N, D), run=[f"r{i}" for i in range(60)])
    cut = float(np.quantile(N, 0.75))
    # Noise-free runs fit exactly, which would run every start of the grid: a tenth of it
    # finds the same optimum (the full grid is the test above).
    law = make_law("chinchilla")
    ex = extrapolation_check(runs, law, cut, by="params", starts=law.grid[::10])
    assert ex["threshold_params"] == cut and ex["n_fit"] == 45 and ex["n_heldout"] == 15
    held = {r["run"] for r in ex["heldout"]}
    assert held == {f"r{i}" for i in range(60) if N[i] > cut}
    assert ex["max_abs_rel_error"] < 1e-4
    with pytest.raises(AnalysisError, match="choose one"):
        fit_law(runs, "chinchilla", bootstrap=0, holdout_above_flops=1e20,
                holdout_above_params=cut)


def test_noisy_chinchilla_true_values_inside_bootstrap_intervals():
    N, D = sample_nd(100, 1)
    rng = np.random.default_rng(2)
    loss = chinchilla_loss(N, D) * np.exp(0.01 * rng.standard_normal(len(N)))
    fit = fit_law(table(params=N, tokens=D, loss=loss), "chinchilla", bootstrap=100, seed=3)
    a, b, G = allocation.exponents(TRUE["alpha"], TRUE["beta"], TRUE["A"], TRUE["B"])
    truth = dict(TRUE, a=a, b=b)
    for k, v in truth.items():
        lo, hi = fit["ci95"][k]
        assert lo <= v <= hi, (k, v, lo, hi)
        assert fit["stderr"][k] > 0
    # The intervals are informative, not trivially wide.
    assert fit["ci95"]["alpha"][1] - fit["ci95"]["alpha"][0] < 0.2
    assert fit["ci95"]["E"][1] - fit["ci95"]["E"][0] < 0.5
    assert fit["bootstrap"]["n"] == 100
    assert fit["n_starts_screened"] == len(make_law("chinchilla").grid)  # the screened fit
    # Derived quantities at reference computes carry intervals too.
    key = f"{fit['reference_flops'][0]:.3g}"
    assert f"tokens_per_param@{key}" in fit["ci95"]


def test_power_law_recovered():
    rng = np.random.default_rng(4)
    C = np.exp(rng.uniform(np.log(1e17), np.log(1e21), 40))
    loss = 1.8 + 2000.0 / C ** 0.15
    fit = fit_law(table(params=C / 1e10, tokens=np.full(40, 1e10), flops=C, loss=loss),
                  "power", "flops", bootstrap=0)
    assert fit["params"]["E"] == pytest.approx(1.8, rel=1e-4)
    assert fit["params"]["A"] == pytest.approx(2000.0, rel=1e-4)
    assert fit["params"]["alpha"] == pytest.approx(0.15, rel=1e-4)
    # The fit ran in float64 without switching the process to float64.
    import jax.numpy as jnp
    assert jnp.asarray(1.0).dtype == jnp.float32


@pytest.mark.slow
def test_kaplan_laws_recovered():
    N, D = sample_nd(60, 5)
    Nc, Dc, aN, aD = 8.8e13, 5.4e13, 0.076, 0.095
    loss = ((Nc / N) ** (aN / aD) + Dc / D) ** aD
    fit = fit_law(table(params=N, tokens=D, loss=loss), "kaplan", bootstrap=0)
    for k, v in dict(N_c=Nc, D_c=Dc, alpha_N=aN, alpha_D=aD).items():
        assert fit["params"][k] == pytest.approx(v, rel=1e-3), k
    pure = fit_law(table(params=N, tokens=D, loss=(Nc / N) ** aN), "kaplan", "params", bootstrap=0)
    assert pure["params"]["N_c"] == pytest.approx(Nc, rel=1e-4)
    assert pure["params"]["alpha_N"] == pytest.approx(aN, rel=1e-4)


def test_compute_optimal_formulas_match_brute_force():
    for C in (1e19, 1e21, 5.76e23):
        n_opt, d_opt, loss_opt = allocation.optimum(TRUE, C)
        # Minimise L(N, C / 6N) over log N numerically.
        res = minimize_scalar(lambda x: chinchilla_loss(np.exp(x), C / (6 * np.exp(x))),
                              bounds=(np.log(1e5), np.log(1e14)), method="bounded",
                              options=dict(xatol=1e-10))
        assert n_opt == pytest.approx(np.exp(res.x), rel=1e-4)
        assert d_opt == pytest.approx(C / (6 * np.exp(res.x)), rel=1e-4)
        assert loss_opt == pytest.approx(res.fun, rel=1e-10)
        assert 6 * n_opt * d_opt == pytest.approx(C, rel=1e-12)


def test_non_identifiable_data_warns():
    N, _ = sample_nd(100, 6)
    D = np.full_like(N, 2e9)  # one data size: B, beta (and E) cannot be separated
    fit = fit_law(table(params=N, tokens=D, loss=chinchilla_loss(N, D)), "chinchilla", bootstrap=0)
    assert fit["n_starts_at_best"] > 1
    assert fit["n_starts_screened"] is None  # not pinned down: every start of the grid ran
    text = " ".join(fit["warnings"])
    assert "non-identifiable" in text and ("beta" in text or " B " in text)


def test_bootstrap_starts_skip_optima_that_are_the_same_fit():
    law = make_law("chinchilla")
    N, D = sample_nd(50, 0)
    logX = np.log(np.stack([N, D], 1))
    # N's term run to zero (exp(a - alpha log N) below 1e-5 of the loss) at four (a, alpha):
    # the same predictions, so one fit; the last row is a different fit.
    x = np.array([[-5.0, 6.2, 0.5, 2.0, 0.29], [0.0, 6.2, 0.5, 2.0, 0.29],
                  [20.0, 6.2, 0.5, 2.0, 0.29], [0.0, 6.2, 0.5, 1.5, 0.29],
                  [6.0, 6.0, 0.4, 0.34, 0.28]])
    n = len(x)
    res = Result(x, np.arange(n, dtype=float), np.ones(n, int), np.ones(n, bool), n,
                 np.zeros(n, bool))
    by_coordinates = bootstrap_starts(law, res, 0)
    by_fit = bootstrap_starts(law, res, 0, logX=logX)
    assert len(by_coordinates) == n  # every optimum differs in its parameters
    np.testing.assert_array_equal(by_fit, x[[0, 4]])  # but only two differ in what they predict


def test_bootstrap_resamples_runs_when_runs_have_several_rows():
    t = table(run=["x", "x", "y", "y", "z"], params=[1] * 5, tokens=[1] * 5, loss=[1] * 5)
    groups, unit = bootstrap_groups(t)
    assert unit == "runs" and list(groups) == [0, 0, 1, 1, 2]
    w = bootstrap_weights(groups, 50, seed=0)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 2] == w[:, 3])
    assert np.all(w.sum(1) == [2 * c0 + 2 * c1 + c2 for c0, c1, c2 in w[:, [0, 2, 4]]])
    assert np.array_equal(w, bootstrap_weights(groups, 50, seed=0))
