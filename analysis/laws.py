"""Loss laws: each is its log-space prediction, its starting grid and its natural parameters.

All parameters are fitted in log space (scales as logs), and every law predicts
log L, so the fit objective is the same for all of them. Adding a law is one
`Law(...)` entry in `make_law`.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp
import numpy as np

from .errors import AnalysisError

X_COLUMNS = {"params": "N", "tokens": "D", "flops": "C"}


@dataclass(frozen=True)
class Law:
    name: str            # "chinchilla", "power", "kaplan"
    x: tuple             # table columns the law reads, e.g. ("params", "tokens")
    fitted: tuple        # names of the log-space parameters (fit coordinates)
    natural: tuple       # names of the reported parameters
    log_pred: Callable   # (theta (lanes, P), logX (n, len(x))) -> log L (lanes, n)
    to_natural: Callable  # theta (..., P) numpy -> dict name -> (...) array
    grid: np.ndarray     # (starts, P) initial points
    formula: str         # human-readable law with placeholders for the values
    # Conditioning: (intercept, slope or None, feature) triples. The optimiser works
    # with intercept' = intercept - slope * mean(log x) (or - mean(log x) when slope is
    # None), an exact linear change of variables that decorrelates intercept and
    # exponent; the objective, starts and optimum are unchanged.
    centring: tuple = ()

    def change_of_variables(self, mean_logX):
        """(T, c) with theta = z @ T.T + c, z the optimiser's coordinates."""
        P = len(self.fitted)
        T, c = np.eye(P), np.zeros(P)
        for intercept, slope, feature in self.centring:
            if slope is None:
                c[intercept] += mean_logX[feature]
            else:
                T[intercept, slope] += mean_logX[feature]
        return T, c

    @property
    def min_points(self):
        return len(self.fitted) + 1

    def predict(self, theta, logX):
        """Loss (not log) at one parameter vector, numpy in and out."""
        import jax
        with jax.enable_x64(True):
            return np.exp(np.asarray(_jitted(self.log_pred)(jnp.asarray(theta)[None],
                                                            jnp.asarray(logX))[0]))


@functools.lru_cache(maxsize=None)
def _jitted(log_pred):
    """One compiled program per shape (op-by-op dispatch cost tens of small compilations),
    from the program store when one is kept (analysis/programs.py)."""
    from . import programs
    return functools.partial(programs.call, "laws.log_pred", (log_pred,), log_pred)


def _product(*axes):
    return np.array(list(itertools.product(*axes)), dtype=np.float64)


def _col(theta, i):
    return theta[:, i:i + 1]


def _chinchilla_log_pred(theta, logX):
    # log L = logsumexp(a - alpha log N, b - beta log D, e); no max-shift needed in
    # float64 for these ranges, and an overflowing trial step is simply rejected.
    a, b, e, alpha, beta = (_col(theta, i) for i in range(5))
    return jnp.log(jnp.exp(a - alpha * logX[None, :, 0]) + jnp.exp(b - beta * logX[None, :, 1])
                   + jnp.exp(e))


def _power_log_pred(theta, logX):
    a, e, alpha = (_col(theta, i) for i in range(3))
    return jnp.log(jnp.exp(a - alpha * logX[None, :, 0]) + jnp.exp(e))


def _kaplan_log_pred(theta, logX):
    # log L = alpha_D * log[(N_c/N)^(alpha_N/alpha_D) + D_c/D], with ratio = alpha_N/alpha_D
    # fitted directly so that alpha_D -> 0 is not a singularity.
    nc, dc, alpha_d, ratio = (_col(theta, i) for i in range(4))
    return alpha_d * jnp.log(jnp.exp(ratio * (nc - logX[None, :, 0]))
                             + jnp.exp(dc - logX[None, :, 1]))


def _pure_power_log_pred(theta, logX):
    c, alpha = _col(theta, 0), _col(theta, 1)
    return alpha * (c - logX[None, :, 0])


