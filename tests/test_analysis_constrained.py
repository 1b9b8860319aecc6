"""The data-constrained law (Muennighoff et al. 2023), runs over and under one epoch."""

import numpy as np
import pytest

from analysis import fit_law
from analysis.data import Results
from analysis.pipeline import run_fit

BASE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
R_D, R_N = 15.4, 5.3  # the paper's fitted values


def constrained_loss(N, D, U, p=BASE, rd=R_D, rn=R_N):
    """Written from the paper's equations, independently of analysis/constrained.py.
    U_D is the unique data a run has seen: min(D, U)."""
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    UD = np.minimum(D, U)
    UN = np.minimum(G * (G * UD) ** (p["beta"] / p["alpha"]), N)
    RD = D / UD - 1
    RN = N / UN - 1
    Dp = UD + UD * rd * (1 - np.exp(-RD / rd))
    Np = UN + UN * rn * (1 - np.exp(-RN / rn))
    return p["E"] + p["A"] / Np ** p["alpha"] + p["B"] / Dp ** p["beta"]


def table(**cols):
    n = len(next(iter(cols.values())))
    return Results({k: list(v) for k, v in cols.items()}, [f"row {i + 1}" for i in range(n)], "test")


def repeated_design():
    rows = []
    for N in np.logspace(7, 9.5, 5):
        for U in np.logspace(8, 9.5, 3):
            for epochs in (0.1, 0.3, 1, 4, 16, 40, 100):
                rows.append((N, U * epochs, U))
    return np.array(rows).T


@pytest.mark.slow
def test_mixing_tenth_of_an_epoch_to_100_epochs_recovers_r_star(tmp_path):
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


def chinchilla(N, D, p=BASE):
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


def test_runs_under_one_epoch_see_only_the_tokens_they_trained_on():
    """D < U: nothing is repeated, D' = D. The loss falls with D (it used to be flat at
    D' = U), and a model no larger than N_opt(D) gets exactly the Chinchilla loss."""
    from analysis.constrained import make
    law = make(BASE)
    theta = np.log([[R_D, R_N]])[0]
    U = 1e10
    D = np.array([1e8, 1e9, 1e10, 4e10])
    for N in (1e6, 1e8):
        logX = np.log(np.stack([np.full(4, N), D, np.full(4, U)], 1))
        pred = law.predict(theta, logX)
        assert pred == pytest.approx(constrained_loss(N, D, U), rel=1e-9)
        assert np.all(np.diff(pred) < -0.05)
    small = np.log([[1e6, 1e8, U]])  # N_opt(1e8 tokens) is 6.7e6 > 1e6: no excess parameters
    assert law.predict(theta, small)[0] == pytest.approx(chinchilla(1e6, 1e8), rel=1e-12)


def test_all_under_one_epoch_agrees_with_chinchilla():
    """Truth plain Chinchilla, every run under one epoch (like the default sweep): the
    data-constrained fit predicts what the Chinchilla fit predicts (it used to return
    B > 1e30 and an RMSE of 9.5%)."""
    N = np.repeat(np.logspace(6, 8, 5), 5)
    D = np.tile(np.logspace(7, 9, 5), 5)
    U = np.full_like(N, 1e10)
    t = table(params=N, tokens=D, unique_tokens=U, loss=chinchilla(N, D))
    # The base law is the Chinchilla fit of this noise-free table, which is the truth (to
    # 1e-4, test_analysis_fit); R_D* and R_N* are fitted. (The joint fit costs a minute here:
    # R_N* runs to its bound, so no start converges early.)
    dc = fit_law(t, "data-constrained", bootstrap=0, base_law=BASE)
    pred_dc = np.exp(np.asarray(dc["residuals"]["log_loss"])) * chinchilla(N, D)
    assert np.sqrt(np.mean((pred_dc / chinchilla(N, D) - 1) ** 2)) < 0.01
    assert dc["residuals"]["rmse_log"] < 0.01
