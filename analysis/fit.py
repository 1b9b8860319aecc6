"""Fitting a law (Hoffmann et al. 2022, Approach 3) with multi-start L-BFGS and a bootstrap.

Objective: the Huber loss of log-loss residuals, summed over points (a mean
makes L-BFGS stop early), with the parameters in log space.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import allocation, programs, uncertainty
from .compute import compute_column, cost_model
from .data import Results, final_rows, to_results
from .errors import AnalysisError
from .laws import Law, _jitted, make_law
from .optimize import ABANDON_AFTER, EXACT_FIT, minimize, minimize_lanes
from .provenance import provenance
from .select import edge_warnings, lr_scan, select_best

NEAR_BEST_RTOL = 1e-6      # starts within this relative gap of the best objective "reached" it
NEAR_BEST_ATOL = 1e-12     # absolute floor for that gap (noise-free fits reach ~0)
DISAGREE_RTOL = 1e-2       # near-best optima differing by more than this are flagged
PAD = 64                   # point counts are padded to a multiple of this
BOOT_STARTS = 8            # starts per bootstrap refit: the full-data optimum + distinct optima
# Refits start at optima of the full fit, not on the grid's plateaus, so their hopeless starts
# are abandoned from the first check (25 iterations) rather than after 100: 30% fewer
# evaluations on the bench data, the same percentiles (to 1e-8) and the same resample optima.
BOOT_ABANDON_AFTER = 25
SAME_FIT = 1e-4            # optima whose log-loss predictions all agree this closely are one fit
# The grid's starts are screened: L-BFGS runs from the SCREEN_KEEP with the lowest objective
# where they start (one batched evaluation of the whole grid), and from the whole grid again
# only when what they find is not a clean optimum (see fit_grid). On 10 noisy synthetic
# Chinchilla fits (20 to 250 points, 0.2% to 8% noise, three true laws) the screened best
# objective was the full grid's within 3e-15 relative and its parameters within 2e-7; the two
# exact (noise-free) fits tried run the whole grid.
SCREEN_KEEP = 64
STARTS_NOTE = ("L-BFGS from the 64 starts of the grid with the lowest objective where they "
               "start (n_starts_screened is the grid's size), or from every start of the grid "
               "(n_starts_screened null) when what those find is an exact fit, capped, at a "
               "bound or not identified; after 100 iterations a start is "
               "abandoned (n_starts_abandoned) once its objective is over 0.1% above the best "
               "and, even at ten times its progress over the last 25 iterations, it could not "
               "reach the best within the iteration cap (never when the best fits the data "
               "exactly; --no-abandon turns off the screen and abandoning). n_starts_at_best "
               "counts the starts that reached the best objective (within 1e-6 relative), "
               "abandoned ones not among them; n_starts_not_converged those that ran to the "
               "iteration cap")


@functools.lru_cache(maxsize=None)
def objective(log_pred):
    """value_and_grad(z (lanes,P), w, y, logX, delta, T, c) for a law's log_pred,
    in the optimiser's coordinates z (theta = z T^T + c, see Law.centring).
    w and y are (n,) or per lane (lanes, n)."""
    def value_and_grad(z, w, y, logX, delta, T, c):
        pred, vjp = jax.vjp(lambda z: log_pred(z @ T.T + c, logX), z)
        r = pred - y
        ar = jnp.abs(r)
        f = jnp.sum(w * jnp.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)), axis=1)
        (g,) = vjp(w * jnp.clip(r, -delta, delta))
        return f, g
    name = programs.fingerprint(log_pred)
    value_and_grad.program_key = f"fit.objective({name})" if name else None
    return value_and_grad


def design(table: Results, law: Law, params_column="params", selection=None):
    """log X (n, k) and log L (n,) for a law, validated, with enough points to fit."""
    logX, logL = design_unchecked(table, law, params_column)
    if len(logL) < law.min_points:
        why = ""
        if selection and selection.get("n_dropped"):  # say where the other rows went
            by = "/".join(selection.get("by") or ["hyperparameter"])
            why = (f"; best-of-{by} selection kept {len(logL)} of {selection['n_rows']} rows "
                   f"(one per point of the law; --select all fits every row)")
        raise AnalysisError(f"{table.source}: {len(logL)} points are too few for --law {law.name} "
                            f"({len(law.fitted)} parameters need at least {law.min_points}){why}")
    return logX, logL


def pad_points(logX, logL, weights):
    """Pad the point axis to a multiple of PAD with zero-weight points.

    Zero weight removes them from objective and gradient; the common sizes let
    fits on different numbers of points reuse one compilation.
    """
    n = logX.shape[0]
    size = -(-n // PAD) * PAD
    extra = size - n
    logX = np.concatenate([logX, np.zeros((extra, logX.shape[1]))])
    logL = np.concatenate([logL, np.zeros(logL.shape[:-1] + (extra,))], axis=-1)
    weights = np.concatenate([weights, np.zeros(weights.shape[:-1] + (extra,))], axis=-1)
    return logX, logL, weights


def to_z(theta, T, c):
    return np.linalg.solve(T, (np.asarray(theta) - c).T).T


def fit_points(law: Law, logX, logL, huber_delta=1e-3, weights=None, starts=None,
               abandon=True):
    """Multi-start fit on arrays (from law.grid unless `starts` is given);
    returns the optimiser result and diagnostics. abandon=False runs every start to
    convergence or the iteration cap (see optimize)."""
    w = np.ones(len(logL)) if weights is None else np.asarray(weights, float)
    T, c = law.change_of_variables(logX.mean(axis=0))
    logX, logL, w = pad_points(logX, logL, w)
    grid = law.grid if starts is None else np.asarray(starts, float)
    res = minimize(objective(law.log_pred), to_z(grid, T, c), (w, logL, logX, huber_delta, T, c),
                   abandon=abandon)
    res = res._replace(x=res.x @ T.T + c)
    f = np.where(np.isfinite(res.f), res.f, np.inf)
    best = int(np.argmin(f))
    near = f <= f[best] + NEAR_BEST_RTOL * abs(f[best]) + NEAR_BEST_ATOL
    return res, best, near


def screened_starts(law: Law, logX, logL, huber_delta, keep=SCREEN_KEEP):
    """Indices of the `keep` grid starts with the lowest objective where they start."""
    from .optimize import float64
    with float64():
        pred = np.asarray(_jitted(law.log_pred)(jnp.asarray(law.grid), jnp.asarray(logX)))
    with np.errstate(invalid="ignore", over="ignore"):
        r = pred - logL
        ar = np.abs(r)
        f = np.sum(np.where(ar <= huber_delta, 0.5 * r * r,
                            huber_delta * (ar - 0.5 * huber_delta)), axis=1)
    return np.argsort(np.where(np.isfinite(f), f, np.inf), kind="stable")[:keep]


def fit_grid(law: Law, logX, logL, huber_delta=1e-3, starts=None, abandon=True, screen=True):
    """fit_points from the law's grid (or `starts`), screened (SCREEN_KEEP): returns
    (result, best, near, n_grid), n_grid the number of grid starts screened (None when every
    start ran). Every start runs when `starts` are given, with abandon=False (the exhaustive
    fit), and whenever the screened fit is not a clean optimum: an exact fit (where how far
    starts run along an asymptote is the answer), a best start at the iteration cap or at a
    bound, or near-best starts that disagree (a flat direction the whole grid should map)."""
    grid = law.grid if starts is None else np.asarray(starts, float)
    if screen and abandon and starts is None and len(grid) > SCREEN_KEEP:
        keep = screened_starts(law, logX, logL, huber_delta)
        res, best, near = fit_points(law, logX, logL, huber_delta, starts=grid[keep])
        theta = res.x[best]
        clean = (res.f[best] > EXACT_FIT and not res.capped[best]
                 and not disagreement(law, res.x[near], theta)[1]
                 and not _degenerate_warnings(law, theta, logL))
        if clean:
            return res, best, near, len(grid)
    return (*fit_points(law, logX, logL, huber_delta, starts=starts, abandon=abandon), None)


def disagreement(law: Law, x_near: np.ndarray, best_x: np.ndarray):
    """(warnings, names) for each parameter whose near-best optima spread by more than
    DISAGREE_RTOL."""
    if len(x_near) < 2:
        return [], []
    vals = law.to_natural(x_near)
    best = law.to_natural(best_x)
    out, names = [], []
    for name in law.natural:
        lo, hi = float(np.min(vals[name])), float(np.max(vals[name]))
        if hi - lo > DISAGREE_RTOL * max(abs(float(best[name])), 1e-12):
            names.append(name)
            out.append(f"non-identifiable: {len(x_near)} starts reach the best objective but "
                       f"disagree on {name} ({uncertainty.num(lo)} to {uncertainty.num(hi)}); "
                       f"the data do not pin it down")
    return out, names


PARENT_COLUMNS = ("branched_from", "parent")


def bootstrap_groups(table: Results):
    """Group index per row. Correlated rows are resampled together: WSD branches with
    their parent (a `branched_from` or `parent` column), rows of one run (training
    curves) together; otherwise every row is its own unit."""
    runs = table.text("run")
    parent_col = next((c for c in PARENT_COLUMNS if table.has(c)), None)
    if parent_col:
        parents = table.text(parent_col)
        own = runs if table.has("run") else [str(i) for i in range(len(table))]
        keys = [p or r for p, r in zip(parents, own)]
        names = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        return np.array([names[k] for k in keys]), "runs (WSD branches with their parent)"
    if table.has("run") and len(set(runs)) < len(runs):
        names = {r: i for i, r in enumerate(dict.fromkeys(runs))}
        return np.array([names[r] for r in runs]), "runs"
    return np.arange(len(table)), "rows"


def bootstrap_weights(groups, n_boot, seed):
    """(n_boot, n_rows) resampling counts: groups drawn with replacement, seeded."""
    rng = np.random.default_rng(seed)
    n_groups = groups.max() + 1
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    counts = np.zeros((n_boot, n_groups))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return counts[:, groups]


def bootstrap_starts(law: Law, res, best, max_starts=BOOT_STARTS, logX=None):
    """The full-data optimum plus the best distinct other optima of the full fit: starts
    that converged (not those stopped early, which are no optimum). With `logX`, optima
    that predict every point's log loss within SAME_FIT of a chosen one are the same fit
    in other coordinates (a term run to zero, whose scale and exponent no longer matter)
    and are skipped: a refit from them repeats that fit's."""
    f = np.where(np.isfinite(res.f) & res.converged, res.f, np.inf)
    order = np.argsort(f)
    chosen = [res.x[best]]
    predictions = [None]

    def predicted(i):
        if predictions[i] is None:
            predictions[i] = np.log(law.predict(chosen[i], logX))
        return predictions[i]
    for i in order:
        if len(chosen) >= max_starts or not np.isfinite(f[i]):
            break
        if any(np.max(np.abs(res.x[i] - c)) <= 1e-2 for c in chosen):
            continue
        if logX is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                mine = np.log(law.predict(res.x[i], logX))
            if any(np.max(np.abs(mine - predicted(j))) <= SAME_FIT for j in range(len(chosen))):
                continue
            predictions.append(mine)
        else:
            predictions.append(None)
        chosen.append(res.x[i])
    return np.array(chosen)


