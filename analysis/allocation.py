"""Compute-optimal allocation for the Chinchilla law with C = 6 N D.

Minimising E + A/N^alpha + B/D^beta subject to 6 N D = C gives
N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b with a = beta/(alpha+beta),
b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)).
"""

from __future__ import annotations

import numpy as np


def exponents(alpha, beta, A, B):
    alpha, beta, A, B = (np.asarray(v, float) for v in (alpha, beta, A, B))
    a = beta / (alpha + beta)
    b = alpha / (alpha + beta)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    return a, b, G


def optimum(params, flops):
    """N_opt, D_opt and the loss there, at compute `flops` (arrays broadcast)."""
    a, b, G = exponents(params["alpha"], params["beta"], params["A"], params["B"])
    c6 = np.asarray(flops, float) / 6.0
    n_opt = G * c6 ** a
    d_opt = c6 ** b / G
    loss = params["E"] + params["A"] / n_opt ** params["alpha"] + params["B"] / d_opt ** params["beta"]
    return n_opt, d_opt, loss


def _key(c):
    return f"{c:.3g}"


def chinchilla(params, reference_flops):
    """fit.json entries: a, b, G and the optimum at each reference compute."""
    a, b, G = exponents(params["alpha"], params["beta"], params["A"], params["B"])
    at = {}
    for c in reference_flops:
        n, d, loss = optimum(params, c)
        at[_key(c)] = dict(flops=float(c), N_opt=float(n), D_opt=float(d),
                           tokens_per_param=float(d / n), loss_opt=float(loss))
    return dict(a=float(a), b=float(b), G=float(G), reference_flops=list(map(float, reference_flops)),
                compute_optimal=at)


def chinchilla_samples(samples, reference_flops):
    """The same derived quantities for every bootstrap sample (flat names)."""
    a, b, G = exponents(samples["alpha"], samples["beta"], samples["A"], samples["B"])
    out = dict(a=a, b=b, G=G)
    for c in reference_flops:
        n, d, loss = optimum(samples, c)
        k = _key(c)
        out[f"N_opt@{k}"] = n
        out[f"D_opt@{k}"] = d
        out[f"tokens_per_param@{k}"] = d / n
        out[f"loss_opt@{k}"] = loss
    return out
