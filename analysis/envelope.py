"""Approach 1 of Hoffmann et al. (2022): the lower envelope of training curves.

At each of a log-spaced set of compute values, every run whose curve spans that
compute is interpolated (loss against log C); the run with the lowest loss
gives N and D there. Power laws N ∝ C^a and D ∝ C^b are then fitted through
those points by least squares in log space.

Only compute values where the envelope is a real minimum over sizes are used: at
least MIN_OVERLAP curves span it and the winner is neither the smallest nor the
largest size among them. Elsewhere the winner is an edge size by default (at low
compute only the small models have curves, at high compute the largest model wins
because no larger one was trained), and those points flatten the slope: 8 sizes
over two decades gave a = 0.338 against a true 0.452 before they were left out.
The interval of a and b comes from a bootstrap over runs.
"""

from __future__ import annotations

import numpy as np

from .compute import compute_column, cost_model
from .data import Results
from .errors import AnalysisError

MIN_OVERLAP = 3      # curves that must span a compute value for it to count
SMOOTH = True        # fit each curve with a cubic in log C before taking the envelope
SMOOTH_DEGREE = 3
N_POINTS = 60        # log-spaced compute values across all curves
BOOTSTRAP = 200      # resamples of runs for the interval of a and b


def envelope_input(path, source="auto", duplicates="drop"):
    """A curves table from a file, or built from a sweep/run directory's metrics."""
    import os
    from .curves import curves_table
    from .data import load_results
    from .data import deduplicate
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "curves.csv")):
        return deduplicate(curves_table(path, source), duplicates)
    if os.path.isdir(path):
        return load_results(os.path.join(path, "curves.csv"), duplicates)
    return load_results(path, duplicates)


def _curves(table, params_column, cost):
    N = table.numeric(params_column)
    D = table.numeric("tokens")
    C = compute_column(table, cost)
    loss = table.numeric("loss")
    runs = np.array(table.text("run"))
    curves = []
    for r in np.unique(runs):
        m = np.flatnonzero(runs == r)
        if len(m) >= 2:
            o = m[np.argsort(C[m])]
            curves.append((r, np.log(C[o]), loss[o], float(N[o][0]), np.log(D[o])))
    return curves


def _interpolated(curves, grid):
    """(runs, grid) loss and log D on the grid, NaN where a curve does not reach."""
    L = np.full((len(curves), len(grid)), np.nan)
    logD = np.full_like(L, np.nan)
    for i, (_, lcs, ls, _, lds) in enumerate(curves):
        inside = (grid >= lcs[0]) & (grid <= lcs[-1])
        L[i, inside] = _smoothed(lcs, ls, grid[inside])
        logD[i, inside] = np.interp(grid[inside], lcs, lds)
    return L, logD


def _smoothed(lcs, ls, at):
    """A curve's loss at `at`: a cubic in log C fitted to its evaluations (noise on single
    evaluations otherwise decides which size wins near every crossing), or plain
    interpolation for curves with too few evaluations."""
    if not SMOOTH or len(np.unique(lcs)) <= 2 * (SMOOTH_DEGREE + 1):
        return np.interp(at, lcs, ls)
    mid = lcs.mean()
    coef = np.polyfit(lcs - mid, np.log(ls), SMOOTH_DEGREE)
    return np.exp(np.polyval(coef, at - mid))


def _envelope_points(L, logN, rows):
    """For the curves `rows` (indices, repeats allowed): per grid column the winning row,
    and whether the column counts (>= MIN_OVERLAP distinct sizes span it and the winner
    is an interior one of them)."""
    rows = np.unique(rows)
    sub = L[rows]
    spans = np.isfinite(sub)
    n_sizes = sum(spans[logN[rows] == s].any(axis=0).astype(int) for s in np.unique(logN[rows]))
    filled = np.where(spans, sub, np.inf)
    win = np.argmin(filled, axis=0)
    ln = np.where(spans, logN[rows][:, None], np.nan)
    lo = np.nanmin(np.where(spans, ln, np.inf), axis=0)
    hi = np.nanmax(np.where(spans, ln, -np.inf), axis=0)
    wn = logN[rows][win]
    ok = (n_sizes >= MIN_OVERLAP) & (wn > lo) & (wn < hi)
    return rows[win], ok