def make_law(name: str, x: str | None = None, base: dict | None = None) -> Law:
    """The law called `name`; `x` picks the variable of one-variable laws; `base` fixes the
    base law of the data-constrained law."""
    if x is not None and x not in X_COLUMNS:
        raise AnalysisError(f"unknown --x '{x}'; use params, tokens or flops")
    if name == "chinchilla":
        if x is not None:
            raise AnalysisError("--x does not apply to --law chinchilla (it uses params and tokens)")
        grid = _product(np.arange(0, 26, 5.0), np.arange(0, 26, 5.0), np.arange(-1, 1.01, 0.5),
                        np.arange(0, 2.01, 0.5), np.arange(0, 2.01, 0.5))  # Hoffmann et al.
        return Law("chinchilla", ("params", "tokens"), ("a", "b", "e", "alpha", "beta"),
                   ("E", "A", "B", "alpha", "beta"), _chinchilla_log_pred,
                   lambda t: dict(E=np.exp(t[..., 2]), A=np.exp(t[..., 0]), B=np.exp(t[..., 1]),
                                  alpha=t[..., 3], beta=t[..., 4]),
                   grid, "L(N, D) = {E} + {A} / N^{alpha} + {B} / D^{beta}",
                   ((0, 3, 0), (1, 4, 1)))
    if name == "power":
        x = x or "params"
        v = X_COLUMNS[x]
        grid = _product(np.arange(0, 26, 2.5), np.arange(-1, 1.01, 0.5), np.arange(0, 2.01, 0.25))
        return Law("power", (x,), ("a", "e", "alpha"), ("E", "A", "alpha"), _power_log_pred,
                   lambda t: dict(E=np.exp(t[..., 1]), A=np.exp(t[..., 0]), alpha=t[..., 2]),
                   grid, f"L({v}) = {{E}} + {{A}} / {v}^{{alpha}}", ((0, 2, 0),))
    if name == "kaplan":
        if x is None:
            grid = _product(np.arange(10, 41, 5.0), np.arange(10, 41, 5.0),
                            [0.05, 0.1, 0.2, 0.4], [0.5, 0.8, 1.25, 2.0])
            return Law("kaplan", ("params", "tokens"), ("log_N_c", "log_D_c", "alpha_D", "ratio"),
                       ("N_c", "D_c", "alpha_N", "alpha_D"), _kaplan_log_pred,
                       lambda t: dict(N_c=np.exp(t[..., 0]), D_c=np.exp(t[..., 1]),
                                      alpha_N=t[..., 3] * t[..., 2], alpha_D=t[..., 2]),
                       grid, "L(N, D) = [({N_c} / N)^({alpha_N} / {alpha_D}) + {D_c} / D]^{alpha_D}",
                       ((0, None, 0), (1, None, 1)))
        v = X_COLUMNS[x]
        grid = _product(np.arange(10, 61, 5.0), [0.02, 0.05, 0.1, 0.2, 0.4, 0.8])
        return Law("kaplan", (x,), (f"log_{v}_c", f"alpha_{v}"), (f"{v}_c", f"alpha_{v}"),
                   _pure_power_log_pred,
                   lambda t: {f"{v}_c": np.exp(t[..., 0]), f"alpha_{v}": t[..., 1]},
                   grid, f"L({v}) = ({{{v}_c}} / {v})^{{alpha_{v}}}", ((0, None, 0),))
    if name == "schedule":
        from . import schedule_law  # fitted to curve points: analysis/schedule_fit.py
        return schedule_law.make()
    if name == "data-constrained":
        if x is not None:
            raise AnalysisError("--x does not apply to --law data-constrained")
        from . import constrained
        return constrained.make(base)
    raise AnalysisError(f"unknown law '{name}'; use chinchilla, power, kaplan, "
                        f"data-constrained or schedule")
