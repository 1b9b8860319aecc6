"""Approach 1 of Hoffmann et al. (2022): the lower envelope of training curves.

At each of a log-spaced set of compute values, every run whose curve spans that
compute is interpolated (loss against log C); the run with the lowest loss
gives N and D there. Power laws N ∝ C^a and D ∝ C^b are then fitted through
those points by least squares in log space.
"""

from __future__ import annotations

import numpy as np

from .compute import compute_column, cost_model
from .data import Results
from .errors import AnalysisError


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


def envelope(table: Results, *, n_points=30, params_column="params", compute="auto"):
    """Returns a JSON-ready dict; needs `run` and `step` columns (several rows per run)."""
    if not (table.has("run") and table.has("step")):
        raise AnalysisError(f"{table.source}: Approach 1 needs training curves: columns 'run' and "
                            f"'step' with several rows per run; make them with "
                            f"`python -m analysis curves SWEEP_DIR --out DIR`")
    cost = cost_model(table, params_column, compute)
    N = table.numeric(params_column)
    D = table.numeric("tokens")
    C = compute_column(table, cost)
    loss = table.numeric("loss")
    runs = np.array(table.text("run"))
    curves = {}
    for r in np.unique(runs):
        m = np.flatnonzero(runs == r)
        if len(m) >= 2:
            o = m[np.argsort(C[m])]
            curves[r] = (np.log(C[o]), loss[o], N[o][0], np.log(D[o]))
    if len(curves) < 2:
        raise AnalysisError(f"{table.source}: Approach 1 needs at least 2 runs with 2+ steps each")
    lo = min(c[0][0] for c in curves.values())
    hi = max(c[0][-1] for c in curves.values())
    grid = np.linspace(lo, hi, n_points)
    points = []
    for lc in grid:
        best = None
        for r, (lcs, ls, n, lds) in curves.items():
            if lcs[0] <= lc <= lcs[-1]:
                v = float(np.interp(lc, lcs, ls))
                if best is None or v < best[0]:
                    best = (v, r, n, float(np.exp(np.interp(lc, lcs, lds))))
        if best is not None:
            c = float(np.exp(lc))
            points.append(dict(flops=c, loss=best[0], run=best[1], N=float(best[2]),
                               D=best[3]))
    logc = np.log([p["flops"] for p in points])
    a, ka = np.polyfit(logc, np.log([p["N"] for p in points]), 1)
    b, kb = np.polyfit(logc, np.log([p["D"] for p in points]), 1)
    return dict(method="lower envelope of training curves (Hoffmann et al. 2022, Approach 1)",
                a=float(a), b=float(b), N_coeff=float(np.exp(ka)), D_coeff=float(np.exp(kb)),
                n_runs=len(curves), envelope=points, compute=cost.describe(),
                notes=list(table.notes), warnings=list(table.warnings),
                note="D along the envelope is the best run's tokens at that compute "
                     "(interpolated in log C)")
