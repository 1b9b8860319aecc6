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


def test_envelope_uses_crossings_not_edge_winners_and_recovers_a():
    """8 sizes over 2 decades: fitted through every envelope point, a = 0.338 (truth 0.452):
    edge sizes win by default where no smaller or larger curve reaches."""
    sizes = np.logspace(7, 9, 8)
    env = envelope(curves(sizes), bootstrap=50)
    assert env["a"] == pytest.approx(A_TRUE, abs=0.02)
    assert env["b"] == pytest.approx(1 - A_TRUE, abs=0.02)
    # One crossing per pair of neighbouring sizes, N there between the two.
    assert env["n_points_used"] == 7 == len(env["crossings"])
    mids = np.sqrt(sizes[:-1] * sizes[1:])
    assert np.allclose(sorted(c["N"] for c in env["crossings"]), mids, rtol=1e-9)
    # At each crossing the two neighbouring sizes have equal loss (a numerical check).
    for c, lo, hi in zip(sorted(env["crossings"], key=lambda c: c["N"]), sizes[:-1], sizes[1:]):
        assert law(lo, c["flops"] / (6 * lo)) == pytest.approx(law(hi, c["flops"] / (6 * hi)),
                                                               rel=1e-3)
    lo, hi = env["ci95"]["a"]
    assert lo <= A_TRUE <= hi and hi - lo > 0
    # The fit through every envelope point is the biased one the crossings replace.
    pts = env["envelope"]
    a_all = np.polyfit(np.log([p["flops"] for p in pts]), np.log([p["N"] for p in pts]), 1)[0]
    assert a_all < A_TRUE - 0.05


# ---- Approach 2 ----

from scipy.optimize import minimize_scalar  # noqa: E402

from analysis.isoflop import budget_optima, isoflop, line_band, weighted_line  # noqa: E402


def true_n_opt(C, k=6.0):
    res = minimize_scalar(lambda x: law(np.exp(x), C / (k * np.exp(x))),
                          bounds=(np.log(1e5), np.log(1e14)), method="bounded",
                          options=dict(xatol=1e-10))
    return float(np.exp(res.x))


def iso_rows(budgets, per_budget=7, half_width_dex=0.5, jitter=0.0, noise=0.0, seed=0):
    """Runs on iso-FLOP profiles around each budget's true optimum (C = 6ND); actual FLOPs
    off the planned budget by up to ±jitter, loss with relative noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        for n in true_n_opt(c) * np.logspace(-half_width_dex, half_width_dex, per_budget):
            actual = c * rng.uniform(1 - jitter, 1 + jitter) if jitter else c
            d = actual / (6 * n)
            rows.append(dict(params=n, tokens=d, flops=actual, compute_budget=c,
                             loss=law(n, d) * (1 + noise * rng.standard_normal())))
    return rows


def test_isoflop_with_5_percent_flop_jitter_recovers_a_within_001():
    for seed in range(3):
        iso = isoflop(results(iso_rows((1e18, 1e19, 1e20, 1e21), jitter=0.05, seed=seed)),
                      bootstrap=0)
        assert iso["a"] == pytest.approx(A_TRUE, abs=0.01)
    # Budgets 0.08 dex apart (the slope rests on 0.16 dex): 0.327 before the jitter terms.
    close = isoflop(results(iso_rows(1e18 * 10 ** (0.08 * np.arange(3)), jitter=0.05)),
                    bootstrap=0)
    assert close["a"] == pytest.approx(A_TRUE, abs=0.02)


def test_d_opt_spends_exactly_the_compute():
    iso = isoflop(results(iso_rows((1e18, 1e19, 1e20))), bootstrap=0,
                  reference_flops=[1e20, 1e22])
    for c in iso["compute_optimal"].values():
        assert 6 * c["N_opt"] * c["D_opt"] / c["flops"] == pytest.approx(1.0, rel=1e-9)
    for b in iso["budgets"]:
        assert 6 * b["N_opt"] * b["D_opt"] / b["budget"] == pytest.approx(1.0, rel=1e-9)
    assert iso["b"] == pytest.approx(1 - iso["a"], abs=1e-12)


def test_isoflop_intervals_are_calibrated_on_replicates():
    """30 replicate tables (4 budgets x 5 sizes, 1% noise): the median 95% width is near
    ±1.96 x the replicates' SD of a (it was 2x too wide when runs were resampled)."""
    est, widths, covered = [], [], 0
    budgets = (1e18, 1e19, 1e20, 1e21)
    for r in range(30):
        rows = iso_rows(budgets, per_budget=5, half_width_dex=0.6, noise=0.01, seed=r)
        logC = np.log([x["flops"] for x in rows])
        opt, _, s2, dof = budget_optima(logC, np.log([x["params"] for x in rows]),
                                        np.array([x["loss"] for x in rows]),
                                        np.round(logC / np.log(10), 6), lambda lab, lc: lc.mean())
        a, _, cov = weighted_line(opt, s2)
        from scipy import stats
        half = stats.t.ppf(0.975, dof) * np.sqrt(cov[0, 0])
        est.append(a)
        widths.append(2 * half)
        covered += abs(a - A_TRUE) <= half
    ref = 2 * 1.96 * np.std(est, ddof=1)
    assert 1 / 1.5 < np.median(widths) / ref < 1.5
    assert covered >= 24