def bootstrap_fits(law, logX, logL, weights, starts, huber_delta, abandon=True,
                   abandon_after=ABANDON_AFTER):
    """Refit every resample from `starts`; returns (n_boot, P) best points.

    `starts` is (S, P) for every resample or (n_boot, S, P); `logL` is (n,), or
    (n_boot, n) to refit many data sets on one design at once (simulation tests).
    abandon_after: iterations before a resample's hopeless starts may be abandoned
    (BOOT_ABANDON_AFTER when the starts are optima of the full fit)."""
    n_boot = len(weights)
    starts = np.asarray(starts, float)
    if starts.ndim == 2:
        starts = np.broadcast_to(starts, (n_boot,) + starts.shape)
    n_starts = starts.shape[1]
    lane_w = np.repeat(weights, n_starts, axis=0)
    lane_x = starts.reshape(n_boot * n_starts, -1)
    T, c = law.change_of_variables(logX.mean(axis=0))
    per_lane_y = np.ndim(logL) == 2
    if per_lane_y:
        logL = np.repeat(logL, n_starts, axis=0)
    logX, logL, lane_w = pad_points(logX, logL, lane_w)
    lane_args, shared = ((lane_w, logL), (logX,)) if per_lane_y else ((lane_w,), (logL, logX))
    res = minimize_lanes(objective(law.log_pred), to_z(lane_x, T, c), lane_args,
                         (*shared, huber_delta, T, c),
                         groups=np.repeat(np.arange(n_boot), n_starts), abandon=abandon,
                         abandon_after=abandon_after)
    res = res._replace(x=res.x @ T.T + c)
    f = np.where(np.isfinite(res.f), res.f, np.inf).reshape(n_boot, n_starts)
    pick = np.argmin(f, axis=1)
    return res.x.reshape(n_boot, n_starts, -1)[np.arange(n_boot), pick]


