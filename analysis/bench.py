"""Speed benchmark: `python -m analysis bench`.

Times, on a synthetic Chinchilla dataset with 1% noise: the vectorised 4500-start
fit (cold, i.e. with compilation, and warm), the bootstrap refits, and a plain
scipy L-BFGS-B loop over (a subset of) the same grid, extrapolated to all starts.
"""

from __future__ import annotations

import os
import time

import numpy as np
from scipy.optimize import minimize as scipy_minimize

from .fit import bootstrap_fits, bootstrap_starts, bootstrap_weights, fit_points
from .laws import make_law


def synthetic(n, seed=0):
    rng = np.random.default_rng(seed)
    logN = rng.uniform(np.log(1e7), np.log(1e10), n)
    logD = rng.uniform(np.log(1e8), np.log(1e11), n)
    loss = (1.69 + 406.4 * np.exp(-0.34 * logN) + 410.7 * np.exp(-0.28 * logD)) * np.exp(
        0.01 * rng.standard_normal(n))
    return np.stack([logN, logD], 1), np.log(loss)


def _scipy_objective(theta, logX, logL, delta):
    """Same Huber objective and gradient in numpy, for one start."""
    a, b, e, alpha, beta = theta
    t1 = np.exp(a - alpha * logX[:, 0])
    t2 = np.exp(b - beta * logX[:, 1])
    s = t1 + t2 + np.exp(e)
    r = np.log(s) - logL
    ar = np.abs(r)
    f = np.sum(np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)))
    dr = np.clip(r, -delta, delta) / s
    g = np.array([np.sum(dr * t1), np.sum(dr * t2), np.sum(dr) * np.exp(e),
                  -np.sum(dr * t1 * logX[:, 0]), -np.sum(dr * t2 * logX[:, 1])])
    return f, g


def main(points=300, n_boot=1000, scipy_starts=450):
    law = make_law("chinchilla")
    logX, logL = synthetic(points)
    print(f"benchmark: {points} points, {len(law.grid)} starts, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")

    t0 = time.perf_counter()
    res, best, near = fit_points(law, logX, logL)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    res, best, near = fit_points(law, logX, logL)
    warm = time.perf_counter() - t0
    print(f"vectorised full-grid fit: {cold:.2f} s cold (with compilation), {warm:.2f} s warm; "
          f"objective {res.f[best]:.6g}, {near.sum()} starts at best, "
          f"{res.capped.sum()} hit the iteration cap")

    weights = bootstrap_weights(np.arange(points), n_boot, seed=0)
    starts = bootstrap_starts(law, res, best)
    t0 = time.perf_counter()
    boot = bootstrap_fits(law, logX, logL, weights, starts, 1e-3)
    tb = time.perf_counter() - t0
    print(f"bootstrap: {n_boot} refits x {len(starts)} starts in {tb:.2f} s (with compilation); "
          f"alpha 95% CI {np.percentile(boot[:, 3], 2.5):.4f} .. {np.percentile(boot[:, 3], 97.5):.4f}")

    idx = np.linspace(0, len(law.grid) - 1, min(scipy_starts, len(law.grid))).astype(int)
    t0 = time.perf_counter()
    fs = []
    for x0 in law.grid[idx]:
        with np.errstate(over="ignore", invalid="ignore"):  # far starts overflow; scipy copes
            r = scipy_minimize(_scipy_objective, x0, args=(logX, logL, 1e-3), jac=True,
                               method="L-BFGS-B")
        fs.append(r.fun)
    ts = time.perf_counter() - t0
    full = ts * len(law.grid) / len(idx)
    print(f"plain scipy L-BFGS-B loop: {ts:.2f} s for {len(idx)} starts, about {full:.1f} s for "
          f"all {len(law.grid)} (best objective on the subset {np.min(fs):.6g})")
    return dict(cold=cold, warm=warm, bootstrap=tb, scipy_full_estimate=full)
