"""Approach 2 of Hoffmann et al. (2022): iso-FLOP parabolas.

Runs are grouped by compute budget (the planned `compute_budget`, exact shared
values, or log-spaced bins). Within each budget, loss is fitted by least squares as a
parabola in log N plus a linear term in log(C / C_budget): a run's actual FLOPs differ
from its budget (whole steps; up to ±5% in real sweeps), and without that regressor
the jitter moves the vertex (a = 0.327 against a true 0.452 on a noise-free table with
budgets 0.08 dex apart). The vertex is the budget's log N_opt; its standard error
comes from the parabola's covariance, with the residual variance pooled over budgets
(a parabola through 5 runs leaves 2 degrees of freedom; pooled, 4 budgets leave 8).
log N_opt = a log C + k is then a weighted least-squares line (weights 1 / stderr²),
and a's 95% interval is ± t(pooled dof) × its standard error. D_opt is not fitted
separately: D_opt = C / f(N_opt) under the table's cost model, so the allocation spends
exactly C, and b = 1 - p a.

An optional bootstrap (`bootstrap` > 0) redraws each run's loss as fitted value plus a
resampled pooled residual and repeats both fits: a cross-check of the interval that
does not rely on the delta method (resampling runs with replacement was not: 5 runs
often left 3 distinct sizes, and a parabola through 3 points swings, doubling widths).
"""

from __future__ import annotations

import numpy as np

from .allocation import reference_computes
from .compute import compute_column, cost_model
from .data import Results, final_rows, to_results
from .errors import AnalysisError
from .provenance import provenance
from .select import edge_warnings, lr_scan, select_best

MIN_RUNS_PER_BUDGET = 3
CUBIC = 5  # column of the x³ term in the design


def group_budgets(flops, bin_width_dex=None, planned=None):
    """Budget label (log10 C) per run, and how it was grouped.

    The planned `compute_budget` when the table has one (runs never share exact actual
    FLOPs once steps are rounded); otherwise exact values when shared, else log10 bins."""
    if planned is not None and bin_width_dex is None:
        return np.round(np.log10(planned), 6), "planned compute_budget column"
    rounded = np.round(np.log10(flops), 6)
    values, counts = np.unique(rounded, return_counts=True)
    if bin_width_dex is None and (counts >= MIN_RUNS_PER_BUDGET).sum() >= 2:
        return rounded, "exact actual FLOPs"
    width = bin_width_dex or 0.1
    centre = np.round(np.log10(flops) / width) * width
    why = "" if bin_width_dex else " (no compute_budget column and no shared exact FLOPs)"
    return np.round(centre, 6), f"actual FLOPs binned in log10 bins of {width:g} dex{why}"


def _design(x, jitter):
    """Columns x², x, 1 and, when the actual FLOPs vary within the budget, j = log(C/C_budget),
    x·j and x³. How much a run's extra FLOPs lower its loss depends on its size (the D term's
    slope in log C scales with N^beta): a common slope left a bias of ±0.05 in a. The cubic
    takes up the profile's skew, which the jitter terms would otherwise absorb by chance
    (errors up to 0.018 in a on noise-free tables without it)."""
    cols = [x * x, x, np.ones_like(x)]
    if np.ptp(jitter) > 1e-9:
        cols += [jitter, x * jitter, x ** 3]
    return np.stack(cols, 1)


def _parabola(x, jitter, loss):
    """Least-squares fit; (coef, (X^T X)^-1, residual sum of squares, dof, fitted) or None."""
    if len(np.unique(x)) < 3:
        return None
    X = _design(x, jitter)
    for cols in (X.shape[1], 5, 4, 3):  # drop the terms the runs cannot support
        X = X[:, :cols]
        if len(x) > cols and np.linalg.matrix_rank(X) == cols:
            break
    coef, *_ = np.linalg.lstsq(X, loss, rcond=None)
    resid = loss - X @ coef
    return coef, np.linalg.pinv(X.T @ X), float(resid @ resid), len(x) - X.shape[1], X @ coef


