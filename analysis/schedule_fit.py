"""Fitting the schedule law (analysis/schedule_law.py) to every curve point of every run.

Input: a sweep directory (or one run directory, or a curves.csv from `analysis curves`); each
point carries its run's schedule, so the areas S1, S2 at its step are computed here. Points in
the warmup and before `min_step` (the early plateau, which no law of this form describes) are
left out. The fit is the same multi-start Huber fit in log loss as the other laws, the bootstrap
resamples whole runs (a WSD branch with its parent), and quantities are identified by the same
rules.

The curve points are measured on a fixed subset of the validation windows (the same at every
step); the final loss of a run (result.json) on the larger final evaluation. Their ratio is
nearly the same for every run (same windows), so the law is fitted on the curve windows and its
final-loss predictions are scaled by `curve_to_final`, the geometric mean of final / curve loss
at the last step of the fitted runs.
"""

from __future__ import annotations

import collections
import dataclasses
import os

import numpy as np

from . import schedule_allocation, uncertainty
from .compute import cost_model
from .curves import curves_table
from .data import Results, final_rows, load_results
from .errors import AnalysisError
from .fit import (BOOT_ABANDON_AFTER, STARTS_NOTE, _degenerate_warnings, bootstrap_fits,
                  bootstrap_groups, bootstrap_starts, bootstrap_weights, disagreement,
                  fit_points, summarise)
from .provenance import provenance
from .schedule_law import MOMENTUM, design_row, make, predict
from .schedules import Schedule

MIN_STEP = 64  # curve points before this step are left out (warmup and the early plateau)
HOLDOUT_BOOTSTRAP = 200  # resamples behind a held-out run's prediction interval
SCHEDULE_COLUMNS = ("schedule", "learning_rate", "min_lr_ratio", "warmup_steps", "decay_start",
                    "total_steps", "tokens_per_step", "step", "run")


def load_curves(results) -> Results:
    """A curves table with schedule columns: from a sweep/run directory or a curves CSV."""
    if isinstance(results, Results):
        table = results
    elif os.path.isdir(str(results)):
        table = curves_table(str(results), "eval")
    else:
        table = load_results(str(results))
    missing = [c for c in SCHEDULE_COLUMNS if not table.has(c)]
    if missing:
        raise AnalysisError(f"{table.source}: --law schedule needs training curves with their "
                            f"schedules (missing {', '.join(missing)}); pass the sweep directory "
                            f"or a curves.csv written by `python -m analysis curves`")
    return table


class Points:
    """The curve points one fit uses, with per-run facts (schedule, final losses)."""

    def __init__(self, table: Results, params_column: str, momentum: float, min_step: int):
        runs = table.text("run")
        steps = table.numeric("step").astype(int)
        N = table.numeric(params_column)
        loss = table.numeric("loss")
        curve = table.numeric("curve_loss") if table.has("curve_loss") else loss
        schedules, areas = {}, {}
        cols = {c: table.text(c) for c in SCHEDULE_COLUMNS[:7]}
        for i, r in enumerate(runs):
            if r not in schedules:
                schedules[r] = Schedule(cols["schedule"][i], int(float(cols["total_steps"][i])),
                                        float(cols["learning_rate"][i]),
                                        float(cols["min_lr_ratio"][i]),
                                        int(float(cols["warmup_steps"][i])),
                                        int(float(cols["decay_start"][i])))
                areas[r] = schedules[r].areas(momentum)
        s1 = np.array([areas[r][0][min(s, schedules[r].total_steps)] for r, s in zip(runs, steps)])
        s2 = np.array([areas[r][1][min(s, schedules[r].total_steps)] for r, s in zip(runs, steps)])
        self.schedules, self.momentum = schedules, momentum
        self.tokens_per_step = {r: int(float(t)) for r, t in zip(runs, table.text("tokens_per_step"))}
        last = {r: s.total_steps for r, s in schedules.items()}
        is_final = np.array([s == last[r] for r, s in zip(runs, steps)])
        self.final_loss = {r: l for r, l, f in zip(runs, loss, is_final) if f}
        self.final_curve = {r: c for r, c, f in zip(runs, curve, is_final) if f}
        self.N = {r: n for r, n in zip(runs, N)}
        self.final_flops = {}
        flops = table.numeric("flops") if table.has("flops") else table.six_nd(params_column)
        for r, c, f in zip(runs, flops, is_final):
            if f:
                self.final_flops[r] = float(c)
        warm = np.array([s <= schedules[r].warmup for r, s in zip(runs, steps)])
        keep = (steps >= min_step) & ~warm
        reasons = [f"step {s} is in the warmup or before --min-step {min_step}" for s in steps]
        self.table = table.drop(keep, reasons)
        self.runs = [r for r, k in zip(runs, keep) if k]
        self.logX = design_row(N[keep], s1[keep], s2[keep])
        self.logL = np.log(curve[keep])
        self.all = dict(runs=runs, steps=steps, N=N, s1=s1, s2=s2, curve=curve, keep=keep)

    def run_names(self):
        return list(dict.fromkeys(self.runs))

    def subset_runs(self, names):
        names = set(names)
        return np.array([r in names for r in self.runs])

    def final_areas(self, run):
        s1, s2 = self.schedules[run].areas(self.momentum)
        return s1[-1], s2[-1]

    def curve_to_final(self, runs):
        """exp(mean log(final / curve loss)) over `runs` with both; 1.0 if none."""
        r = [np.log(self.final_loss[x] / self.final_curve[x]) for x in runs
             if x in self.final_loss and x in self.final_curve]
        return float(np.exp(np.mean(r))) if r else 1.0