def _slopes(grid, logN, logD, winners, ok):
    """Least-squares slopes through the used points; None unless 2+ sizes win there (one
    winning size is a flat step, not a slope)."""
    if ok.sum() < 2 or len(np.unique(winners[ok])) < 2:
        return None
    c = grid[ok]
    w = winners[ok]
    a, ka = np.polyfit(c, logN[w], 1)
    b, kb = np.polyfit(c, logD[w, np.flatnonzero(ok)], 1)
    return a, b, ka, kb


def envelope(table: Results, *, n_points=N_POINTS, params_column="params", compute="auto",
             bootstrap=BOOTSTRAP, seed=0):
    """Returns a JSON-ready dict; needs `run` and `step` columns (several rows per run)."""
    if not (table.has("run") and table.has("step")):
        raise AnalysisError(f"{table.source}: Approach 1 needs training curves: columns 'run' and "
                            f"'step' with several rows per run; make them with "
                            f"`python -m analysis curves SWEEP_DIR --out DIR`")
    if bootstrap < 0:
        raise AnalysisError(f"--bootstrap must be >= 0, got {bootstrap}")
    cost = cost_model(table, params_column, compute)
    curves = _curves(table, params_column, cost)
    if len(curves) < 2:
        raise AnalysisError(f"{table.source}: Approach 1 needs at least 2 runs with 2+ steps each")
    lo = min(c[1][0] for c in curves)
    hi = max(c[1][-1] for c in curves)
    grid = np.linspace(lo, hi, n_points)
    L, logD = _interpolated(curves, grid)
    logN = np.log([c[3] for c in curves])
    winners, ok = _envelope_points(L, logN, np.arange(len(curves)))
    fitted = _slopes(grid, logN, logD, winners, ok)
    if fitted is None:
        raise AnalysisError(
            f"{table.source}: Approach 1 found {int(ok.sum())} compute values where an interior "
            f"size (neither the smallest nor the largest of >= {MIN_OVERLAP} overlapping curves) "
            f"has the lowest loss; it needs 2 or more: train more sizes, or longer runs so "
            f"their curves overlap")
    a, b, ka, kb = fitted
    points = []
    for j in np.flatnonzero(np.isfinite(L).any(axis=0)):
        w = winners[j]
        points.append(dict(flops=float(np.exp(grid[j])), loss=float(L[w, j]), run=curves[w][0],
                           N=float(np.exp(logN[w])), D=float(np.exp(logD[w, j])),
                           used=bool(ok[j])))
    out = dict(method="lower envelope of training curves (Hoffmann et al. 2022, Approach 1)",
               a=float(a), b=float(b), N_coeff=float(np.exp(ka)), D_coeff=float(np.exp(kb)),
               n_runs=len(curves), n_points_used=int(ok.sum()), n_points=len(points),
               envelope=points, compute=cost.describe(),
               notes=list(table.notes), warnings=list(table.warnings),
               note=f"D along the envelope is the best run's tokens at that compute "
                    f"(interpolated in log C); only compute values where >= {MIN_OVERLAP} "
                    f"curves overlap and an interior size wins are fitted (n_points_used)")
    if out["n_points_used"] < 5:
        out["warnings"].append(f"only {out['n_points_used']} compute values have an interior "
                               f"winner; a and b rest on very few points")
    samples = _bootstrap(grid, L, logN, logD, bootstrap, seed)
    if samples is not None:
        out["stderr"] = {k: float(np.std(v, ddof=1)) for k, v in samples.items()}
        out["ci95"] = {k: [float(q) for q in np.percentile(v, [2.5, 97.5])]
                       for k, v in samples.items()}
        out["bootstrap"] = dict(n=int(bootstrap), n_valid=int(len(samples["a"])), seed=int(seed),
                                unit="runs", interval="percentile, 2.5% to 97.5%")
    else:
        out["bootstrap"] = None
        if bootstrap:
            out["warnings"].append("bootstrap: fewer than 2 resamples had enough interior "
                                   "winners; no interval for a and b")
    return out


def _bootstrap(grid, L, logN, logD, n_boot, seed):
    if not n_boot:
        return None
    rng = np.random.default_rng(seed)
    res = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(L), len(L))
        winners, ok = _envelope_points(L, logN, rows)
        fitted = _slopes(grid, logN, logD, winners, ok)
        if fitted is not None:
            res.append(fitted[:2])
    if len(res) < 2:
        return None
    res = np.array(res)
    return dict(a=res[:, 0], b=res[:, 1])
