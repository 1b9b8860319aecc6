"""Compute-optimal allocation for the Chinchilla and Kaplan laws under a cost model C = k N^p D.

Minimising E + A/N^alpha + B/D^beta subject to k N^p D = C gives
N_opt = G (C/k)^a and D_opt = C / (k N_opt^p), with a = beta/(alpha + p beta),
b = 1 - p a = alpha/(alpha + p beta), G = (alpha A / (p beta B))^(1/(alpha + p beta)).
With k = 6, p = 1 (C = 6ND) this is Hoffmann et al.'s allocation.

Kaplan et al.'s L(N, D) = [(N_c/N)^r + D_c/D]^alpha_D, r = alpha_N/alpha_D, is smallest where
the two terms inside the bracket stand as p : r (setting the derivative in log N to zero), so
N_opt = G (C/k)^a with a = 1/(p + r) = alpha_D/(p alpha_D + alpha_N), b = 1 - p a and
G = (r N_c^r / (p D_c))^a.
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
    return _entries(float(a), float(b), float(G), reference_flops,
                    lambda c: optimum(params, c, cost))


def chinchilla_samples(samples, reference_flops, cost=SIX_ND):
    """The same derived quantities for every bootstrap sample (flat names)."""
    a, b, G = exponents(samples["alpha"], samples["beta"], samples["A"], samples["B"], cost[1])
    return _sample_entries(a, b, G, reference_flops, lambda c: optimum(samples, c, cost))


def _entries(a, b, G, reference_flops, optimum_at):
    at = {}
    for c in reference_flops:
        n, d, loss = optimum_at(c)
        at[_key(c)] = dict(flops=float(c), N_opt=float(n), D_opt=float(d),
                           tokens_per_param=float(d / n), loss_opt=float(loss))
    return dict(a=a, b=b, G=G, reference_flops=list(map(float, reference_flops)),
                compute_optimal=at)


def _sample_entries(a, b, G, reference_flops, optimum_at):
    out = dict(a=a, b=b, G=G)
    for c in reference_flops:
        n, d, loss = optimum_at(c)
        k = _key(c)
        out[f"N_opt@{k}"] = n
        out[f"D_opt@{k}"] = d
        out[f"tokens_per_param@{k}"] = d / n
        out[f"loss_opt@{k}"] = loss
    return out


def kaplan_exponents(alpha_N, alpha_D, N_c, D_c, p=1.0):
    alpha_N, alpha_D, N_c, D_c = (np.asarray(v, float) for v in (alpha_N, alpha_D, N_c, D_c))
    r = alpha_N / alpha_D
    a = 1.0 / (p + r)
    # G in logs: N_c^r overflows float64 for the large N_c a flat bootstrap resample can reach.
    G = np.exp(a * (np.log(r / p) + r * np.log(N_c) - np.log(D_c)))
    return a, 1.0 - p * a, G


def kaplan_optimum(params, flops, cost=SIX_ND):
    """N_opt, D_opt and the loss there under Kaplan's law, at compute `flops`."""
    k, p = cost
    a, _, G = kaplan_exponents(params["alpha_N"], params["alpha_D"], params["N_c"],
                               params["D_c"], p)
    ck = np.asarray(flops, float) / k
    n_opt = G * ck ** a
    d_opt = ck / n_opt ** p
    ratio = params["alpha_N"] / params["alpha_D"]
    loss = ((params["N_c"] / n_opt) ** ratio + params["D_c"] / d_opt) ** params["alpha_D"]
    return n_opt, d_opt, loss


def kaplan(params, reference_flops, cost=SIX_ND):
    """fit.json entries of a two-variable Kaplan law, as `chinchilla` gives them."""
    a, b, G = kaplan_exponents(params["alpha_N"], params["alpha_D"], params["N_c"],
                               params["D_c"], cost[1])
    return _entries(float(a), float(b), float(G), reference_flops,
                    lambda c: kaplan_optimum(params, c, cost))


def kaplan_samples(samples, reference_flops, cost=SIX_ND):
    a, b, G = kaplan_exponents(samples["alpha_N"], samples["alpha_D"], samples["N_c"],
                               samples["D_c"], cost[1])
    return _sample_entries(a, b, G, reference_flops, lambda c: kaplan_optimum(samples, c, cost))


def optimum_for(name):
    """The optimum function (params, flops, cost) -> (N_opt, D_opt, loss) of a law's name."""
    return kaplan_optimum if name == "kaplan" else optimum


def for_law(law):
    """(fit.json entries, the same per bootstrap sample) of a law with an allocation, else None:
    Chinchilla, and Kaplan in both N and D."""
    if law.name == "chinchilla":
        return chinchilla, chinchilla_samples
    if law.name == "kaplan" and set(law.natural) >= {"alpha_N", "alpha_D"}:
        return kaplan, kaplan_samples
    return None