def _vertex(coef):
    """Minimum near 0 of c2 x² + c1 x + c0 (+ c3 x³ when fitted) at j = 0, and the gradient
    of its position with respect to the coefficients (for the delta method); None if the
    curve is not convex there."""
    c2, c1 = coef[0], coef[1]
    c3 = coef[CUBIC] if len(coef) > CUBIC else 0.0
    if c2 <= 0:
        return None
    xs = -c1 / (2 * c2)
    for _ in range(50):  # Newton on P'(x) = 3 c3 x² + 2 c2 x + c1 from the parabola's vertex
        d1 = 3 * c3 * xs * xs + 2 * c2 * xs + c1
        d2 = 6 * c3 * xs + 2 * c2
        if d2 <= 0:
            return None
        step = d1 / d2
        xs -= step
        if abs(step) < 1e-14:
            break
    d2 = 6 * c3 * xs + 2 * c2
    grad = np.zeros(len(coef))
    grad[0], grad[1] = -2 * xs / d2, -1 / d2  # dx*/dc = -(dP'/dc) / P''
    if len(coef) > CUBIC:
        grad[CUBIC] = -3 * xs * xs / d2
    value = c3 * xs ** 3 + c2 * xs * xs + c1 * xs + coef[2]
    return xs, grad, value


def budget_optima(logC, logN, loss, labels, log_budget_of):
    """Per-budget parabola vertices (dicts, log values), the budgets skipped with reasons,
    and the pooled residual variance with its degrees of freedom."""
    rows, skipped = [], []
    for lab in np.unique(labels):
        m = labels == lab
        if m.sum() < MIN_RUNS_PER_BUDGET:
            skipped.append(f"budget 1e{lab:g}: {m.sum()} runs (need {MIN_RUNS_PER_BUDGET})")
            continue
        lb = log_budget_of(lab, logC[m])
        mid = logN[m].mean()
        fit = _parabola(logN[m] - mid, logC[m] - lb, loss[m])
        if fit is None:
            skipped.append(f"budget 1e{lab:g}: fewer than 3 distinct sizes")
            continue
        coef, xtx_inv, rss, dof, fitted = fit
        vertex = _vertex(coef)
        if vertex is None:
            skipped.append(f"budget 1e{lab:g}: loss is not convex in log N (the parabola "
                           f"opens downwards)")
            continue
        xs, grad, loss_opt = vertex
        inside = logN[m].min() <= xs + mid <= logN[m].max()
        c3 = coef[CUBIC] if len(coef) > CUBIC else 0.0
        rows.append(dict(log_budget=float(lb), log_N_opt=float(xs + mid),
                         loss_opt=float(loss_opt), n_runs=int(m.sum()),
                         inside=bool(inside), parabola_N=(*coef[:3], mid, c3), label=lab,
                         rss=rss, dof=dof, var_unit=float(grad @ xtx_inv @ grad),
                         index=np.flatnonzero(m), fitted=fitted))
    dof = sum(r["dof"] for r in rows)
    sigma2 = sum(r["rss"] for r in rows) / dof if dof > 0 else None
    return rows, skipped, sigma2, dof


def weighted_line(opt, sigma2):
    """(a, k, covariance of (a, k)) of log N_opt = a log C + k through the used budgets,
    weighted by 1 / var(vertex); unweighted with no covariance when sigma2 is None."""
    use = [o for o in opt if o["inside"]]
    if len(use) < 2:
        return None
    c = np.array([o["log_budget"] for o in use])
    y = np.array([o["log_N_opt"] for o in use])
    if sigma2 is None or sigma2 <= 0:
        w = np.ones(len(use))
    else:
        w = 1.0 / np.maximum(np.array([o["var_unit"] for o in use]) * sigma2, 1e-300)
    X = np.stack([c, np.ones_like(c)], 1)
    XtW = X.T * w
    cov = np.linalg.inv(XtW @ X)
    a, k = cov @ XtW @ y
    return a, k, (cov if sigma2 is not None and sigma2 > 0 else None)


def _log_budget_fn(planned_log):
    """log C of a budget: the planned budget when known, else the group's mean log C."""
    def fn(lab, logC):
        if planned_log is not None:
            return planned_log[lab]
        return float(np.mean(logC))
    return fn