def _mode(values):
    return collections.Counter(values).most_common(1)[0][0]


def allocation_template(points: Points, named: str) -> tuple[dict, int]:
    """The named schedule with the runs' own peak LR, floor, warmup and cooldown fractions."""
    sch = list(points.schedules.values())
    wsd = [s for s in sch if s.kind == "wsd"]
    template = dict(kind=named, peak=float(_mode([s.peak for s in sch])),
                    min_lr_ratio=float(_mode([s.min_lr_ratio for s in sch])),
                    warmup_fraction=float(np.median([s.warmup / s.total_steps for s in sch])),
                    cooldown_fraction=float(np.median([1 - s.decay_start / s.total_steps
                                                       for s in wsd])) if wsd else 0.2)
    return template, int(_mode(list(points.tokens_per_step.values())))


def _fit_runs(law, points: Points, runs, huber_delta, abandon):
    mask = points.subset_runs(runs)
    res, best, near = fit_points(law, points.logX[mask], points.logL[mask], huber_delta,
                                 abandon=abandon)
    return res, best, near, mask


def _predict_final(points: Points, params, runs, scale):
    """Predicted final loss (on the final evaluation) of `runs` for params (floats or arrays)."""
    out = []
    for r in runs:
        s1, s2 = points.final_areas(r)
        out.append(predict(params, points.N[r], s1, s2) * scale)
    return np.array(out)


def fit_schedule_law(results, *, params_column="params", huber_delta=1e-3, bootstrap=1000,
                     seed=0, momentum=MOMENTUM, min_step=MIN_STEP, schedule="cosine",
                     reference_flops=None, compute="auto", holdout_schedule=None,
                     holdout_above_params=None, abandon=True, starts=None) -> dict:
    """Fit the schedule law to every curve point; returns the content of fit.json.
    starts: optional (S, 6) start points (log-space coordinates) instead of the law's grid."""
    _check_options(bootstrap, huber_delta, momentum, holdout_schedule, holdout_above_params)
    table, law, points, runs = _curve_points(results, params_column, momentum, min_step, starts)
    res, best, near, _ = _fit_runs(law, points, runs, huber_delta, abandon)
    theta = res.x[best]
    params = {k: float(v) for k, v in law.to_natural(theta).items()}
    warnings, disagree = disagreement(law, res.x[near], theta)
    warnings = list(table.warnings) + warnings + _degenerate_warnings(law, theta, points.logL)
    if res.capped[best]:
        warnings.append("the best start hit the iteration cap before converging")
    scale = points.curve_to_final(runs)
    cost = cost_model(final_rows(table), params_column, compute)
    template, per_step = allocation_template(points, schedule)
    refs = [float(c) for c in reference_flops] if reference_flops else \
        [max(points.final_flops.values()) * m for m in (1, 10, 100)]

    def allocate(natural):  # N_opt, D_opt at every reference compute, for params or samples
        return schedule_allocation.allocation(natural, refs, (cost.k, cost.p), per_step,
                                              template, momentum, scale)

    out = _describe(table, params_column, law, points, runs, res, best, near, params, cost,
                    scale, huber_delta, momentum, min_step, warnings)
    out.update(allocate(params))
    edge = [k for k, v in out["compute_optimal"].items() if v["at_grid_edge"]]
    if edge:
        warnings.append(f"N_opt at C = {', '.join(edge)} lies at the edge of the sizes whose "
                        f"runs are {schedule_allocation.MIN_STEPS} to "
                        f"{schedule_allocation.MAX_STEPS} steps long; it is a bound, not an optimum")
    if bootstrap:
        out.update(_bootstrap(law, points, res, best, huber_delta, bootstrap, seed, abandon,
                              allocate))
    else:
        out.update(stderr={}, ci95={}, bootstrap=None)
    out["identified"] = uncertainty.classify(uncertainty.quantities(out), out["stderr"],
                                             out["ci95"], disagree)
    not_ident = [k for k in law.natural if not out["identified"][k]]
    if not_ident:
        warnings.append(f"not identified by these runs: {', '.join(not_ident)} (reported as "
                        f"95% ranges, not values)")
    out["_points"] = points
    out["_theta"] = theta
    extrapolation = _extrapolation(points, law, runs, huber_delta, seed, abandon,
                                   holdout_schedule, holdout_above_params)
    if extrapolation is not None:
        out["extrapolation"] = extrapolation
    return out