def summarise(samples: dict):
    """stderr and 95% percentile interval for each named quantity."""
    stderr, ci95 = {}, {}
    for k, v in samples.items():
        v = np.asarray(v, float)
        ok = np.isfinite(v)
        stderr[k] = float(np.std(v[ok], ddof=1)) if ok.sum() > 1 else None
        ci95[k] = [float(q) for q in np.percentile(v[ok], [2.5, 97.5])] if ok.any() else None
    return stderr, ci95


def prepare(table, params_column="params", compute="auto", select="best", select_by=None):
    """The rows a fit uses: final rows of curves, best-of-hyperparameter selection per
    (N, D). Returns (table, cost model, selection info, LR scan)."""
    table = final_rows(to_results(table))  # a Results, a DataFrame or a path
    cost = cost_model(table, params_column, compute)
    N, D = table.numeric(params_column), table.numeric("tokens")
    scan = lr_scan(table, N, D)
    table, selection = select_best(table, [N, D], [params_column, "tokens"], mode=select,
                                   by=select_by)
    return table, cost, selection, scan


def fit_law(table: Results, law="chinchilla", x=None, *, huber_delta=1e-3, bootstrap=1000,
            seed=0, reference_flops=None, holdout_above_flops=None, holdout_above_params=None,
            params_column="params", compute="auto", select="best", select_by=None, starts=None,
            base_law=None, abandon=True, progress=None):
    """Fit `law` to a results table. Returns a JSON-ready dict (the content of fit.json).

    compute: "auto" (the flops column when present, else 6ND), "flops" or "6nd".
    select: "best" keeps the lowest-loss run per (N, D) over `select_by` columns
    (default learning_rate); "all" fits every row. starts: optional (S, P) start points
    in the law's log-space coordinates instead of its full grid. base_law: for
    law="data-constrained", a dict of E, A, B, alpha, beta (or a chinchilla fit.json path)
    to hold fixed; without it the base law is fitted jointly. abandon=False runs every
    start to convergence or the iteration cap, without the screen (slower; see STARTS_NOTE).
    progress: an optional callable told, in words, each stage as it starts (the CLI prints
    them on a terminal).
    """
    say = progress or (lambda message: None)
    if holdout_above_flops is not None and holdout_above_params is not None:
        raise AnalysisError("--holdout-above-flops and --holdout-above-params both given; "
                            "choose one extrapolation check")
    if huber_delta <= 0:
        raise AnalysisError(f"--huber-delta must be positive, got {huber_delta}")
    if bootstrap < 0:
        raise AnalysisError(f"--bootstrap must be >= 0, got {bootstrap}")
    law_obj = make_law(law, x, base=_base_params(base_law)) if isinstance(law, str) else law
    table, cost, selection, scan = prepare(table, params_column, compute, select, select_by)
    logX, logL = design(table, law_obj, params_column, selection)
    C = compute_column(table, cost)
    fit = functools.partial(_fit, table, law_obj, logX, logL, C, cost, selection, scan,
                            starts=starts, abandon=abandon, huber_delta=huber_delta,
                            bootstrap=bootstrap, seed=seed, reference_flops=reference_flops,
                            params_column=params_column, say=say)
    out = fit(screen=True)
    screened = out["n_starts_screened"] is not None
    if screened and not all(out["identified"][k] for k in law_obj.natural):
        # Where the runs do not pin the law down, which starts ran decides the ranges
        # reported: run the whole grid, as without the screen, so they are the same.
        say("not every parameter identified: again from every start of the grid")
        out = fit(screen=False)
        screened = False

    for by, threshold in (("flops", holdout_above_flops), ("params", holdout_above_params)):
        if threshold is not None:  # at most one is set (checked above)
            say(f"extrapolation check: refit without the runs above {by} {threshold:g}")
            out["extrapolation"] = extrapolation_check(table, law_obj, threshold, huber_delta,
                                                       params_column, by=by, C=C,
                                                       abandon=abandon,
                                                       bootstrap=min(bootstrap, HOLDOUT_BOOT),
                                                       seed=seed, screen=screened)
    return out


