"""Speed benchmark: `python -m analysis bench`.

Times, on a synthetic Chinchilla dataset with 1% noise: the vectorised 4500-start
fit (cold, i.e. with compilation, and warm), the screened fit `analysis fit` runs, the
bootstrap refits, and a plain
scipy L-BFGS-B loop over (a subset of) the same grid, extrapolated to all starts;
then the whole `python -m analysis fit` command (fresh process, warm caches: load, fit,
plots, report) without bootstrap and with 1000 resamples, with the plots drawn in the
background as at a terminal, and without bootstrap waiting for the plots.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy.optimize import minimize as scipy_minimize

from .fit import BOOT_ABANDON_AFTER, bootstrap_fits, bootstrap_starts, bootstrap_weights, \
    fit_grid, fit_points
from .laws import make_law

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `analysis` imports


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


def end_to_end(points=240, n_boot=1000, repeats=2, python_path=None):
    """Wall time of `python -m analysis fit` on a synthetic CSV of `points` rows, without
    bootstrap and with `n_boot` resamples, with the plots drawn in the background (as at a
    terminal) and waited for: the best of `repeats` runs after one that fills the caches
    (each run is a fresh process, as a user's would be). Returns {(resamples, plots): s}.
    `python_path`: import `analysis` from there instead (to time another version)."""
    logX, logL = synthetic(points)
    env = dict(os.environ, PYTHONPATH=python_path or ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "runs.csv")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("params,tokens,loss\n")
            for (n, d), y in zip(np.exp(logX), np.exp(logL)):
                fh.write(f"{n:.17g},{d:.17g},{y:.17g}\n")
        out = {}
        for b, plots in ((0, "background"), (n_boot, "background"), (0, "wait")):
            times = []
            for _ in range(repeats + 1):
                command = [sys.executable, "-m", "analysis", "fit", path, "--out",
                           os.path.join(tmp, "out"), "--bootstrap", str(b)]
                if python_path is None:
                    command += ["--plots", plots]
                t0 = time.perf_counter()
                proc = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                if proc.returncode:
                    raise RuntimeError(f"analysis fit failed:\n{proc.stderr}")
                _wait_for_plots(proc.stderr)  # so the next run has the cores to itself
            out[b, plots] = min(times[1:])
    return out


def _wait_for_plots(stderr: str, timeout=120.0):
    match = re.search(r"being drawn by process (\d+)", stderr)
    if not match:
        return
    pid, t0 = int(match.group(1)), time.time()
    while time.time() - t0 < timeout:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def main(points=300, n_boot=1000, scipy_starts=450, e2e_points=240):
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

    fit_grid(law, logX, logL)  # compiles the screen's programs (or loads them)
    t0 = time.perf_counter()
    res_s, best_s, _, n_grid = fit_grid(law, logX, logL)
    screened = time.perf_counter() - t0
    print(f"screened fit (as `analysis fit` runs it): {screened:.2f} s warm, "
          f"{len(res_s.x)} of {len(law.grid)} starts"
          f"{'' if n_grid else ' (the whole grid: the screened fit was not clean)'}; "
          f"objective {res_s.f[best_s]:.6g}")

    weights = bootstrap_weights(np.arange(points), n_boot, seed=0)
    starts = bootstrap_starts(law, res_s, best_s, logX=logX)  # as fit_law chooses them
    t0 = time.perf_counter()
    boot = bootstrap_fits(law, logX, logL, weights, starts, 1e-3,
                          abandon_after=BOOT_ABANDON_AFTER)  # as fit_law does
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
    result = dict(cold=cold, warm=warm, screened=screened, bootstrap=tb,
                  scipy_full_estimate=full)
    if e2e_points:
        e2e = end_to_end(e2e_points, n_boot)
        print(f"end to end, python -m analysis fit on {e2e_points} points (fresh process, warm "
              f"caches, load average {os.getloadavg()[0]:.1f}): "
              f"{e2e[0, 'background']:.1f} s without bootstrap, "
              f"{e2e[n_boot, 'background']:.1f} s with {n_boot} bootstrap resamples "
              f"(plots drawn in the background, as at a terminal); "
              f"{e2e[0, 'wait']:.1f} s without bootstrap waiting for the plots (--plots wait)")
        result.update(e2e_no_bootstrap=e2e[0, "background"],
                      e2e_bootstrap=e2e[n_boot, "background"],
                      e2e_no_bootstrap_wait=e2e[0, "wait"])
    return result
