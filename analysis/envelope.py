"""Approach 1 of Hoffmann et al. (2022): the lower envelope of training curves.

At each of a log-spaced set of compute values, every run whose curve spans that
compute is interpolated (loss against log C); the run with the lowest loss
gives N and D there. Power laws N ∝ C^a and D ∝ C^b are then fitted through
those points by least squares in log space.

The exponents are fitted through the envelope's *crossings*, not through every compute
value: where the lowest curve passes from one size to another by a real crossing (both
curves span it, at least MIN_OVERLAP curves overlap there), the optimal N lies between
the two sizes, at their geometric mean for a locally symmetric profile. Compute values
where a size wins only because no smaller (low compute) or larger (high compute) curve
reaches them are never used: fitted through every envelope point, 8 sizes over two
decades gave a = 0.338 against a true 0.452; through interior winners only, 0.438 (the
winner is a staircase in N); through the crossings, 0.451. Curves with enough
evaluations are smoothed first, so that eval noise does not create crossings. The
interval of a and b comes from a bootstrap over runs.
"""

from __future__ import annotations

import numpy as np

from .compute import compute_column, cost_model
from .data import Results
from .errors import AnalysisError

MIN_OVERLAP = 3      # curves that must span a compute value for it to count
SMOOTH = True        # fit each curve with a polynomial in log C before taking the envelope
SMOOTH_DEGREE = 5    # 3 left a bias of -0.01 in a under 1% noise (simcheck); 5 none seen
N_POINTS = 60        # log-spaced compute values across all curves
BOOTSTRAP = 200      # resamples of runs for the interval of a and b
FINE_POINTS = 400    # grid on which crossings between sizes are located


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
    """A curve's loss at `at`: a degree-SMOOTH_DEGREE polynomial in log C fitted to its log
    loss (noise on single evaluations otherwise makes curves cross back and forth, and
    decides which size wins near every crossing), or plain interpolation for curves with
    too few evaluations."""
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


def _crossings(grid, L, logN, logD, rows):
    """Where the envelope passes from one size to another by a real crossing of their
    curves (both span the bracket, >= MIN_OVERLAP sizes overlap there): (log C, log N, log D)
    per crossing, with the optimum between the two sizes (the midpoint in log N: the
    vertex of a locally symmetric profile through two equal losses)."""
    rows = np.unique(rows)
    sub = L[rows]
    spans = np.isfinite(sub)
    n_sizes = sum(spans[logN[rows] == s].any(axis=0).astype(int) for s in np.unique(logN[rows]))
    win = np.argmin(np.where(spans, sub, np.inf), axis=0)
    out = []
    for j in range(len(grid) - 1):
        r, q = win[j], win[j + 1]
        if r == q or logN[rows[r]] == logN[rows[q]] or not spans[[r, q]][:, j:j + 2].all() \
                or min(n_sizes[j], n_sizes[j + 1]) < MIN_OVERLAP:
            continue
        d0 = sub[r, j] - sub[q, j]
        d1 = sub[r, j + 1] - sub[q, j + 1]
        t = d0 / (d0 - d1) if d0 != d1 else 0.5  # the two curves cross here (linear)
        lc = grid[j] + t * (grid[j + 1] - grid[j])
        ld = [logD[rows[i], j] + t * (logD[rows[i], j + 1] - logD[rows[i], j]) for i in (r, q)]
        out.append((lc, 0.5 * (logN[rows[r]] + logN[rows[q]]), 0.5 * (ld[0] + ld[1])))
    return np.array(out).reshape(-1, 3)