def _fit(table, law_obj, logX, logL, C, cost, selection, scan, *, starts, abandon, huber_delta,
         bootstrap, seed, reference_flops, params_column, say, screen):
    """fit_law's fit and intervals on prepared arrays (without the extrapolation check);
    screen: whether fit_grid may screen the grid's starts."""
    n_starts = len(law_obj.grid if starts is None else starts)
    say(f"fitting {law_obj.name} to {len(logL)} points from {n_starts} starts")
    res, best, near, n_grid = fit_grid(law_obj, logX, logL, huber_delta, starts=starts,
                                       abandon=abandon, screen=screen)
    theta = res.x[best]
    params = {k: float(v) for k, v in law_obj.to_natural(theta).items()}
    warnings, disagree = _fit_warnings(table, law_obj, res, best, near, logX, logL, scan,
                                       huber_delta)
    out = _describe(table, law_obj, res, best, near, n_grid, params, cost, selection, scan,
                    abandon, huber_delta, params_column, len(logL), warnings)
    cost_kp = (cost.k, cost.p)
    refs = [float(c) for c in reference_flops] if reference_flops else \
        allocation.reference_computes(C)
    allocate = allocation.for_law(law_obj)
    if allocate:
        out.update(allocate[0](params, refs, cost_kp))
        warnings += _outside_range_warnings(out["compute_optimal"], table.numeric(params_column),
                                            cost)

    def derived(thetas):
        """Natural parameters and (Chinchilla, Kaplan) allocation quantities for each row."""
        values = dict(law_obj.to_natural(thetas))
        if allocate:
            with np.errstate(all="ignore"):  # degenerate optima give inf/nan, summarised away
                values.update(allocate[1](values, refs, cost_kp))
        return values
    at_best = derived(res.x[near])
    resid = _residuals(law_obj, theta, logX, logL)
    out["residuals"] = dict(log_loss=resid.tolist(), rmse_log=float(np.sqrt(np.mean(resid ** 2))))

    boot = None
    if bootstrap:
        fields, boot = _bootstrap_intervals(table, law_obj, res, best, n_grid, logX, logL,
                                            huber_delta, bootstrap, seed, abandon, derived, say)
        out.update(fields)
    else:
        out.update(_gauss_newton_intervals(law_obj, res, near, theta, logX, logL, huber_delta,
                                           seed, derived, warnings))
    disagree = set(disagree) | _widen_to_starts(out["ci95"], at_best, uncertainty.quantities(out))
    out["identified"] = uncertainty.classify(uncertainty.quantities(out), out["stderr"], out["ci95"],
                                             disagree)
    not_ident = [k for k in law_obj.natural if not out["identified"][k]]
    if not_ident:
        warnings.append(f"not identified by these runs: {', '.join(not_ident)} (reported as "
                        f"95% ranges, not values)")
    out["_data"] = dict(law=law_obj, theta=theta, logX=logX, logL=logL, logC=np.log(C),
                        cost=cost_kp, runs=[r or lab for r, lab in zip(table.text("run"),
                                                                      table.labels)],
                        stderr=_stderr(table), boot=boot)
    return out


