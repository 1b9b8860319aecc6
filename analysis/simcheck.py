"""Simulation check of the 95% intervals of a (N_opt ∝ C^a): `python -m analysis simcheck`.

Replicate tables are drawn from a known Chinchilla law (Hoffmann et al.'s fitted values,
a = 0.452 under C = 6ND) with 1% multiplicative noise, and each approach is run on every
replicate exactly as the commands run it:

- Approach 1: 8 model sizes over two decades, each a training curve of 40 evaluations
  (noise independent per evaluation); `envelope` with its bootstrap over runs.
- Approach 2: 4 budgets a decade apart, 5 sizes per budget over ±0.6 dex around the true
  optimum; `isoflop` with its covariance interval.
- Approach 3: a 6 x 6 grid of N and D; the Chinchilla fit with bootstrap (batched over
  replicates through the same functions `fit` uses, from 100 of the grid's starts).

For each it prints the mean and SD of a over replicates, how many 95% intervals cover
the truth, and the median interval width against ±1.96 x the replicates' SD.
"""

from __future__ import annotations

import numpy as np

P = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
A_TRUE = P["beta"] / (P["alpha"] + P["beta"])


def _law(N, D):
    return P["E"] + P["A"] / N ** P["alpha"] + P["B"] / D ** P["beta"]


def _results(rows):
    from .data import Results
    return Results({k: [r[k] for r in rows] for k in rows[0]},
                   [f"row {i + 1}" for i in range(len(rows))], "simcheck")


def _true_n_opt(C):
    from .allocation import optimum
    return float(optimum(P, C)[0])


def approach1(rng, n_boot):
    from .envelope import envelope
    rows = []
    for i, N in enumerate(np.logspace(7, 9, 8)):
        for s, D in enumerate(np.logspace(7, 11.5, 40)):
            rows.append(dict(run=f"m{i}", step=s + 1, params=N, tokens=D,
                             loss=_law(N, D) * np.exp(0.01 * rng.standard_normal())))
    env = envelope(_results(rows), bootstrap=n_boot, seed=int(rng.integers(1 << 31)))
    return env["a"], (env.get("ci95") or {}).get("a")


def approach2(rng, n_boot):
    from .isoflop import isoflop
    rows = []
    for c in (1e18, 1e19, 1e20, 1e21):
        for n in _true_n_opt(c) * np.logspace(-0.6, 0.6, 5):
            d = c / (6 * n)
            rows.append(dict(params=n, tokens=d, compute_budget=c,
                             loss=_law(n, d) * np.exp(0.01 * rng.standard_normal())))
    iso = isoflop(_results(rows), bootstrap=0)
    return iso["a"], (iso.get("ci95") or {}).get("a")


def approach3(replicates, n_boot, seed):
    """(estimates, intervals) for all replicates at once (one compilation)."""
    from .fit import bootstrap_fits, bootstrap_weights
    from .laws import make_law
    law = make_law("chinchilla")
    N = np.repeat(np.logspace(7, 10, 6), 6)
    D = np.tile(np.logspace(8, 11, 6), 6)
    logX = np.stack([np.log(N), np.log(D)], 1)
    rng = np.random.default_rng(seed)
    Y = np.log(_law(N, D))[None] + 0.01 * rng.standard_normal((replicates, len(N)))
    full = bootstrap_fits(law, logX, Y, np.ones_like(Y), law.grid[::45], 1e-3)
    weights = np.concatenate([bootstrap_weights(np.arange(len(N)), n_boot, seed=seed + r)
                              for r in range(replicates)])
    boot = bootstrap_fits(law, logX, np.repeat(Y, n_boot, axis=0), weights,
                          np.repeat(full, n_boot, axis=0)[:, None], 1e-3)
    boot = boot.reshape(replicates, n_boot, -1)

    def a_of(theta):
        nat = law.to_natural(theta)
        return nat["beta"] / (nat["alpha"] + nat["beta"])
    est = a_of(full)
    cis = [list(np.percentile(a_of(boot[r]), [2.5, 97.5])) for r in range(replicates)]
    return list(est), cis


def summary_line(name, est, cis):
    est = np.asarray(est, float)
    ok = [c for c in cis if c is not None]
    covered = sum(c[0] <= A_TRUE <= c[1] for c in ok)
    widths = np.array([c[1] - c[0] for c in ok])
    sd = float(np.std(est, ddof=1))
    ratio = float(np.median(widths) / (2 * 1.96 * sd)) if len(widths) and sd > 0 else float("nan")
    return (f"{name}: a = {est.mean():.4f} mean, {sd:.4f} SD over {len(est)} replicates "
            f"(truth {A_TRUE:.4f}); 95% interval covers the truth in {covered}/{len(ok)} "
            f"({covered / max(len(ok), 1):.0%}); median width {np.median(widths):.4f} = "
            f"{ratio:.2f} x (2 x 1.96 x SD)"), dict(mean=float(est.mean()), sd=sd,
                                                      covered=int(covered), n=len(ok),
                                                      width_ratio=ratio)


def main(replicates=50, bootstrap=100, seed=0, approaches=(1, 2, 3)):
    print(f"simcheck: {replicates} replicates, {bootstrap} resamples where an approach "
          f"resamples, 1% noise, seed {seed}")
    out = {}
    rng = np.random.default_rng(seed)
    for k, fn in ((1, approach1), (2, approach2)):
        if k not in approaches:
            continue
        res = [fn(rng, bootstrap) for _ in range(replicates)]
        line, out[k] = summary_line(f"Approach {k}", [r[0] for r in res], [r[1] for r in res])
        print(line, flush=True)
    if 3 in approaches:
        est, cis = approach3(replicates, bootstrap, seed)
        line, out[3] = summary_line("Approach 3", est, cis)
        print(line, flush=True)
    return out