def _check_options(bootstrap, huber_delta, momentum, holdout_schedule, holdout_above_params):
    if holdout_schedule and holdout_above_params is not None:
        raise AnalysisError("--holdout-schedule and --holdout-above-params both given; choose "
                            "one extrapolation check")
    if bootstrap < 0 or huber_delta <= 0:
        raise AnalysisError("--bootstrap must be >= 0 and --huber-delta positive")
    if not 0.0 < momentum < 1.0 + 1e-12:
        raise AnalysisError(f"--momentum {momentum} must lie in (0, 1]")


def _curve_points(results, params_column, momentum, min_step, starts):
    """The curves table, the law (with `starts` as its grid when given), the fitted points and
    the runs; refuses too few points to fit. Returns (table, law, points, runs)."""
    table = load_curves(results)
    law = make()
    if starts is not None:
        law = dataclasses.replace(law, grid=np.asarray(starts, float))
    points = Points(table, params_column, momentum, int(min_step))
    runs = points.run_names()
    if len(points.logL) < law.min_points or len(runs) < 2:
        raise AnalysisError(f"{table.source}: {len(points.logL)} curve points from {len(runs)} "
                            f"runs after --min-step {min_step}; the schedule law needs at least "
                            f"{law.min_points} points from 2+ runs (evaluate more often: "
                            f"train.eval_every, or lower --min-step)")
    return table, law, points, runs


def _describe(table, params_column, law, points, runs, res, best, near, params, cost, scale,
              huber_delta, momentum, min_step, warnings) -> dict:
    """fit.json's description of the point fit: parameters, starts, objective, areas, the
    curve-to-final scale and how well the law matches the final losses."""
    theta = res.x[best]
    resid = np.log(law.predict(theta, points.logX)) - points.logL
    fitted_final = _predict_final(points, params, [r for r in runs if r in points.final_loss],
                                  scale)
    actual_final = np.array([points.final_loss[r] for r in runs if r in points.final_loss])
    return dict(
        law=law.name, x=["params", "S1", "S2"], params_column=params_column,
        formula=law.formula, params=params, compute=cost.describe(),
        fitted_log_space=dict(zip(law.fitted, map(float, theta))),
        n_points=int(len(points.logL)), n_runs=len(runs), n_starts=int(len(res.x)),
        n_starts_at_best=int(near.sum()), n_starts_not_converged=int(res.capped.sum()),
        n_starts_abandoned=int(res.abandoned.sum()), starts_note=STARTS_NOTE,
        objective=float(res.f[best]), huber_delta=float(huber_delta),
        objective_note="sum over curve points of Huber(log L_pred - log L), parameters in "
                       "log space",
        areas=dict(momentum=momentum, min_step=int(min_step),
                   note="S1 = sum of the LR over the updates so far; S2 = sum of m_i, "
                        "m_i = momentum * m_(i-1) + max(LR_(i-1) - LR_i, 0); points in the "
                        "warmup or before min_step are not fitted"),
        curve_to_final=scale,
        curve_to_final_note="final-evaluation loss / curve-window loss at the last step, "
                            "geometric mean over the fitted runs; multiplies every predicted "
                            "final loss",
        final_loss_fit=dict(mean_abs_rel_error=float(np.mean(np.abs(fitted_final / actual_final - 1))),
                            max_abs_rel_error=float(np.max(np.abs(fitted_final / actual_final - 1)))),
        source=table.source, notes=list(table.notes), warnings=warnings,
        provenance=provenance(table.source, table.read, len(points.logL), points.table.dropped),
        residuals=dict(log_loss=resid.tolist(), rmse_log=float(np.sqrt(np.mean(resid ** 2)))),
    )


