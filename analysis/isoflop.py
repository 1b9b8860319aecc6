"""Approach 2 of Hoffmann et al. (2022): iso-FLOP parabolas.

Runs are grouped by compute budget (exact values, or log-spaced bins when the
budgets are not shared); within each budget a parabola of loss against log N
(and, separately, against log D) gives the optimum; then log N_opt = a log C + k
and log D_opt = b log C + k' are fitted by least squares. The bootstrap
resamples runs within each budget.
"""

from __future__ import annotations

import numpy as np

from .compute import compute_column, cost_model
from .data import Results, final_rows, to_results
from .errors import AnalysisError
from .provenance import provenance
from .select import edge_warnings, lr_scan, select_best

MIN_RUNS_PER_BUDGET = 3


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


def _parabola_min(x, loss):
    """Vertex (x*, loss*) of the least-squares parabola; None if not convex."""
    if len(np.unique(x)) < 3:
        return None
    mid = x.mean()
    c2, c1, c0 = np.polyfit(x - mid, loss, 2)
    if c2 <= 0:
        return None
    xs = -c1 / (2 * c2)
    return xs + mid, c0 - c1 * c1 / (4 * c2), (c2, c1, c0, mid)


def budget_optima(logC, logN, logD, loss, labels):
    """Per-budget optima: list of dicts (log values) and the budgets skipped with reasons."""
    rows, skipped = [], []
    for lab in np.unique(labels):
        m = labels == lab
        if m.sum() < MIN_RUNS_PER_BUDGET:
            skipped.append(f"budget 1e{lab:g}: {m.sum()} runs (need {MIN_RUNS_PER_BUDGET})")
            continue
        pn, pd = _parabola_min(logN[m], loss[m]), _parabola_min(logD[m], loss[m])
        if pn is None or pd is None:
            skipped.append(f"budget 1e{lab:g}: loss is not convex in log N")
            continue
        inside = logN[m].min() <= pn[0] <= logN[m].max()
        rows.append(dict(log_budget=float(np.mean(logC[m])), log_N_opt=pn[0], log_D_opt=pd[0],
                         loss_opt=pn[1], n_runs=int(m.sum()), inside=bool(inside),
                         parabola_N=pn[2], label=lab))
    return rows, skipped


def _slopes(opt):
    use = [o for o in opt if o["inside"]]
    if len(use) < 2:
        return None
    c = np.array([o["log_budget"] for o in use])
    a, ka = np.polyfit(c, [o["log_N_opt"] for o in use], 1)
    b, kb = np.polyfit(c, [o["log_D_opt"] for o in use], 1)
    return a, b, ka, kb


def isoflop(table: Results, *, bootstrap=1000, seed=0, bin_width_dex=None, params_column="params",
            compute="auto", select="best", select_by=None, reference_flops=None):
    """Approach 2 fit; returns a JSON-ready dict (the content of isoflop.json)."""
    table = final_rows(to_results(table))  # a Results, a DataFrame or a path
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
    N = table.numeric(params_column)
    D = table.numeric("tokens")
    loss = table.numeric("loss")
    logC, logN, logD = np.log(C), np.log(N), np.log(D)
    opt, skipped = budget_optima(logC, logN, logD, loss, labels)
    fitted = _slopes(opt)
    if fitted is None:
        raise AnalysisError(
            f"{table.source}: iso-FLOP needs at least 2 budgets with >= {MIN_RUNS_PER_BUDGET} runs "
            f"and an interior loss minimum (found {len(opt)} usable; grouping: {grouping}); "
            f"add runs or pass a bin width")
    a, b, ka, kb = fitted
    warnings = [f"skipped {s}" for s in skipped]
    warnings += [f"budget {np.exp(o['log_budget']):.3g}: optimum N outside the sampled sizes; "
                 f"not used for the exponents" for o in opt if not o["inside"]]
    warnings += edge_warnings(scan)
    warnings = list(table.warnings) + warnings
    notes = list(table.notes)
    if planned is None:
        notes.append(f"grouping: {grouping}")
    refs = [float(c) for c in reference_flops] if reference_flops else \
        [float(np.max(C)) * m for m in (1, 10, 100)]

    samples = _bootstrap(logC, logN, logD, loss, labels, bootstrap, seed)
    out = dict(
        method="iso-FLOP parabolas (Hoffmann et al. 2022, Approach 2)", grouping=grouping,
        compute=cost.describe(),
        a=float(a), b=float(b), N_coeff=float(np.exp(ka)), D_coeff=float(np.exp(kb)),
        compute_optimal={f"{c:.3g}": dict(flops=c, N_opt=float(np.exp(ka) * c ** a),
                                          D_opt=float(np.exp(kb) * c ** b)) for c in refs},
        budgets=[dict(budget=float(np.exp(o["log_budget"])), N_opt=float(np.exp(o["log_N_opt"])),
                      D_opt=float(np.exp(o["log_D_opt"])), loss_opt=float(o["loss_opt"]),
                      n_runs=o["n_runs"], used=o["inside"]) for o in opt],
        n_points=int(len(loss)), selection=selection, lr_scan=scan, source=table.source,
        notes=notes, warnings=warnings,
        provenance=provenance(table.source, table.read, len(loss), table.dropped))
    if samples is not None:
        out["stderr"] = {k: float(np.std(v, ddof=1)) for k, v in samples.items()}
        out["ci95"] = {k: [float(q) for q in np.percentile(v, [2.5, 97.5])]
                       for k, v in samples.items()}
        out["bootstrap"] = dict(n=int(bootstrap), n_valid=int(len(samples["a"])), seed=int(seed),
                                unit="runs within each budget", interval="percentile, 2.5% to 97.5%")
    out["_curves"] = dict(opt=opt, logC=logC, logN=logN, loss=loss, labels=labels,
                          axis=cost.axis_label())
    return out


def _bootstrap(logC, logN, logD, loss, labels, n_boot, seed):
    if not n_boot:
        return None
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
    res = []
    for _ in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        opt, _ = budget_optima(logC[idx], logN[idx], logD[idx], loss[idx], labels[idx])
        fitted = _slopes(opt)
        if fitted is not None:
            res.append(fitted[:2])
    if len(res) < 2:
        return None
    res = np.array(res)
    return dict(a=res[:, 0], b=res[:, 1])