def _fit_warnings(table, law_obj, res, best, near, logX, logL, scan, huber_delta):
    """What a reader must know about the best fit: the table's own warnings, starts that
    disagree, degenerate or capped optima, LR scans at their edge, flat data-constrained
    directions. Returns (warnings, quantities the starts disagree on)."""
    theta = res.x[best]
    warnings, disagree = disagreement(law_obj, res.x[near], theta)
    warnings = list(table.warnings) + warnings + _degenerate_warnings(law_obj, theta, logL)
    if res.capped[best]:
        warnings.append("the best start hit the iteration cap before converging")
    warnings += edge_warnings(scan)
    if law_obj.name == "data-constrained":
        from .constrained import flatness_warnings
        warnings += flatness_warnings(law_obj, theta, lambda t: objective_value(
            law_obj, t, logX, logL, huber_delta))
    return warnings, disagree


def _describe(table, law_obj, res, best, near, n_grid, params, cost, selection, scan, abandon,
              huber_delta, params_column, n_points, warnings) -> dict:
    """fit.json's description of the point fit: law, parameters, starts and objective."""
    theta = res.x[best]
    return dict(
        law=law_obj.name, x=list(law_obj.x), params_column=params_column,
        formula=law_obj.formula, params=params, compute=cost.describe(),
        fitted_log_space=dict(zip(law_obj.fitted, map(float, theta))),
        n_points=int(n_points), n_starts=int(len(res.x)), n_starts_screened=n_grid,
        n_starts_at_best=int(near.sum()), n_starts_not_converged=int(res.capped.sum()),
        n_starts_abandoned=int(res.abandoned.sum()),
        starts_note=STARTS_NOTE if abandon else "L-BFGS from every start of the grid, each "
        "run to convergence or the iteration cap (--no-abandon)",
        objective=float(res.f[best]), huber_delta=float(huber_delta),
        objective_note="sum over points of Huber(log L_pred - log L), parameters in log space",
        selection=selection, lr_scan=scan,
        source=table.source, notes=list(table.notes), warnings=warnings,
        provenance=provenance(table.source, table.read, n_points, table.dropped),
    )


def _bootstrap_intervals(table, law_obj, res, best, n_grid, logX, logL, huber_delta, n, seed,
                         abandon, derived, say):
    """Refits on resampled runs. Returns (fit.json's samples, stderr, ci95 and bootstrap
    fields; the refits' log-space parameters)."""
    groups, unit = bootstrap_groups(table)
    weights = bootstrap_weights(groups, n, seed)
    # Duplicates of one fit are skipped only after the screen (a clean optimum); from
    # the whole grid the starts are chosen as they always were, ranges unchanged.
    boot_starts = bootstrap_starts(law_obj, res, best,
                                   logX=logX if n_grid is not None else None)
    say(f"bootstrap: {n} resamples of {unit}, {len(boot_starts)} starts each")
    boot = bootstrap_fits(law_obj, logX, logL, weights, boot_starts, huber_delta,
                          abandon=abandon, abandon_after=BOOT_ABANDON_AFTER)
    samples = derived(boot)
    stderr, ci95 = summarise(samples)
    return dict(
        # Kept in fit.json, so Law.load can give intervals on any prediction or allocation.
        bootstrap_samples={k: np.asarray(samples[k], float).tolist() for k in law_obj.natural},
        stderr=stderr, ci95=ci95, bootstrap=dict(
            n=int(n), seed=int(seed), unit=unit, n_units=int(groups.max() + 1),
            starts_per_refit=int(len(boot_starts)),
            starts_note="each refit starts from the full-data optimum and the best distinct "
                        "other optima of the main fit (not the full grid; after a screened "
                        "fit, optima predicting every point within 1e-4 of a chosen one are "
                        "the same fit and skipped); starts that "
                        "cannot reach their refit's best objective are abandoned as in the "
                        "full-grid fit, from 25 iterations on",
            interval="percentile, 2.5% to 97.5%"),
        _samples=samples), boot


