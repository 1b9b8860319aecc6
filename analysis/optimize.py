"""Multi-start L-BFGS with every start advanced together.

Each start is one lane of a (lanes, params) array. One iteration costs one
batched objective-and-gradient evaluation for all lanes: every lane tries one
step along its L-BFGS direction; lanes whose step fails the Armijo test shrink
it (quadratic interpolation) and retry on the next iteration, so no lane makes
the whole batch wait in an inner line-search loop. Finished lanes are frozen,
and between chunks of iterations the unfinished lanes are gathered into a
smaller batch, so the few slow starts do not cost as much as all of them.
After ABANDON_AFTER iterations, lanes are also abandoned between chunks when
they are clearly worse than the best lane of their group (all lanes, or one
bootstrap resample) and, even at ten times their rate of progress over the last
chunk, could not reach it before the iteration cap: starts crawling across a
plateau towards a worse optimum were most of the work (a tenth of the grid ran
to the cap). It is a heuristic: a start idling on a plateau can still break
away later. On 40 synthetic Chinchilla fits (10 to 250 points, 0.2% to 8%
noise, degenerate ones among them) the best objective was the same as without
abandoning (within 1e-8 relative) in 39; in the 40th, a degenerate fit whose B
and beta run away, 3e-5 higher, at the same degenerate solution. Never in a
group that fits exactly (objective ~0, noise-free data): there the best is an
asymptote rather than a minimum (a term running to zero), how far a start gets
along it is what shows a parameter at its bound, and starts that idled for a
hundred iterations outrun the others.

Runs inside `float64()`: the fits need float64, and the analysis must not flip
JAX's process-wide flag under other users of JAX in the same process.
"""

from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import programs

ARMIJO = 1e-4          # sufficient-decrease constant
MIN_STEP = 1e-20       # a lane whose trial step shrinks below this has stopped
CHUNK = 25             # iterations between host checks (compaction points)
BUCKETS = (64, 512, 1024, 2048, 4096)  # batch sizes the unfinished lanes are gathered into
SHRINK = 2 / 3         # ... when the bucket is at most this fraction of the current batch
ABANDON_RTOL = 1e-3    # only lanes this far (relative) above their group's best are abandoned
ABANDON_MARGIN = 10.0  # ... and only if even this many times their recent progress falls short
ABANDON_AFTER = 100    # iterations before any lane is abandoned
EXACT_FIT = 1e-10      # a group whose best objective is below this fits exactly: none abandoned


@contextlib.contextmanager
def float64():
    """Scoped float64 for JAX: thread-local, leaves the global flag untouched."""
    with jax.enable_x64(True):
        yield


class Result(NamedTuple):
    x: np.ndarray           # (lanes, params) final points
    f: np.ndarray           # (lanes,) final objective values
    iterations: np.ndarray  # (lanes,) iterations each lane ran
    converged: np.ndarray   # (lanes,) stopped by a convergence test, not the cap
    evaluations: int        # lane-evaluations of objective and gradient, in all
    abandoned: np.ndarray   # (lanes,) stopped as unable to reach their group's best

    @property
    def capped(self):
        """Lanes that ran to max_iter (neither converged nor abandoned)."""
        return ~self.converged & ~self.abandoned


def minimize(value_and_grad: Callable, starts, args=(), *, max_iter: int = 1000,
             memory: int = 10, gtol: float = 1e-10, ftol: float = 1e-10,
             abandon: bool = True) -> Result:
    """Minimise from every row of `starts` (shape (lanes, params)).

    `value_and_grad(x, *args)` takes all lanes at once, x of shape (lanes,
    params), and returns the objective (lanes,) and its gradient (lanes,
    params); lanes must not interact. `args` may hold per-lane arrays only if
    their first axis is the lane axis and they are passed through `lane_args`
    of `minimize_lanes`. A lane stops when its largest gradient component is
    below `gtol`, when three accepted steps in a row lower f by a relative
    amount below `ftol`, when its step underflows, or at `max_iter`; with
    `abandon`, also when it cannot reach the best lane (see the module note).
    """
    return minimize_lanes(value_and_grad, starts, (), args, max_iter=max_iter,
                          memory=memory, gtol=gtol, ftol=ftol, abandon=abandon)