def isoflop(table: Results, *, bootstrap=1000, seed=0, bin_width_dex=None, params_column="params",
            compute="auto", select="best", select_by=None, reference_flops=None):
    """Approach 2 fit; returns a JSON-ready dict (the content of isoflop.json)."""
    if bootstrap < 0:
        raise AnalysisError(f"--bootstrap must be >= 0, got {bootstrap}")
    table, notes = _iso_flop_rows(final_rows(to_results(table)), bin_width_dex)
    cost = cost_model(table, params_column, compute)
    C = compute_column(table, cost)
    planned = table.numeric("compute_budget") if table.has("compute_budget") else None
    labels, grouping = group_budgets(C, bin_width_dex, planned)
    N = table.numeric(params_column)
    scan = lr_scan(table, N, labels)
    keep_table, selection = select_best(table, [N, labels], [params_column, "compute_budget"],
                                        mode=select, by=select_by)
    if len(keep_table) < len(table):
        kept = np.isin(np.arange(len(table)),
                       [table.labels.index(lab) for lab in keep_table.labels])
        table, C, labels = keep_table, C[kept], labels[kept]
        planned = planned[kept] if planned is not None else None
    N = table.numeric(params_column)
    loss = table.numeric("loss")
    logC, logN = np.log(C), np.log(N)
    planned_log = None
    if planned is not None and bin_width_dex is None:
        planned_log = {lab: float(np.log(planned[labels == lab][0])) for lab in np.unique(labels)}
    budget_of = _log_budget_fn(planned_log)
    opt, skipped, sigma2, dof = budget_optima(logC, logN, loss, labels, budget_of)
    line = weighted_line(opt, sigma2)
    if line is None:
        raise AnalysisError(
            f"{table.source}: iso-FLOP needs at least 2 budgets with >= {MIN_RUNS_PER_BUDGET} runs "
            f"and an interior loss minimum (found {len(opt)} usable; grouping: {grouping}); "
            f"add runs or pass a bin width")
    a, ka, cov = line
    warnings = [f"skipped {s}" for s in skipped]
    warnings += [f"budget {np.exp(o['log_budget']):.3g}: optimum N outside the sampled sizes; "
                 f"not used for the exponents" for o in opt if not o["inside"]]
    warnings += edge_warnings(scan)
    warnings = list(table.warnings) + warnings
    notes = list(table.notes) + notes
    if planned is None:
        notes.append(f"grouping: {grouping}")
    refs = [float(c) for c in reference_flops] if reference_flops else reference_computes(C)
    out = _describe(a, ka, cost, refs, _budgets(opt, sigma2, cost), grouping,
                    dict(n_points=int(len(loss)), selection=selection, lr_scan=scan,
                         source=table.source, notes=notes, warnings=warnings,
                         provenance=provenance(table.source, table.read, len(loss),
                                               table.dropped)))
    out.update(_line_intervals(a, cost.p, cov, dof, sigma2, warnings))
    samples = _bootstrap(opt, logC, logN, loss, labels, budget_of, sigma2, bootstrap, seed)
    out["bootstrap"] = None if samples is None else dict(
        n=int(bootstrap), n_valid=int(len(samples)), seed=int(seed),
        unit="pooled residuals, redrawn onto each budget's fitted parabola",
        ci95_a=[float(q) for q in np.percentile(samples, [2.5, 97.5])],
        interval="percentile, 2.5% to 97.5% (a cross-check of ci95)")
    out["_curves"] = dict(opt=opt, logC=logC, logN=logN, loss=loss, labels=labels,
                          axis=cost.axis_label())
    return out


def _iso_flop_rows(table, bin_width_dex):
    """A grid sweep mixed with iso-FLOP runs: the iso-FLOP ones (those with a planned
    compute_budget) unless a bin width groups by actual FLOPs. Returns (table, notes)."""
    notes = []
    if table.has("compute_budget") and bin_width_dex is None:
        has = np.array([v not in (None, "") for v in table.columns["compute_budget"]])
        if not has.all():
            n_out = int((~has).sum())
            table = table.drop(has, ["no compute_budget (not an iso-FLOP run)"] * len(table))
            notes.append(f"left out {n_out} rows without a compute_budget (not iso-FLOP runs); "
                         f"used the {len(table)} with one")
    return table, notes


