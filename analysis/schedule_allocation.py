"""Compute-optimal allocation from the schedule law's predicted final losses.

For a compute C, every model size N on a log grid gets D = C / f(N) tokens (the table's cost
model f(N) = k N^p), so T = D / tokens_per_step steps of the named schedule (cosine by default,
with the runs' peak LR, floor and warmup fraction); its final areas give the predicted final loss,
and N_opt(C) is the grid minimum refined by a parabola in log N. The exponents a and b are the
least-squares slopes of log N_opt and log D_opt against log C over the reference computes (the
law has no closed form for them). Final areas are computed exactly for ~100 run lengths and
interpolated in log T between them (they are smooth in T).
"""

from __future__ import annotations

import functools

import numpy as np

from .schedule_law import predict
from .schedules import Schedule

MIN_STEPS = 32          # shorter runs are outside what the law was fitted on
MAX_STEPS = 1_000_000   # longer ones are not tabulated (N below the grid's useful range)
GRID = np.logspace(3, 13, 601)
TABULATED = 48          # run lengths whose final areas are computed exactly


class FinalAreas:
    """Final (S1, S2) of a named schedule as a function of its length T (interpolated)."""

    def __init__(self, template: dict, momentum: float, t_max: float):
        t_max = int(min(max(t_max, MIN_STEPS * 2), MAX_STEPS))
        self.T = np.unique(np.round(np.geomspace(MIN_STEPS, t_max, TABULATED)).astype(int))
        self.s1, self.s2 = _tabulate(tuple(sorted(template.items())), float(momentum),
                                     tuple(self.T))

    def __call__(self, steps):
        logT = np.log(np.clip(steps, self.T[0], self.T[-1]))
        return (np.exp(np.interp(logT, np.log(self.T), np.log(self.s1))),
                np.interp(logT, np.log(self.T), self.s2))


@functools.lru_cache(maxsize=8)
def _tabulate(template, momentum, lengths):
    """Exact final areas for each run length (cached: the fit and its bootstrap share them)."""
    finals = [Schedule.named(total_steps=int(t), **dict(template)).areas(momentum)
              for t in lengths]
    return np.array([f[0][-1] for f in finals]), np.array([f[1][-1] for f in finals])


def optimum(params, flops, cost, tokens_per_step, areas: FinalAreas):
    """(N_opt, D_opt, loss_opt, at_edge) at one compute; params may be arrays of shape (k, 1)."""
    k, p = cost
    D = flops / (k * GRID ** p)
    steps = D / tokens_per_step
    valid = (steps >= MIN_STEPS) & (steps <= areas.T[-1])
    s1, s2 = areas(steps)
    loss = np.where(valid, predict(params, GRID, s1, s2), np.inf)
    loss = np.where(np.isfinite(loss) & (loss > 0), loss, np.inf)
    loss = np.atleast_2d(loss)
    i = np.argmin(loss, axis=1)
    ok = np.flatnonzero(valid)
    edge = (i <= ok[0]) | (i >= ok[-1]) if ok.size else np.ones_like(i, bool)
    j = np.clip(i, 1, len(GRID) - 2)
    rows = np.arange(len(i))
    y0, y1, y2 = loss[rows, j - 1], loss[rows, j], loss[rows, j + 1]
    denom = y0 - 2 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(np.isfinite(denom) & (denom > 0), 0.5 * (y0 - y2) / denom, 0.0)
    step = np.log(GRID[1]) - np.log(GRID[0])
    n_opt = np.exp(np.log(GRID[j]) + np.clip(shift, -1, 1) * step)
    d_opt = flops / (k * n_opt ** p)
    s1, s2 = areas(d_opt / tokens_per_step)
    shape = (-1, 1) if np.ndim(params["E"]) else (-1,)
    loss_opt = predict(params, n_opt.reshape(shape), s1.reshape(shape), s2.reshape(shape))
    return n_opt, d_opt, np.asarray(loss_opt).ravel(), edge


def allocation(params, reference_flops, cost, tokens_per_step, template, momentum,
               scale=1.0):
    """fit.json entries (a, b, compute_optimal, allocation_schedule) and, when `params` holds
    arrays (bootstrap samples), the same quantities per sample. `scale` turns the law's loss
    into the final evaluation's (the curve windows' offset, see schedule_fit)."""
    refs = [float(c) for c in reference_flops]
    k, p = cost
    t_max = max(refs) / (k * GRID[0] ** p) / tokens_per_step
    areas = FinalAreas(template, momentum, t_max)
    arrays = np.ndim(params["E"]) > 0
    prm = {n: np.asarray(v, float)[:, None] for n, v in params.items()} if arrays else params
    n_opts, d_opts, losses, edges = [], [], [], []
    for c in refs:
        n, d, loss, edge = optimum(prm, c, cost, tokens_per_step, areas)
        n_opts.append(n), d_opts.append(d), losses.append(loss * scale), edges.append(edge)
    logC = np.log(refs)
    n_opts, d_opts = np.array(n_opts), np.array(d_opts)  # (refs, samples)
    if len(refs) > 1:
        a = np.polyfit(logC, np.log(n_opts), 1)[0]
        b = np.polyfit(logC, np.log(d_opts), 1)[0]
    else:
        a = b = np.full(n_opts.shape[1], np.nan)
    if arrays:
        out = dict(a=a, b=b)
        for c, n, d, loss in zip(refs, n_opts, d_opts, losses):
            key = f"{c:.3g}"
            out.update({f"N_opt@{key}": n, f"D_opt@{key}": d, f"tokens_per_param@{key}": d / n,
                        f"loss_opt@{key}": loss})
        return out
    at = {f"{c:.3g}": dict(flops=c, N_opt=float(n[0]), D_opt=float(d[0]),
                           tokens_per_param=float(d[0] / n[0]), loss_opt=float(loss[0]),
                           at_grid_edge=bool(edge[0]))
          for c, n, d, loss, edge in zip(refs, n_opts, d_opts, losses, edges)}
    return dict(a=float(a[0]), b=float(b[0]), reference_flops=refs, compute_optimal=at,
                allocation_schedule=dict(template, tokens_per_step=int(tokens_per_step),
                                         momentum=momentum))