def minimize_lanes(value_and_grad: Callable, starts, lane_args=(), shared_args=(), *,
                   groups=None, max_iter: int = 1000, memory: int = 10, gtol: float = 1e-10,
                   ftol: float = 1e-10, abandon: bool = True,
                   abandon_after: int = ABANDON_AFTER) -> Result:
    """`minimize` where each lane also has its own rows of `lane_args`.

    The objective is called as `value_and_grad(x, *lane_args, *shared_args)`
    with lane_args gathered to the lanes in the current batch (the bootstrap
    gives every lane its own resampling weights this way). `groups` (lanes,)
    labels lanes that minimise the same objective (one bootstrap resample):
    a lane is only abandoned for being worse than the best of its own group, and
    not before `abandon_after` iterations.
    """
    with float64():
        starts = np.asarray(starts, dtype=np.float64)
        lane_args = tuple(np.asarray(a, dtype=np.float64) for a in lane_args)
        shared = tuple(jnp.asarray(a, dtype=jnp.float64) for a in shared_args)
        n_lanes = starts.shape[0]
        opts = (memory, float(gtol), float(ftol), int(max_iter))
        group = np.zeros(n_lanes, np.int64) if groups is None else \
            np.unique(np.asarray(groups), return_inverse=True)[1].ravel()

        state = _init(value_and_grad, jnp.asarray(starts), lane_args, shared, opts)
        lanes = np.arange(n_lanes)          # which original lane each batch row holds
        real = np.ones(n_lanes, bool)       # padding rows are not real lanes
        out = dict(x=np.empty_like(starts), f=np.empty(n_lanes),
                   iters=np.zeros(n_lanes, np.int64), converged=np.zeros(n_lanes, bool))
        gone = np.zeros(n_lanes, bool)      # abandoned
        f_now = _finite(np.asarray(state["f"]))  # every lane's latest objective (host copy)
        evaluations = n_lanes
        batch_lane_args = tuple(jnp.asarray(a) for a in lane_args)
        while True:
            f_before = f_now[lanes]
            state = _chunk(value_and_grad, state, batch_lane_args, shared, opts, CHUNK,
                           ~gone[lanes])
            evaluations += int(state["evals"]) * int(real.sum())
            active = np.asarray(state["active"]) & real & ~gone[lanes]
            f_now[lanes[real]] = _finite(np.asarray(state["f"]))[real]
            if abandon and active.any():
                best = np.full(group.max() + 1, np.inf)
                np.minimum.at(best, group, f_now)
                iters = np.asarray(state["iters"])
                hopeless = active & (iters >= abandon_after) & _hopeless(
                    f_before, f_now[lanes], best[group[lanes]], (max_iter - iters) / CHUNK)
                gone[lanes[hopeless]] = True
                active &= ~hopeless
            if not active.any():
                break
            # Few batch sizes, since each new size costs a compilation.
            fits = [b for b in BUCKETS if active.sum() <= b <= len(lanes) * SHRINK]
            if fits:
                _write_back(state, lanes, real, out)
                state, lanes, real = _repack(state, lanes, active, min(fits))
                batch_lane_args = tuple(jnp.asarray(a[lanes]) for a in lane_args)
        _write_back(state, lanes, real, out)
        return Result(out["x"], out["f"], out["iters"], out["converged"], evaluations, gone)


def _repack(state, lanes, active, new_size):
    """The active lanes in a batch of `new_size` rows; padding rows repeat the first active
    lane and are not real. Returns (state, which lane each row holds, which rows are real)."""
    keep = np.flatnonzero(active)
    rows = np.concatenate([keep, np.full(new_size - len(keep), keep[0])])
    real = np.arange(new_size) < len(keep)
    state = _take(state, rows)
    state["active"] = state["active"] & real
    return state, lanes[rows], real


def _finite(f):
    return np.where(np.isfinite(f), f, np.inf)


