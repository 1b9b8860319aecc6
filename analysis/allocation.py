"""Compute-optimal allocation for the Chinchilla law under a cost model C = k N^p D.

Minimising E + A/N^alpha + B/D^beta subject to k N^p D = C gives
N_opt = G (C/k)^a and D_opt = C / (k N_opt^p), with a = beta/(alpha + p beta),
b = 1 - p a = alpha/(alpha + p beta), G = (alpha A / (p beta B))^(1/(alpha + p beta)).
With k = 6, p = 1 (C = 6ND) this is Hoffmann et al.'s allocation.
"""

from __future__ import annotations

import numpy as np

SIX_ND = (6.0, 1.0)


def exponents(alpha, beta, A, B, p=1.0):
    alpha, beta, A, B = (np.asarray(v, float) for v in (alpha, beta, A, B))
    s = alpha + p * beta
    a = beta / s
    b = alpha / s
    G = (alpha * A / (p * beta * B)) ** (1.0 / s)
    return a, b, G


def optimum(params, flops, cost=SIX_ND):
    """N_opt, D_opt and the loss there, at compute `flops` (arrays broadcast)."""
    k, p = cost
    a, b, G = exponents(params["alpha"], params["beta"], params["A"], params["B"], p)
    ck = np.asarray(flops, float) / k
    n_opt = G * ck ** a
    d_opt = ck / n_opt ** p
    loss = params["E"] + params["A"] / n_opt ** params["alpha"] + params["B"] / d_opt ** params["beta"]
    return n_opt, d_opt, loss


def reference_computes(C):
    """Default computes at which to report the optimum: the power of ten nearest the
    largest compute in the table, and 10 and 100 times it (round numbers to compare)."""
    top = 10.0 ** np.round(np.log10(np.max(C)))
    return [float(top * m) for m in (1, 10, 100)]


def _key(c):
    return f"{c:.3g}"


def chinchilla(params, reference_flops, cost=SIX_ND):
    """fit.json entries: a, b, G and the optimum at each reference compute."""
    a, b, G = exponents(params["alpha"], params["beta"], params["A"], params["B"], cost[1])
    at = {}
    for c in reference_flops:
        n, d, loss = optimum(params, c, cost)
        at[_key(c)] = dict(flops=float(c), N_opt=float(n), D_opt=float(d),
                           tokens_per_param=float(d / n), loss_opt=float(loss))
    return dict(a=float(a), b=float(b), G=float(G), reference_flops=list(map(float, reference_flops)),
                compute_optimal=at)


def chinchilla_samples(samples, reference_flops, cost=SIX_ND):
    """The same derived quantities for every bootstrap sample (flat names)."""
    a, b, G = exponents(samples["alpha"], samples["beta"], samples["A"], samples["B"], cost[1])
    out = dict(a=a, b=b, G=G)
    for c in reference_flops:
        n, d, loss = optimum(samples, c, cost)
        k = _key(c)
        out[f"N_opt@{k}"] = n
        out[f"D_opt@{k}"] = d
        out[f"tokens_per_param@{k}"] = d / n
        out[f"loss_opt@{k}"] = loss
    return out