def _crossing_slopes(points):
    if len(points) < 2 or np.ptp(points[:, 0]) <= 0:
        return None
    a, ka = np.polyfit(points[:, 0], points[:, 1], 1)
    b, kb = np.polyfit(points[:, 0], points[:, 2], 1)
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
    logN = np.log([c[3] for c in curves])
    points = _envelope_rows(curves, logN, np.linspace(lo, hi, n_points))
    fine = np.linspace(lo, hi, FINE_POINTS)
    Lf, logDf = _interpolated(curves, fine)
    cross = _crossings(fine, Lf, logN, logDf, np.arange(len(curves)))
    fitted = _crossing_slopes(cross)
    out = _describe(table, curves, cross, points, cost, *(fitted or (None, None, None, None)))
    if fitted is None:  # a result that says so (a sweep's report still gets written)
        out["warnings"].append(
            f"Approach 1 has nothing to fit: {len(cross)} compute values where the lowest "
            f"curve passes from one size to another with >= {MIN_OVERLAP} curves "
            f"overlapping (it needs 2 or more); train more sizes, or longer runs so their "
            f"curves overlap")
        out.update(stderr={}, ci95={}, bootstrap=None)
        return out
    if out["n_points_used"] < 4:
        out["warnings"].append(f"only {out['n_points_used']} crossings between sizes; a and b "
                               f"rest on very few points")
    out.update(_intervals(curves, fine, logN, bootstrap, seed, out["warnings"]))
    return out


def _envelope_rows(curves, logN, grid) -> list[dict]:
    """The lowest curve at each compute of `grid` that any curve reaches: which run, its N, D
    and loss, and whether a smaller and a larger curve reach it too (interior)."""
    L, logD = _interpolated(curves, grid)
    winners, ok = _envelope_points(L, logN, np.arange(len(curves)))
    points = []
    for j in np.flatnonzero(np.isfinite(L).any(axis=0)):
        w = winners[j]
        points.append(dict(flops=float(np.exp(grid[j])), loss=float(L[w, j]), run=curves[w][0],
                           N=float(np.exp(logN[w])), D=float(np.exp(logD[w, j])),
                           interior=bool(ok[j])))
    return points


def _describe(table, curves, cross, points, cost, a, b, ka, kb) -> dict:
    return dict(method="lower envelope of training curves (Hoffmann et al. 2022, Approach 1)",
                a=_f(a), b=_f(b), N_coeff=_f(ka, np.exp), D_coeff=_f(kb, np.exp),
                n_runs=len(curves), n_points_used=int(len(cross)), n_points=len(points),
                crossings=[dict(flops=float(np.exp(c)), N=float(np.exp(n)), D=float(np.exp(d)))
                           for c, n, d in cross],
                envelope=points, compute=cost.describe(),
                notes=list(table.notes), warnings=list(table.warnings),
                note=f"a and b are fitted through the envelope's crossings (n_points_used): the "
                     f"compute where the lowest curve passes from one size to the next with >= "
                     f"{MIN_OVERLAP} curves overlapping, N there the geometric mean of the two "
                     f"sizes. Points where a size wins only because no smaller or larger curve "
                     f"reaches that compute are never used. Curves are smoothed (a polynomial of "
                     f"degree {SMOOTH_DEGREE} in log C of log loss) when they have over "
                     f"{2 * (SMOOTH_DEGREE + 1)} evaluations")


def _intervals(curves, fine, logN, bootstrap, seed, warnings) -> dict:
    """stderr and 95% intervals of a and b from resampled runs, when 2+ resamples fit."""
    samples = _bootstrap(curves, fine, logN, bootstrap, seed)
    if samples is None:
        if bootstrap:
            warnings.append("bootstrap: fewer than 2 resamples had 2+ crossings; no "
                            "interval for a and b")
        return dict(bootstrap=None)
    return dict(stderr={k: float(np.std(v, ddof=1)) for k, v in samples.items()},
                ci95={k: [float(q) for q in np.percentile(v, [2.5, 97.5])]
                      for k, v in samples.items()},
                bootstrap=dict(n=int(bootstrap), n_valid=int(len(samples["a"])), seed=int(seed),
                               unit="runs", interval="percentile, 2.5% to 97.5%"))


def _f(v, fn=None):
    return None if v is None else float(fn(v) if fn else v)


def _bootstrap(curves, fine, logN, n_boot, seed):
    """a, b over resamples of runs (a run drawn twice counts once: it is the same curve)."""
    if not n_boot:
        return None
    rng = np.random.default_rng(seed)
    L, logD = _interpolated(curves, fine)
    res = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(curves), len(curves))
        fitted = _crossing_slopes(_crossings(fine, L, logN, logD, rows))
        if fitted is not None:
            res.append(fitted[:2])
    if len(res) < 2:
        return None
    res = np.array(res)
    return dict(a=res[:, 0], b=res[:, 1])
