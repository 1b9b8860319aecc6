"""Best-of-hyperparameter selection: one run per point of the law.

Runs that share a point of the law, (N, D) for a fit or (N, budget) for iso-FLOP,
and differ in a tuned hyperparameter (the learning rate by default) are
alternatives, not replicates: by default only the lowest-loss one is kept, as
tuning each size is what a law of the *tuned* loss needs (Porian et al. 2024).
Rows that differ in seed are replicates and are never selected between.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .data import Results
from .errors import AnalysisError

DEFAULT_BY = ("learning_rate",)
EDGE_MARGIN = 0.1   # of the grid's smallest step in log LR: closer to an edge counts as at it
MODES = ("best", "all")


def _key(values):
    return tuple(float(f"{v:.6g}") if isinstance(v, float) else v for v in values)


def select_best(table: Results, point, point_names, *, mode="best", by=None):
    """Keep the lowest-loss row among rows sharing `point` (a list of per-row arrays) that
    differ in a column of `by`. Returns (table, info); info is JSON-ready."""
    if mode not in MODES:
        raise AnalysisError(f"unknown --select '{mode}'; use best or all")
    asked = by is not None
    by = tuple(by) if by else DEFAULT_BY
    missing = [c for c in by if not table.has(c)]
    if asked and missing:
        raise AnalysisError(f"{table.source}: --select-by column(s) {', '.join(missing)} not in "
                            f"the table (have: {', '.join(table.input_columns())})")
    by = tuple(c for c in by if table.has(c))
    info = dict(mode=mode, by=list(by), point=list(point_names), n_rows=len(table), n_dropped=0,
                dropped=[])
    if not by:
        info["note"] = f"no {'/'.join(DEFAULT_BY)} column: nothing to select between"
        return table, info
    loss = table.numeric("loss")
    seeds = table.text("seed")
    hyper = [table.text(c) for c in by]
    groups = defaultdict(list)
    for i in range(len(table)):
        groups[_key([float(p[i]) for p in point] + [seeds[i]])].append(i)
    drop = []
    for rows in groups.values():
        if len(rows) < 2 or len({tuple(h[i] for h in hyper) for i in rows}) < 2:
            continue  # one run, or rows that do not differ in the hyperparameters
        best = min(rows, key=lambda i: loss[i])
        drop += [i for i in rows if i != best]
    if mode == "all" or not drop:
        info["note"] = (f"--select all: fitting all {len(table)} rows" if mode == "all" else
                        f"no two rows at one ({', '.join(point_names)}) differ in {', '.join(by)}")
        return table, info
    drop = sorted(drop)
    info.update(n_dropped=len(drop), dropped=[table.labels[i] for i in drop],
                note=f"kept the lowest-loss run of each ({', '.join(point_names)}) over "
                     f"{', '.join(by)}: dropped {len(drop)} of {len(table)} rows "
                     f"(--select all fits them all)")
    keep = np.ones(len(table), bool)
    keep[drop] = False
    why = f"not the lowest loss among runs at its ({', '.join(point_names)}) over {', '.join(by)}"
    out = table.drop(keep, [why] * len(table))
    out.notes.append(f"selection: {info['note']}")
    return out, info


def lr_scan(table: Results, sizes, groups, column="learning_rate"):
    """Loss against `column` for each size, one curve per group (D or budget), and whether
    the size's best value lies at (or beyond) the edge of its grid. JSON-ready.

    The best LR of a size is the vertex of one parabola in log LR fitted to all its runs
    (each group with its own offset): the lowest single run is at the grid's edge by chance
    whenever the loss is flat near the optimum (with 1% noise all 4 sizes of a grid whose
    optimum was inside were flagged). With only 2 distinct values the lowest run decides."""
    if not table.has(column):
        return None
    try:
        lr = table.numeric(column)
    except AnalysisError:
        return None
    loss = table.numeric("loss")
    out = []
    for n in np.unique(sizes):
        m = sizes == n
        grid = np.unique(lr[m])
        if len(grid) < 2:
            continue
        curves, edge_any = [], False
        for g in np.unique(groups[m]):
            rows = np.flatnonzero(m & (groups == g))
            if len(np.unique(lr[rows])) < 2:
                continue
            o = rows[np.argsort(lr[rows])]
            best = float(lr[o[np.argmin(loss[o])]])
            at_edge = best in (float(grid[0]), float(grid[-1]))
            edge_any |= at_edge
            curves.append(dict(group=float(g), lr=lr[o].tolist(), loss=loss[o].tolist(),
                               best_lr=best, at_edge=bool(at_edge)))
        if not curves:
            continue
        entry = dict(N=float(n), grid=[float(grid[0]), float(grid[-1])], curves=curves,
                     best_at_edge=bool(edge_any), rule="lowest run")
        vertex = _log_lr_vertex(np.log(lr[m]), loss[m], groups[m]) if len(grid) >= 3 else None
        if vertex is not None:
            v, convex = vertex
            margin = EDGE_MARGIN * np.min(np.diff(np.log(grid)))  # a vertex on the edge is at it
            inside = convex and np.log(grid[0]) + margin < v < np.log(grid[-1]) - margin
            entry.update(best_at_edge=not inside, rule="parabola in log LR",
                         vertex_lr=float(np.exp(v)) if convex else None)
        out.append(entry)
    return dict(column=column, sizes=out) if out else None


def _log_lr_vertex(x, loss, groups):
    """(vertex, convex) of loss = offset[group] + q1 x + q2 x² by least squares; None when
    the runs cannot determine it."""
    labels = np.unique(groups)
    mid = x.mean()
    cols = [(groups == g).astype(float) for g in labels] + [x - mid, (x - mid) ** 2]
    X = np.stack(cols, 1)
    if len(x) <= X.shape[1] or np.linalg.matrix_rank(X) < X.shape[1]:
        return None
    coef, *_ = np.linalg.lstsq(X, loss, rcond=None)
    q1, q2 = coef[-2], coef[-1]
    if q2 <= 0:
        return float(mid), False  # concave or flat: the best LR is at an edge (or beyond)
    return float(mid - q1 / (2 * q2)), True


def edge_warnings(scan):
    if not scan:
        return []
    out = []
    for s in scan["sizes"]:
        if not s["best_at_edge"]:
            continue
        why = ""
        if s.get("rule") == "parabola in log LR":
            why = (f"; the parabola in log LR through its runs has its minimum at "
                   f"{s['vertex_lr']:.3g}" if s.get("vertex_lr") else
                   "; the loss is not convex in log LR there")
        out.append(f"N={s['N']:.3g}: best {scan['column']} lies at the edge of its grid "
                   f"({s['grid'][0]:.3g} .. {s['grid'][1]:.3g}){why}; widen the grid")
    return out