def _gauss_newton_intervals(law_obj, res, near, theta, logX, logL, huber_delta, seed, derived,
                            warnings) -> dict:
    """Without a bootstrap: intervals from the Gauss-Newton covariance at the best fit, when
    there are more points than parameters (a warning is added when E = 0 fits as well)."""
    samples = gauss_newton_samples(law_obj, theta, logX, logL, seed=seed)
    if samples is None:
        return dict(bootstrap=None, stderr={}, ci95={}, uncertainty="not estimated: no "
                    "bootstrap, and no more points than parameters for a covariance")
    stderr, ci95 = summarise(derived(samples))
    if profile_floor_allowed(law_obj, res.x[near], theta, logX, logL, huber_delta):
        ci95["E"] = [0.0, ci95["E"][1]]  # E = 0 fits as well: the floor is not pinned
        warnings.append("E = 0 fits the runs as well as the best fit (profile check: "
                        "residual sum of squares within the 95% F threshold); the "
                        "irreducible loss is not identified")
    return dict(bootstrap=None, stderr=stderr, ci95=ci95, uncertainty=GN_NOTE)


def _stderr(table):
    """loss_stderr per row for error bars (NaN where a row has none)."""
    cells = table.columns.get("loss_stderr") or [None] * len(table)
    out = np.full(len(table), np.nan)
    for i, v in enumerate(cells):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            pass
    return out
HOLDOUT_BOOT = 200   # resamples for the held-out runs' prediction intervals (at most)
GN_SAMPLES = 2000
GN_NOTE = ("approximate, without bootstrap: parameters drawn from a normal with the Gauss-Newton "
           "covariance at the optimum (residual variance x (J^T J)^-1; a direction the data do "
           "not constrain gets a huge variance), intervals widened to the spread of the starts "
           "that reach the best objective; --bootstrap N resamples instead")


def gauss_newton_samples(law, theta, logX, logL, n=GN_SAMPLES, seed=0):
    """(n, P) parameter draws from N(theta, s^2 (J^T J)^-1), J the Jacobian of log L_pred;
    None without more points than parameters. Eigenvalues of J^T J below 1e-12 of the
    largest are floored there: a flat direction gets an enormous variance, so what it
    moves is judged not identified rather than exact."""
    import jax
    from .optimize import float64
    n_pts, P = len(logL), len(theta)
    if n_pts <= P:
        return None
    with float64():
        theta64, logX64 = jnp.asarray(theta, jnp.float64), jnp.asarray(logX, jnp.float64)
        J, pred = programs.call("fit.jacobian", (law.log_pred,),
                                functools.partial(_jacobian, law.log_pred), theta64, logX64)
        J, r = np.asarray(J), np.asarray(pred) - logL
    if not np.all(np.isfinite(J)):
        return None
    s2 = float(r @ r) / (n_pts - P)
    w, V = np.linalg.eigh(J.T @ J)
    w = np.maximum(w, 1e-12 * max(w.max(), 1e-300))
    scale = V * np.sqrt(s2 / w)  # cov = scale scale^T
    z = np.random.default_rng(seed).standard_normal((n, P))
    with np.errstate(over="ignore"):
        return np.asarray(theta)[None] + z @ scale.T


def _jacobian(log_pred, theta, logX):
    """(d log L_pred / d theta (n, P), log L_pred (n,)) at one parameter vector."""
    def f(t):
        return log_pred(t[None], logX)[0]
    return jax.jacfwd(f)(theta), f(theta)


PROFILE_PIN = -40.0   # log E at the pinned profile point (E = 4e-18: no floor at all)


