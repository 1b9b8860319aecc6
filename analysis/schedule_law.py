"""A schedule-aware loss law: the loss after any step of any LR schedule, joined with size.

    L(N, s) = E + A / N^alpha + B / S1(s)^beta - C * S2(s)

S1 and S2 are the forward and annealing areas of the schedule after s steps
(analysis/schedules.py; Tissue et al. 2024, "Scaling Law with Learning Rate Annealing").
B / S1^beta plays the part of Chinchilla's B / D^beta: at one batch size and peak LR the
forward area is proportional to the tokens seen (minus what the decay took away), and the
annealing term is the drop a decaying LR buys on top. The law is fitted to every point of every
curve (analysis/schedule_fit.py); the final loss of a run nobody trained follows from its
schedule's areas at its last step.

The annealing area uses a fixed momentum (MOMENTUM), not a fitted one: it is a property of the
areas, chosen once, so every point's areas are computed before the fit. Tissue et al. use 0.999
for runs of tens of thousands of steps; for runs of 128-1024 steps a shorter memory fits better.
On the schedule sweep's constant and cosine runs (configs/sweeps/schedules.py) the in-sample
objective over momenta 0.95 / 0.98 / 0.99 / 0.995 / 0.999 was lowest at 0.98
(docs/schedule-law.md has the profile); `--momentum` sets another.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .laws import Law, _col, _product
from .schedules import Schedule

MOMENTUM = 0.98
NAME = "schedule"
# X columns of the design: log N, log S1, S2 (the annealing area enters linearly).
X = ("params", "lr_area", "lr_anneal_area")


def _log_pred(theta, logX):
    # log L = log(E + A N^-alpha + B S1^-beta - C S2); a trial step that makes the argument
    # non-positive gives NaN and is rejected by the optimiser's line search.
    e, a, alpha, b, beta, c = (_col(theta, i) for i in range(6))
    inner = (jnp.exp(e) + jnp.exp(a - alpha * logX[None, :, 0])
             + jnp.exp(b - beta * logX[None, :, 1]) - jnp.exp(c) * logX[None, :, 2])
    return jnp.log(inner)


def _natural(t):
    return dict(E=np.exp(t[..., 0]), A=np.exp(t[..., 1]), alpha=t[..., 2], B=np.exp(t[..., 3]),
                beta=t[..., 4], C=np.exp(t[..., 5]))


def make() -> Law:
    """The law as a fit.Law: the same multi-start Huber fit and bootstrap as the others."""
    grid = _product([-1.0, 0.0, 0.5],          # log E
                    np.arange(0.0, 21.0, 5.0),  # log A
                    [0.25, 0.5, 1.0],           # alpha
                    [-2.0, -1.0, 0.0],          # log B  (S1 is O(0.1..10) in LR x steps)
                    [0.25, 0.5, 1.0],           # beta
                    [-4.0, -2.5, -1.0])         # log C
    return Law(NAME, X, ("e", "a", "alpha", "b", "beta", "c"),
               ("E", "A", "alpha", "B", "beta", "C"), _log_pred, _natural, grid,
               "L(N, s) = {E} + {A} / N^{alpha} + {B} / S1^{beta} - {C} S2",
               ((1, 2, 0), (3, 4, 1)))


def design_row(n_params, s1, s2):
    """The law's X for points (arrays broadcast)."""
    return np.stack(np.broadcast_arrays(np.log(n_params), np.log(s1), np.asarray(s2, float)),
                    axis=-1)


def predict(params: dict, n_params, s1, s2):
    """Loss at (N, S1, S2) for natural parameters (arrays broadcast; bootstrap samples too
    when the parameters are arrays of shape (k, 1))."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # degenerate samples
        return (params["E"] + params["A"] / np.asarray(n_params, float) ** params["alpha"]
                + params["B"] / np.asarray(s1, float) ** params["beta"]
                - params["C"] * np.asarray(s2, float))


def final_areas(schedule: Schedule, momentum: float = MOMENTUM):
    """(S1, S2) at the last step of a schedule."""
    s1, s2 = schedule.areas(momentum)
    return s1[-1], s2[-1]
