"""Kaplan et al.'s law gets the compute-optimal allocation Chinchilla's does: the closed form
against a numerical minimum, and a fit that recovers a known Kaplan law reports a, N_opt."""

import numpy as np
import pytest

from analysis import allocation
from analysis.data import Results
from analysis.fit import fit_law

TRUE = dict(N_c=8.8e13, D_c=5.4e13, alpha_N=0.076, alpha_D=0.095)  # Kaplan et al. 2020


def law(N, D, p=TRUE):
    return ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"]


@pytest.mark.parametrize("cost", [(6.0, 1.0), (40.0, 0.88)])
def test_closed_form_optimum_is_the_numerical_minimum(cost):
    k, p = cost
    for C in (1e18, 1e21):
        N = np.exp(np.linspace(np.log(1e3), np.log(1e13), 400_001))
        D = C / (k * N ** p)
        best = N[np.argmin(law(N, D))]
        n_opt, d_opt, loss = allocation.kaplan_optimum(TRUE, C, cost)
        assert n_opt == pytest.approx(best, rel=1e-3)
        assert d_opt == pytest.approx(C / (k * n_opt ** p), rel=1e-12)
        assert loss == pytest.approx(law(n_opt, d_opt), rel=1e-12)
    a, b, _ = allocation.kaplan_exponents(TRUE["alpha_N"], TRUE["alpha_D"], 1.0, 1.0, p)
    assert a == pytest.approx(TRUE["alpha_D"] / (p * TRUE["alpha_D"] + TRUE["alpha_N"]))
    assert b == pytest.approx(1 - p * a)


def test_fit_of_a_known_kaplan_law_reports_its_allocation():
    N, D = np.meshgrid(np.geomspace(1e6, 1e9, 5), np.geomspace(1e8, 1e11, 5))
    N, D = N.ravel(), D.ravel()
    rng = np.random.default_rng(0)
    loss = law(N, D) * np.exp(rng.normal(0, 0.002, N.size))
    table = Results({"params": list(N), "tokens": list(D), "loss": list(loss)},
                    [f"row {i + 1}" for i in range(N.size)], "test")
    fit = fit_law(table, "kaplan", bootstrap=100, seed=0)
    want_a = TRUE["alpha_D"] / (TRUE["alpha_D"] + TRUE["alpha_N"])
    # 0.2% noise on 25 runs: a within 0.01 (its interval is ~0.005 wide; coverage of the
    # bootstrap intervals is checked by `python -m analysis simcheck`, not here).
    assert fit["a"] == pytest.approx(want_a, abs=0.01) and fit["identified"]["a"]
    lo, hi = fit["ci95"]["a"]
    assert lo <= fit["a"] <= hi
    n_true = allocation.kaplan_optimum(TRUE, 1e21)[0]
    n_fit = allocation.kaplan_optimum(fit["params"], 1e21)[0]
    assert n_fit == pytest.approx(n_true, rel=0.5)