def _hopeless(f_before, f_after, best, chunks_left):
    """Lanes clearly above their group's best that could not reach it in the iterations
    left even at ABANDON_MARGIN times the progress of their last chunk."""
    gap = f_after - best
    with np.errstate(invalid="ignore"):  # inf - inf for lanes that never had a finite f
        reach = ABANDON_MARGIN * (f_before - f_after) * chunks_left
        return (best > EXACT_FIT) & (gap > ABANDON_RTOL * best) & (reach < gap)


def _take(state, rows):
    """Batch rows `rows` of a state, in numpy: on the host a gather costs less than
    tracing and compiling one per pair of batch sizes."""
    return {k: (np.asarray(v)[rows] if np.ndim(v) else v) for k, v in state.items()}


def _write_back(state, lanes, real, out):
    for k, v in out.items():
        v[lanes[real]] = np.asarray(state[k])[real]


def _direction(g, s_mem, y_mem, rho, newest, n_stored, memory):
    """L-BFGS two-loop recursion for every lane; empty slots have rho = 0."""
    # Memory slots in order newest to oldest, per lane: (memory, lanes, ...).
    order = (newest[None, :] - jnp.arange(memory)[:, None]) % memory
    s_seq = jnp.take_along_axis(s_mem, order.T[:, :, None], axis=1).transpose(1, 0, 2)
    y_seq = jnp.take_along_axis(y_mem, order.T[:, :, None], axis=1).transpose(1, 0, 2)
    r_seq = jnp.take_along_axis(rho, order.T, axis=1).T

    def back(q, syr):
        s, y, r = syr
        a = r * jnp.sum(s * q, axis=1)
        return q - a[:, None] * y, a

    q, alphas = jax.lax.scan(back, g, (s_seq, y_seq, r_seq))
    s_new, y_new = s_seq[0], y_seq[0]
    yy = jnp.sum(y_new * y_new, axis=1)
    gnorm = jnp.sqrt(jnp.sum(g * g, axis=1))
    # Without memory, a first step of length at most 1 (in log-space units).
    gamma = jnp.where(n_stored > 0, jnp.sum(s_new * y_new, axis=1) / jnp.where(yy > 0, yy, 1.0),
                      1.0 / jnp.maximum(gnorm, 1.0))

    def forward(z, syra):
        s, y, r, a = syra
        b = r * jnp.sum(y * z, axis=1)
        return z + (a - b)[:, None] * s, None

    z, _ = jax.lax.scan(forward, gamma[:, None] * q, (s_seq, y_seq, r_seq, alphas), reverse=True)
    return -z


def _init_impl(value_and_grad, x0, lane_args, shared, opts):
    memory, gtol = opts[:2]
    f0, g0 = value_and_grad(x0, *lane_args, *shared)
    n, p = x0.shape
    small = jnp.max(jnp.abs(g0), axis=1) <= gtol
    zeros = jnp.zeros((n, memory, p), x0.dtype)
    return dict(
        x=x0, f=f0, g=g0, s_mem=zeros, y_mem=zeros,
        rho=jnp.zeros((n, memory), x0.dtype),
        newest=jnp.zeros((n,), jnp.int32), n_stored=jnp.zeros((n,), jnp.int32),
        d=jnp.zeros_like(x0), slope=jnp.zeros((n,), x0.dtype),
        t=jnp.ones((n,), x0.dtype), need_dir=jnp.ones((n,), bool),
        stalls=jnp.zeros((n,), jnp.int32), iters=jnp.zeros((n,), jnp.int32),
        active=jnp.isfinite(f0) & ~small, converged=small | ~jnp.isfinite(f0),
        evals=jnp.array(0, jnp.int32),
    )