def _bootstrap(law, points, res, best, huber_delta, n, seed, abandon, allocate) -> dict:
    """Refits on resampled runs: stderr, 95% intervals and the samples of every quantity."""
    groups, unit = bootstrap_groups(points.table)
    weights = bootstrap_weights(groups, n, seed)
    starts = bootstrap_starts(law, res, best)
    boot = bootstrap_fits(law, points.logX, points.logL, weights, starts, huber_delta,
                          abandon=abandon, abandon_after=BOOT_ABANDON_AFTER)
    samples = dict(law.to_natural(boot))
    samples.update(allocate(samples))
    stderr, ci95 = summarise(samples)
    return dict(stderr=stderr, ci95=ci95, bootstrap=dict(
        n=int(n), seed=int(seed), unit=unit, n_units=int(groups.max() + 1),
        starts_per_refit=int(len(starts)), interval="percentile, 2.5% to 97.5%"),
        _samples=samples)


def _extrapolation(points, law, runs, huber_delta, seed, abandon, holdout_schedule,
                   holdout_above_params):
    """The extrapolation check asked for (holding out one schedule's runs or the largest
    models), or None."""
    if holdout_schedule:
        held = [r for r in runs if points.schedules[r].kind == holdout_schedule]
        if not held:
            kinds = sorted({s.kind for s in points.schedules.values()})
            raise AnalysisError(f"--holdout-schedule {holdout_schedule}: no runs of that "
                                f"schedule (have {', '.join(kinds)})")
        return holdout(points, law, [r for r in runs if r not in held], held,
                       huber_delta, seed, abandon, schedule=holdout_schedule)
    if holdout_above_params is not None:
        held = [r for r in runs if points.N[r] > holdout_above_params]
        if not held:
            raise AnalysisError(f"--holdout-above-params {holdout_above_params:g}: no runs "
                                f"above it; choose a smaller threshold")
        return holdout(points, law, [r for r in runs if r not in held], held,
                       huber_delta, seed, abandon,
                       threshold_params=float(holdout_above_params))
    return None


def holdout(points: Points, law, fit_runs, held, huber_delta, seed, abandon, **rule):
    """Fit on `fit_runs`' curve points, predict `held`'s final losses with 95% prediction
    intervals: bootstrap refits over the fitted runs (parameter uncertainty) times the scatter
    of the fitted runs' own final losses about the law (log-normal, its RMS)."""
    if len(fit_runs) < 2:
        raise AnalysisError(f"the extrapolation check leaves {len(fit_runs)} run(s) to fit; "
                            f"it needs 2+")
    res, best, _, mask = _fit_runs(law, points, fit_runs, huber_delta, abandon)
    theta = res.x[best]
    params = {k: float(v) for k, v in law.to_natural(theta).items()}
    scale = points.curve_to_final(fit_runs)
    with_final = [r for r in fit_runs if r in points.final_loss]
    fitted = _predict_final(points, params, with_final, scale)
    scatter = float(np.sqrt(np.mean(np.log(np.array([points.final_loss[r] for r in with_final])
                                           / fitted) ** 2)))
    groups, _ = bootstrap_groups(points.table.subset(mask))
    weights = bootstrap_weights(groups, HOLDOUT_BOOTSTRAP, seed)
    boot = bootstrap_fits(law, points.logX[mask], points.logL[mask], weights,
                          bootstrap_starts(law, res, best), huber_delta, abandon=abandon,
                          abandon_after=BOOT_ABANDON_AFTER)
    samples = {k: v[:, None] for k, v in law.to_natural(boot).items()}
    held = [r for r in held if r in points.final_loss]
    pred = _predict_final(points, params, held, scale)
    boot_pred = _predict_final(points, samples, held, scale)[..., 0]  # (held, n_boot)
    noise = np.random.default_rng(seed).normal(0.0, scatter, boot_pred.shape)
    lo, hi = np.nanpercentile(boot_pred * np.exp(noise), [2.5, 97.5], axis=1)
    actual = np.array([points.final_loss[r] for r in held])
    rel = pred / actual - 1
    rows = [dict(run=r, params=float(points.N[r]), flops=points.final_flops.get(r),
                 schedule=points.schedules[r].kind, loss=float(a), predicted=float(p),
                 rel_error=float(e), interval=[float(l), float(h)], inside=bool(l <= a <= h))
            for r, a, p, e, l, h in zip(held, actual, pred, rel, lo, hi)]
    return dict(**rule, n_fit=len(fit_runs), n_heldout=len(held), params=params,
                curve_to_final=scale, final_scatter_log=scatter, heldout=rows,
                mean_abs_rel_error=float(np.mean(np.abs(rel))),
                max_abs_rel_error=float(np.max(np.abs(rel))),
                n_inside=int(sum(r["inside"] for r in rows)),
                interval_note=f"95% prediction interval: {HOLDOUT_BOOTSTRAP} bootstrap refits "
                              f"over the fitted runs, each times a log-normal draw with the "
                              f"fitted runs' final-loss scatter about the law")