def test_line_band_has_width_at_the_mean_budget_and_matches_hand_computation():
    iso = isoflop(results(iso_rows((1e18, 1e19, 1e20, 1e21), per_budget=5, noise=0.01)),
                  bootstrap=0)
    cov, t = iso["_line_cov"], iso["interval"]["t"]
    centre = -cov[0, 1] / cov[0, 0]  # log C where the line's variance is smallest
    lo, mid, hi = line_band(iso, [np.exp(centre)])
    half = t * np.sqrt(cov[1, 1] - cov[0, 1] ** 2 / cov[0, 0])
    assert np.log(hi[0] / mid[0]) == pytest.approx(half, rel=1e-9) and half > 0
    assert iso["budgets"][0]["log_N_opt_stderr"] > 0


def test_non_convex_budget_is_named_for_log_n_and_mixed_tables_use_budget_rows():
    rows = iso_rows((1e18, 1e19, 1e20))
    for r in rows[:7]:  # first budget: loss that opens downwards in log N
        r["loss"] = 5.0 - 0.1 * np.log(r["params"] / rows[3]["params"]) ** 2
    grid = [dict(params=n, tokens=d, flops=6 * n * d, compute_budget="", loss=law(n, d))
            for n in (1e7, 1e8) for d in (1e9, 1e10)]
    iso = isoflop(results(rows + grid), bootstrap=0)
    assert any("not convex in log N" in w for w in iso["warnings"])
    assert not any("log D" in w for w in iso["warnings"])
    assert any("left out 4 rows without a compute_budget" in n for n in iso["notes"])
    assert len(iso["budgets"]) == 2 and iso["n_points"] == 21


# ---- learning-rate grid edges ----

from analysis.select import edge_warnings, lr_scan  # noqa: E402


def lr_rows(optimum_factor=1.0, noise=0.01, seed=0):
    """4 sizes x 3 D x 5 LRs; loss = law x (1 + 0.004 log2(lr / lr_best)²) with 1% noise (flat
    near the optimum, as tuned LRs are);
    the true best LR is optimum_factor x the grid's middle value."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.logspace(7, 9, 4):
        centre = 3e-3 * (N / 1e7) ** -0.3
        for D in np.logspace(9, 10, 3):
            for lr in centre * 2.0 ** np.arange(-2, 3):
                pen = 1 + 0.004 * np.log2(lr / (centre * optimum_factor)) ** 2
                rows.append(dict(params=N, tokens=D, learning_rate=lr,
                                 loss=law(N, D) * pen * (1 + noise * rng.standard_normal())))
    return results(rows)


def test_lr_edge_warning_uses_a_parabola_in_log_lr_not_the_noisy_lowest_run():
    flagged_runs = 0
    for seed in range(5):
        t = lr_rows(seed=seed)
        N, D = t.numeric("params"), t.numeric("tokens")
        scan = lr_scan(t, N, D)
        assert not edge_warnings(scan), edge_warnings(scan)
        flagged_runs += sum(c["at_edge"] for s in scan["sizes"] for c in s["curves"])
        for s in scan["sizes"]:  # the vertex is near the true best LR (the grid's middle)
            mid = np.sqrt(s["grid"][0] * s["grid"][1])
            assert abs(np.log2(s["vertex_lr"] / mid)) < 1.0
    assert flagged_runs > 0  # the old rule (lowest single run) would have warned
    # A true optimum beyond the grid (8x the middle value, 2x above the top) is flagged.
    t = lr_rows(optimum_factor=8.0)
    scan = lr_scan(t, t.numeric("params"), t.numeric("tokens"))
    assert len(edge_warnings(scan)) == 4


def test_simcheck_command_runs_on_two_replicates(capsys):
    """The benchmark (`python -m analysis simcheck`, minutes at 50 replicates) cannot rot:
    2 replicates of the two numpy approaches, through the command line entry point."""
    from analysis.__main__ import main
    assert main(["simcheck", "--replicates", "2", "--bootstrap", "5", "--approaches", "1", "2"]) == 0
    out = capsys.readouterr().out
    for k in (1, 2):
        line = next(x for x in out.splitlines() if x.startswith(f"Approach {k}:"))
        assert "over 2 replicates" in line and "covers the truth in" in line
    assert main(["simcheck", "--replicates", "1"]) == 2  # one line, exit 2