def _chunk_impl(value_and_grad, st, lane_args, shared, opts, steps, alive):
    memory, gtol, ftol, max_iter = opts

    def body(_, st):
        x, f, g, active = st["x"], st["f"], st["g"], st["active"]
        new_d = _direction(g, st["s_mem"], st["y_mem"], st["rho"], st["newest"],
                           st["n_stored"], memory)
        new_slope = jnp.sum(g * new_d, axis=1)
        # Not a descent direction (or not finite): steepest descent, memory cleared.
        bad = ~(new_slope < 0) | ~jnp.all(jnp.isfinite(new_d), axis=1)
        new_d = jnp.where(bad[:, None], -g / jnp.maximum(
            jnp.sqrt(jnp.sum(g * g, axis=1)), 1.0)[:, None], new_d)
        new_slope = jnp.sum(g * new_d, axis=1)
        fresh = st["need_dir"]
        d = jnp.where(fresh[:, None], new_d, st["d"])
        slope = jnp.where(fresh, new_slope, st["slope"])
        t = jnp.where(fresh, 1.0, st["t"])
        clear = fresh & bad

        x_try = x + t[:, None] * d
        f_try, g_try = value_and_grad(x_try, *lane_args, *shared)
        ok = active & jnp.isfinite(f_try) & jnp.all(jnp.isfinite(g_try), axis=1) & (
            f_try <= f + ARMIJO * t * slope)
        # Rejected: next trial at the minimiser of the quadratic through f, slope, f_try.
        denom = 2.0 * (f_try - f - slope * t)
        t_quad = jnp.where(jnp.isfinite(f_try) & (denom > 0), -slope * t * t / denom, 0.1 * t)
        t_next = jnp.clip(t_quad, 0.1 * t, 0.5 * t)

        s = x_try - x
        y = g_try - g
        sy = jnp.sum(s * y, axis=1)
        store = ok & (sy > 1e-10 * jnp.sqrt(jnp.sum(s * s, 1) * jnp.sum(y * y, 1)))
        keep = ~clear
        newest = jnp.where(store, (st["newest"] + 1) % memory, st["newest"])
        slot = (jnp.arange(memory)[None, :] == newest[:, None]) & store[:, None]
        s_mem = jnp.where(slot[:, :, None], s[:, None, :], st["s_mem"] * keep[:, None, None])
        y_mem = jnp.where(slot[:, :, None], y[:, None, :], st["y_mem"] * keep[:, None, None])
        rho = jnp.where(slot, (1.0 / jnp.where(sy == 0, 1.0, sy))[:, None],
                        st["rho"] * keep[:, None])
        n_stored = jnp.minimum(jnp.where(clear, 0, st["n_stored"]) + store, memory)

        f_new = jnp.where(ok, f_try, f)
        rel_drop = (f - f_new) / jnp.maximum(jnp.maximum(jnp.abs(f), jnp.abs(f_new)), 1e-300)
        stalls = jnp.where(ok, jnp.where(rel_drop <= ftol, st["stalls"] + 1, 0), st["stalls"])
        g_new = jnp.where(ok[:, None], g_try, g)
        small_grad = jnp.max(jnp.abs(g_new), axis=1) <= gtol
        step_gone = ~ok & (t_next * jnp.max(jnp.abs(d), axis=1) < MIN_STEP * (
            1.0 + jnp.max(jnp.abs(x), axis=1)))
        stop = active & (small_grad | (stalls >= 3) | step_gone)
        iters = st["iters"] + active
        return dict(
            x=jnp.where(ok[:, None], x_try, x), f=f_new, g=g_new,
            s_mem=s_mem, y_mem=y_mem, rho=rho, newest=newest, n_stored=n_stored,
            d=d, slope=slope, t=jnp.where(ok, 1.0, t_next), need_dir=ok | ~active,
            stalls=stalls, iters=iters,
            active=active & ~stop & (iters < max_iter), converged=st["converged"] | stop,
            evals=st["evals"] + 1)

    st = dict(st, evals=jnp.array(0, jnp.int32), active=st["active"] & alive)
    return jax.lax.fori_loop(0, steps, body, st)


def _init(value_and_grad, x0, lane_args, shared, opts):
    return programs.call("optimize.init", (value_and_grad, opts),
                         lambda *a: _init_impl(value_and_grad, *a, opts), x0, lane_args, shared)


def _chunk(value_and_grad, st, lane_args, shared, opts, steps, alive):
    def run(st, lane_args, shared, alive):
        return _chunk_impl(value_and_grad, st, lane_args, shared, opts, steps, alive)
    return programs.call("optimize.chunk", (value_and_grad, opts, steps), run,
                         st, lane_args, shared, alive)
