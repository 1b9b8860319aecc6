"""Approach 2 of Hoffmann et al. (2022): iso-FLOP parabolas.

Runs are grouped by compute budget (exact values, or log-spaced bins when the
budgets are not shared); within each budget a parabola of loss against log N
(and, separately, against log D) gives the optimum; then log N_opt = a log C + k
and log D_opt = b log C + k' are fitted by least squares. The bootstrap
resamples runs within each budget.
"""

from __future__ import annotations

import numpy as np

from .data import Results, final_rows, load_results
from .errors import AnalysisError

MIN_RUNS_PER_BUDGET = 3


def group_budgets(flops, bin_width_dex=None):
    """Budget label per run: exact values when shared, else log10 bins of `bin_width_dex`."""
    rounded = np.round(np.log10(flops), 6)
    values, counts = np.unique(rounded, return_counts=True)
    if bin_width_dex is None and (counts >= MIN_RUNS_PER_BUDGET).sum() >= 2:
        return rounded, "exact"
    width = bin_width_dex or 0.1
    centre = np.round(np.log10(flops) / width) * width
    return np.round(centre, 6), f"log10 bins of {width:g} dex"


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


def isoflop(table: Results, *, bootstrap=1000, seed=0, bin_width_dex=None, params_column="params"):
    """Approach 2 fit; returns a JSON-ready dict (the content of isoflop.json)."""
    if not isinstance(table, Results):
        table = load_results(table)  # a path: CSV, JSONL or sweep directory
    table = final_rows(table)
    N = table.numeric(params_column)
    D = table.numeric("tokens")
    C = table.numeric("flops") if table.has("flops") else 6.0 * N * D
    loss = table.numeric("loss")
    labels, grouping = group_budgets(C, bin_width_dex)
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

    samples = _bootstrap(logC, logN, logD, loss, labels, bootstrap, seed)
    out = dict(
        method="iso-FLOP parabolas (Hoffmann et al. 2022, Approach 2)", grouping=grouping,
        a=float(a), b=float(b), N_coeff=float(np.exp(ka)), D_coeff=float(np.exp(kb)),
        budgets=[dict(budget=float(np.exp(o["log_budget"])), N_opt=float(np.exp(o["log_N_opt"])),
                      D_opt=float(np.exp(o["log_D_opt"])), loss_opt=float(o["loss_opt"]),
                      n_runs=o["n_runs"], used=o["inside"]) for o in opt],
        n_points=int(len(loss)), source=table.source, notes=list(table.notes), warnings=warnings)
    if samples is not None:
        out["stderr"] = {k: float(np.std(v, ddof=1)) for k, v in samples.items()}
        out["ci95"] = {k: [float(q) for q in np.percentile(v, [2.5, 97.5])]
                       for k, v in samples.items()}
        out["bootstrap"] = dict(n=int(bootstrap), n_valid=int(len(samples["a"])), seed=int(seed),
                                unit="runs within each budget", interval="percentile, 2.5% to 97.5%")
    out["_curves"] = dict(opt=opt, logC=logC, logN=logN, loss=loss, labels=labels)
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
