"""Approaches 1 and 2 against known laws: no edge bias, FLOP jitter, calibrated intervals."""

import numpy as np
import pytest

from analysis.data import Results
from analysis.envelope import envelope

P = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
A_TRUE = P["beta"] / (P["alpha"] + P["beta"])  # N_opt ∝ C^a under C = 6ND


def law(N, D):
    return P["E"] + P["A"] / N ** P["alpha"] + P["B"] / D ** P["beta"]


def results(rows):
    return Results({k: [r[k] for r in rows] for k in rows[0]},
                   [f"row {i + 1}" for i in range(len(rows))], "test")


def curves(sizes, tokens=np.logspace(7, 11.5, 80)):
    """Noise-free idealised training curves: the law along each run's tokens."""
    return results([dict(run=f"m{i}", step=s + 1, params=N, tokens=D, loss=law(N, D))
                    for i, N in enumerate(sizes) for s, D in enumerate(tokens)])


def test_envelope_uses_interior_winners_only_and_recovers_a():
    """8 sizes over 2 decades: edge winners gave a = 0.338 (truth 0.452)."""
    env = envelope(curves(np.logspace(7, 9, 8)), bootstrap=50)
    assert env["a"] == pytest.approx(A_TRUE, abs=0.02)
    assert env["b"] == pytest.approx(1 - A_TRUE, abs=0.02)
    used = [p for p in env["envelope"] if p["used"]]
    assert env["n_points_used"] == len(used) and 10 <= len(used) < len(env["envelope"])
    edges = np.logspace(7, 9, 8)[[0, -1]]
    assert not np.isclose(np.array([p["N"] for p in used])[:, None], edges[None]).any()
    lo, hi = env["ci95"]["a"]
    assert lo <= A_TRUE <= hi and hi - lo > 0
    # The same fit through every envelope point is the biased one the rule removes.
    pts = env["envelope"]
    a_all = np.polyfit(np.log([p["flops"] for p in pts]), np.log([p["N"] for p in pts]), 1)[0]
    assert a_all < A_TRUE - 0.05