def profile_floor_allowed(law, near_x, theta, logX, logL, huber_delta):
    """Whether the data allow E = 0: refit with log E pinned far below the data, from the
    best starts, and compare residual sums of squares (a profile check, F test with 1 and
    n - P degrees of freedom). A Gauss-Newton interval is symmetric in log E and cannot
    see that the fit stays as good all the way down to no floor at all."""
    if "e" not in law.fitted or len(logL) <= len(theta) + 1:
        return False
    from dataclasses import replace
    from .quantiles import f1_quantile  # scipy.special's fdtri costs ~0.8 s to import
    i = law.fitted.index("e")

    sub = replace(law, log_pred=functools.partial(_pinned_log_pred, law.log_pred, i), fitted=law.fitted[:i] + law.fitted[i + 1:], centring=(),
                  grid=np.delete(law.grid, i, axis=1))
    starts = np.delete(np.unique(np.round(near_x, 6), axis=0)[:BOOT_STARTS], i, axis=1)
    res_p, best_p, _ = fit_points(sub, logX, logL, huber_delta, starts=starts)
    full_p = np.insert(res_p.x[best_p], i, PROFILE_PIN)
    rss = float(np.sum(_residuals(law, theta, logX, logL) ** 2))
    rss_p = float(np.sum(_residuals(law, full_p, logX, logL) ** 2))
    dof = len(logL) - len(theta)
    if not np.isfinite(rss_p) or rss <= 0:
        return False
    return (rss_p - rss) / (rss / dof) < f1_quantile(dof, 0.95)


def _pinned_log_pred(log_pred, i, t, X):
    """log_pred with log E (parameter i) held at PROFILE_PIN; t lacks that column."""
    full = jnp.concatenate([t[:, :i], jnp.full((t.shape[0], 1), PROFILE_PIN), t[:, i:]], 1)
    return log_pred(full, X)


def _widen_to_starts(ci95, at_best, values):
    """Where the starts that reach the best objective disagree on a quantity, its interval
    is widened to their range (refits start from the full-data optimum, so on a flat
    objective the bootstrap range collapses to a point). Returns the disagreeing names."""
    names = set()
    for k, v in at_best.items():
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        if k not in values or len(v) < 2:
            continue
        lo, hi = float(v.min()), float(v.max())
        if hi - lo <= DISAGREE_RTOL * max(abs(float(values[k])), 1e-12):
            continue
        names.add(k)
        ci = ci95.get(k)
        ci95[k] = [lo, hi] if not ci else [min(ci[0], lo), max(ci[1], hi)]
    return names


def _outside_range_warnings(compute_optimal, N, cost):
    """The cost model f(N) = k N^p is fitted to the table's sizes; where N_opt leaves their
    range it is extrapolated (9% low at 2.7M parameters on the default sweep), so say so."""
    if cost.name == "6ND":
        return []  # 6ND is a definition, not a fit: nothing is extrapolated in it
    lo, hi = float(np.min(N)), float(np.max(N))
    out = [f"C={key} ({uncertainty.num(c['N_opt'], 3)})" for key, c in compute_optimal.items()
           if not lo <= c["N_opt"] <= hi]
    if not out:
        return []
    src = "flops_per_token" if cost.source == "flops_per_token" else "flops / tokens"
    return [f"N_opt leaves the table's N range ({uncertainty.num(lo, 3)} .. "
            f"{uncertainty.num(hi, 3)}) at {', '.join(out)}: the cost model f(N) = "
            f"{cost.k:.3g} N^{cost.p:.3f}, fitted to the table's {src}, is extrapolated there"]


BOUND_EXPONENT = 10.0  # an exponent beyond this (or a scale beyond 1e-30..1e30) ran to a bound


def _degenerate_warnings(law, theta, logL):
    """Loss that does not vary, and parameters that ran to a bound of what a law can mean."""
    out = []
    if np.ptp(logL) < 1e-12:
        out.append(f"the loss does not vary across the {len(logL)} rows (all "
                   f"{np.exp(logL[0]):.6g}); no law can be identified from them")
    for name, v in law.to_natural(np.asarray(theta)[None]).items():
        v = float(np.asarray(v).ravel()[0])
        exponent = name in law.fitted  # fitted as is (alpha, beta); the rest as logs
        if not np.isfinite(v) or (exponent and abs(v) > BOUND_EXPONENT) or \
                (not exponent and not uncertainty.TINY <= abs(v) <= uncertainty.HUGE):
            out.append(f"{name} ran to a bound ({uncertainty.num(v)}); the fit is degenerate "
                       f"in it, and plots that need it may be skipped")
    return out


def _base_params(base_law):
    if base_law is None or isinstance(base_law, dict):
        return base_law
    import json
    try:
        with open(base_law, encoding="utf-8") as fh:
            fit = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise AnalysisError(f"--base-law {base_law}: unreadable ({e}); give a chinchilla "
                            f"fit.json") from None
    if fit.get("law") != "chinchilla":
        raise AnalysisError(f"--base-law {base_law}: law is {fit.get('law')!r}, not chinchilla; "
                            f"fit the base law with --law chinchilla first")
    return fit["params"]


def objective_value(law, theta, logX, logL, huber_delta):
    """The fit objective at one parameter vector (numpy)."""
    r = np.log(law.predict(theta, logX)) - logL
    ar = np.abs(r)
    return float(np.sum(np.where(ar <= huber_delta, 0.5 * r * r,
                                 huber_delta * (ar - 0.5 * huber_delta))))


