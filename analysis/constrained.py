"""The data-constrained law of Muennighoff et al. (2023), "Scaling Data-Constrained LMs".

With U_D unique tokens seen D / U_D times, repeated tokens are worth less:
    D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)),   R_D = D / U_D - 1
where U_D = min(D, U) is the unique data a run has *seen* (U = the split's unique tokens):
a run shorter than one epoch repeats nothing, so D' = D for it (paper, eq. 5 and its
definitions). Parameters beyond those compute-optimal for U_D (U_N = min(N_opt(U_D), N),
from the base law's 6ND allocation) are worth less:
    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),   R_N = N / U_N - 1
    L = E + A / N'^alpha + B / D'^beta.
R_D* and R_N* are fitted (in log space), with the base law (E, A, B, alpha, beta)
either fitted jointly or given (e.g. from a single-epoch fit.json).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

from .errors import AnalysisError

BASE = ("E", "A", "B", "alpha", "beta")
FLAT_FACTOR = 4.0    # R* scaled by this (and its inverse) ...
FLAT_RTOL = 1e-3     # ... must change the objective by more than this fraction to count
R_STARTS = np.log([2.0, 10.0, 50.0])


def _effective(u, r, log_r_star):
    """U + U R* (1 - exp(-R / R*)), from log U, R and log R*."""
    r_star = jnp.exp(log_r_star)
    return jnp.exp(u) * (1.0 + r_star * -jnp.expm1(-r / r_star))


def _log_loss(a, b, e, alpha, beta, log_rd, log_rn, logX):
    logN, logD = logX[None, :, 0], logX[None, :, 1]
    logU = jnp.minimum(logX[None, :, 2], logD)  # U_D: unique tokens seen, at most D
    # U_N: the compute-optimal size for U_D tokens under the base law (6ND allocation):
    # N_opt = G (G D)^(beta/alpha), G = (alpha A / (beta B))^(1 / (alpha + beta)).
    log_g = (jnp.log(alpha) + a - jnp.log(beta) - b) / (alpha + beta)
    log_un = jnp.minimum(log_g + (beta / alpha) * (log_g + logU), logN)
    r_d = jnp.exp(logD - logU) - 1.0  # >= 0 since U_D <= D
    r_n = jnp.maximum(jnp.exp(logN - log_un) - 1.0, 0.0)
    d_eff = _effective(logU, r_d, log_rd)
    n_eff = _effective(log_un, r_n, log_rn)
    return jnp.log(jnp.exp(a) * n_eff ** -alpha + jnp.exp(b) * d_eff ** -beta + jnp.exp(e))


def _col(theta, i):
    return theta[:, i:i + 1]


def make(base=None):
    """The Law; `base` (dict E, A, B, alpha, beta) fixes the base law, else it is fitted."""
    from .laws import Law
    formula = ("L = {E} + {A} / N'^{alpha} + {B} / D'^{beta}, D' = U_D + U_D {R_D_star} "
               "(1 - exp(-R_D / {R_D_star})), N' likewise with U_N, {R_N_star}")
    if base is None:
        def log_pred(theta, logX):
            a, b, e, alpha, beta, rd, rn = (_col(theta, i) for i in range(7))
            return _log_loss(a, b, e, alpha, beta, rd, rn, logX)

        # Coarser than the Chinchilla grid (7 parameters): 972 starts.
        grid = np.array(list(itertools.product([0.0, 10.0, 20.0], [0.0, 10.0, 20.0],
                                               [-1.0, 0.0, 1.0], [0.25, 0.6], [0.25, 0.6],
                                               R_STARTS, R_STARTS)))
        return Law("data-constrained", ("params", "tokens", "unique_tokens"),
                   ("a", "b", "e", "alpha", "beta", "log_R_D_star", "log_R_N_star"),
                   BASE + ("R_D_star", "R_N_star"), log_pred,
                   lambda t: dict(E=np.exp(t[..., 2]), A=np.exp(t[..., 0]), B=np.exp(t[..., 1]),
                                  alpha=t[..., 3], beta=t[..., 4], R_D_star=np.exp(t[..., 5]),
                                  R_N_star=np.exp(t[..., 6])),
                   grid, formula, ((0, 3, 0), (1, 4, 1)))
    missing = [k for k in BASE if k not in base]
    if missing:
        raise AnalysisError(f"--base-law lacks {', '.join(missing)}; give a chinchilla fit.json")
    fixed = (np.log(base["A"]), np.log(base["B"]), np.log(base["E"]), base["alpha"], base["beta"])

    def log_pred(theta, logX):
        return _log_loss(*fixed, _col(theta, 0), _col(theta, 1), logX)

    grid = np.array(list(itertools.product(R_STARTS, R_STARTS)))
    given = formula.format(**{k: f"{base[k]:.4g}" for k in BASE},
                           R_D_star="{R_D_star}", R_N_star="{R_N_star}")
    return Law("data-constrained", ("params", "tokens", "unique_tokens"),
               ("log_R_D_star", "log_R_N_star"), ("R_D_star", "R_N_star"), log_pred,
               lambda t: dict(R_D_star=np.exp(t[..., 0]), R_N_star=np.exp(t[..., 1])),
               grid, given)


def flatness_warnings(law, theta, objective_at):
    """Warn for R_D* / R_N* when scaling it by FLAT_FACTOR either way barely moves the
    objective: the runs then do not repeat data (or outsize U_N) enough to pin it down."""
    out = []
    f0 = objective_at(theta)
    for name in ("log_R_D_star", "log_R_N_star"):
        i = law.fitted.index(name)
        changes = []
        for step in (np.log(FLAT_FACTOR), -np.log(FLAT_FACTOR)):
            t = np.array(theta, float)
            t[i] += step
            changes.append(objective_at(t) - f0)
        if max(changes) <= FLAT_RTOL * abs(f0) + 1e-12:
            what = "data" if name == "log_R_D_star" else "parameters"
            out.append(f"the objective is flat in {name[4:]}: scaling it by {FLAT_FACTOR:g}x "
                       f"either way changes the fit by < {FLAT_RTOL:.0e}; the runs do not repeat "
                       f"{what} enough to identify it (add multi-epoch runs)")
    return out