def _budgets(opt, sigma2, cost) -> list[dict]:
    """One row per budget: its parabola's optimum N, D and loss, and whether the line used it."""
    budgets = []
    for o in opt:
        se = float(np.sqrt(o["var_unit"] * sigma2)) if sigma2 else None
        nb = float(np.exp(o["log_N_opt"]))
        cb = float(np.exp(o["log_budget"]))
        budgets.append(dict(budget=cb, N_opt=nb, D_opt=float(cost.tokens(nb, cb)),
                            log_N_opt_stderr=se, loss_opt=float(o["loss_opt"]),
                            n_runs=o["n_runs"], used=o["inside"]))
    return budgets


def _describe(a, ka, cost, refs, budgets, grouping, rest: dict) -> dict:
    """The exponents, coefficients and compute-optimal allocation of the line log N_opt =
    ka + a log C; `rest`: the fields that describe the input."""
    k, p = cost.k, cost.p

    def n_opt(c):
        return float(np.exp(ka + a * np.log(c)))

    out = dict(
        method="iso-FLOP parabolas (Hoffmann et al. 2022, Approach 2)", grouping=grouping,
        compute=cost.describe(),
        a=float(a), b=float(1.0 - p * a), N_coeff=float(np.exp(ka)),
        D_coeff=float(1.0 / (k * np.exp(ka) ** p)),
        compute_optimal={f"{c:.3g}": dict(flops=c, N_opt=n_opt(c),
                                          D_opt=float(cost.tokens(n_opt(c), c))) for c in refs},
        budgets=budgets, **rest)
    out["D_opt_note"] = "D_opt = C / f(N_opt) under the cost model (f(N) = k N^p): b = 1 - p a"
    return out


def _line_intervals(a, p, cov, dof, sigma2, warnings) -> dict:
    """stderr and 95% t intervals of a and b = 1 - p a from the line's covariance."""
    if cov is None or dof <= 0:
        warnings.append("no residual degrees of freedom (every parabola passes through "
                        "its runs exactly or too few runs): uncertainty not estimated")
        return dict(stderr={}, ci95={})
    from .quantiles import t_quantile  # numpy: scipy.special costs ~0.8 s to import
    b = 1.0 - p * a
    t = t_quantile(dof, 0.975)
    se_a = float(np.sqrt(cov[0, 0]))
    return dict(
        stderr=dict(a=se_a, b=p * se_a),
        ci95=dict(a=[a - t * se_a, a + t * se_a], b=[b - t * p * se_a, b + t * p * se_a]),
        interval=dict(
            method="per-budget vertex stderr from the parabola covariance (residual variance "
                   "pooled over budgets), weighted least-squares line, ± t quantile",
            dof=int(dof), t=t, residual_sd=float(np.sqrt(sigma2))),
        _line_cov=cov)


def _bootstrap(opt, logC, logN, loss, labels, budget_of, sigma2, n_boot, seed):
    """a from refits of fitted + resampled residuals (scaled to the pooled variance)."""
    if not n_boot or not sigma2 or not opt:
        return None
    rng = np.random.default_rng(seed)
    idx = np.concatenate([o["index"] for o in opt])
    fitted = np.concatenate([o["fitted"] for o in opt])
    resid = loss[idx] - fitted
    dof = sum(o["dof"] for o in opt)
    resid = resid * np.sqrt(len(resid) / dof)  # residuals understate the noise by dof/n
    res = []
    for _ in range(n_boot):
        y = loss.copy()
        y[idx] = fitted + rng.choice(resid, len(resid))
        o2, _, s2, _ = budget_optima(logC[idx], logN[idx], y[idx], labels[idx], budget_of)
        line = weighted_line(o2, s2)
        if line is not None:
            res.append(line[0])
    return np.array(res) if len(res) >= 2 else None


def line_band(result: dict, flops):
    """N_opt on the fitted line at `flops` with its pointwise 95% band (lo, centre, hi):
    the band of the whole line (intercept and slope with their covariance), narrowest
    at the weighted mean budget but never of zero width there. None without an interval."""
    cov = result.get("_line_cov")
    if cov is None:
        return None
    lc = np.log(np.asarray(flops, float))
    centre = np.log(result["N_coeff"]) + result["a"] * lc
    sd = np.sqrt(cov[0, 0] * lc * lc + 2 * cov[0, 1] * lc + cov[1, 1])
    t = result["interval"]["t"]
    return np.exp(centre - t * sd), np.exp(centre), np.exp(centre + t * sd)