def _residuals(law, theta, logX, logL):
    return np.log(law.predict(theta, logX)) - logL


def extrapolation_check(table, law, threshold, huber_delta=1e-3, params_column="params",
                        by="flops", C=None, abandon=True, bootstrap=HOLDOUT_BOOT, seed=0,
                        screen=True, starts=None):
    """Fit on runs with C <= threshold (by="flops") or N <= threshold (by="params", i.e.
    without the largest models), predict the others, report relative errors, and (with
    `bootstrap` resamples) each held-out run's 95% prediction interval: the refits'
    predictions times a resampled residual of the fit, so both the law's uncertainty and
    the scatter of single runs are in it. starts: as in fit_law (default: the law's grid)."""
    flops = C if C is not None else compute_column(table, cost_model(table, params_column))
    split_on = flops if by == "flops" else table.numeric(params_column)
    below = split_on <= threshold
    if not (~below).any():
        raise AnalysisError(f"--holdout-above-{by} {threshold:g}: no runs above it "
                            f"(largest is {split_on.max():.3g}); choose a smaller threshold")
    fit_table = table.subset(below)
    held = table.subset(~below)
    logX, logL = design(fit_table, law, params_column)
    res, best, _, n_grid = fit_grid(law, logX, logL, huber_delta, starts=starts,
                                    abandon=abandon, screen=screen)
    hX, hL = design_unchecked(held, law, params_column)
    pred = law.predict(res.x[best], hX)
    actual = np.exp(hL)
    rel = (pred - actual) / actual
    runs = held.text("run")
    band = _prediction_intervals(law, fit_table, logX, logL, res, best, hX, huber_delta,
                                 bootstrap, seed, abandon, same_fits=n_grid is not None)
    rows = []
    for i, (f, a, p, r) in enumerate(zip(flops[~below], actual, pred, rel)):
        row = dict(run=runs[i] or held.labels[i], flops=float(f), loss=float(a),
                   predicted=float(p), rel_error=float(r))
        if band is not None:
            lo, hi = float(band[0][i]), float(band[1][i])
            row.update(pi95=[lo, hi], inside=bool(lo <= a <= hi))
        rows.append(row)
    out = dict(**{f"threshold_{by}": float(threshold)}, n_fit=int(below.sum()),
               n_heldout=int((~below).sum()),
               params={k: float(v) for k, v in law.to_natural(res.x[best]).items()},
               heldout=rows, mean_abs_rel_error=float(np.mean(np.abs(rel))),
               max_abs_rel_error=float(np.max(np.abs(rel))))
    if band is not None:
        out.update(n_inside=int(sum(r["inside"] for r in rows)), prediction_interval=dict(
            n=int(bootstrap), seed=int(seed), level=0.95,
            method="bootstrap refits' predictions x a resampled residual of the fit "
                   "(2.5% to 97.5%)"))
    else:
        out["prediction_interval"] = None
    return out


def _prediction_intervals(law, fit_table, logX, logL, res, best, hX, huber_delta, n_boot, seed,
                          abandon, same_fits=False):
    """(lo, hi) arrays of 95% bootstrap prediction intervals at hX; None without resamples.
    same_fits: skip bootstrap starts that are the same fit (after a screened fit)."""
    if not n_boot or len(hX) == 0:
        return None
    import jax
    from .optimize import float64
    groups, _ = bootstrap_groups(fit_table)
    weights = bootstrap_weights(groups, n_boot, seed)
    starts = bootstrap_starts(law, res, best, logX=logX if same_fits else None)
    boot = bootstrap_fits(law, logX, logL, weights, starts, huber_delta, abandon=abandon,
                          abandon_after=BOOT_ABANDON_AFTER)
    with float64():
        log_pred = np.asarray(_jitted(law.log_pred)(jnp.asarray(boot), jnp.asarray(hX)))
        resid = logL - np.asarray(law.log_pred(jnp.asarray(res.x[best])[None],
                                                jnp.asarray(logX)))[0]
    rng = np.random.default_rng(seed + 1)
    draws = log_pred + rng.choice(resid, log_pred.shape)  # observed = predicted + (obs - pred)
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanpercentile(np.exp(draws), [2.5, 97.5], axis=0)
    return lo, hi


def design_unchecked(table, law, params_column="params"):
    """log X and log L, validated, without the minimum-points rule (for held-out runs)."""
    cols = []
    for c in law.x:
        name = params_column if c == "params" else c
        if c == "flops" and not table.has("flops"):
            cols.append(np.log(table.six_nd(params_column)))
        else:
            cols.append(np.log(table.numeric(name)))
    return np.stack(cols, axis=1), np.log(table.numeric("loss"))
