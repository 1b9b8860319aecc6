"""Issue 9 item 5: the data-constrained law (Muennighoff et al. 2023)."""

import numpy as np
import pytest

from analysis import fit_law
from analysis.data import Results
from analysis.pipeline import run_fit

BASE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
R_D, R_N = 15.4, 5.3  # the paper's fitted values


def constrained_loss(N, D, U, p=BASE, rd=R_D, rn=R_N):
    """Written from the paper's equations, independently of analysis/constrained.py."""
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    UN = np.minimum(G * (G * U) ** (p["beta"] / p["alpha"]), N)
    RD = D / U - 1
    RN = N / UN - 1
    Dp = U + U * rd * (1 - np.exp(-RD / rd))
    Np = UN + UN * rn * (1 - np.exp(-RN / rn))
    return p["E"] + p["A"] / Np ** p["alpha"] + p["B"] / Dp ** p["beta"]


def table(**cols):
    n = len(next(iter(cols.values())))
    return Results({k: list(v) for k, v in cols.items()}, [f"row {i + 1}" for i in range(n)], "test")


def repeated_design():
    rows = []
    for N in np.logspace(7, 9.5, 5):
        for U in np.logspace(8, 9.5, 3):
            for epochs in (1, 2, 4, 8, 16, 40, 100):
                rows.append((N, U * epochs, U))
    return np.array(rows).T


def test_recovers_r_d_star_and_r_n_star_within_10_percent(tmp_path):
    N, D, U = repeated_design()
    t = table(params=N, tokens=D, unique_tokens=U, loss=constrained_loss(N, D, U))
    fit, summary = run_fit(t, tmp_path, "data-constrained", bootstrap=0)
    assert fit["params"]["R_D_star"] == pytest.approx(R_D, rel=0.1)
    assert fit["params"]["R_N_star"] == pytest.approx(R_N, rel=0.1)
    assert fit["params"]["alpha"] == pytest.approx(BASE["alpha"], rel=0.1)
    assert not any("flat" in w for w in fit["warnings"])
    assert "R_D_star" in summary and (tmp_path / "loss_vs_x.png").exists()
    # With the base law given, only R_D* and R_N* are fitted.
    given = fit_law(t, "data-constrained", bootstrap=0, base_law=BASE)
    assert list(given["params"]) == ["R_D_star", "R_N_star"]
    assert given["params"]["R_D_star"] == pytest.approx(R_D, rel=0.02)
    assert given["params"]["R_N_star"] == pytest.approx(R_N, rel=0.02)


def test_warns_when_the_objective_is_flat_in_r_star():
    # One epoch everywhere and models no larger than U_N: neither R* enters the loss.
    N = np.repeat(np.logspace(6, 6.8, 4), 4)
    U = np.tile(np.logspace(9, 10, 4), 4)
    t = table(params=N, tokens=U, unique_tokens=U, loss=constrained_loss(N, U, U))
    fit = fit_law(t, "data-constrained", bootstrap=0, base_law=BASE)
    text = " ".join(fit["warnings"])
    assert "flat in R_D_star" in text and "flat in R_N_star" in text


def test_missing_unique_tokens_is_a_clear_error():
    from analysis.errors import AnalysisError
    N, D, U = repeated_design()
    with pytest.raises(AnalysisError, match="missing column 'unique_tokens'"):
        fit_law(table(params=N, tokens=D, loss=constrained_loss(N, D, U)), "data-constrained",
                bootstrap=0, base_law=BASE)
