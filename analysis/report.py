"""Text summary, Markdown report, and one self-contained HTML page (PNGs inlined)."""

from __future__ import annotations

import base64
import html
import json
import os

import numpy as np


def public(result: dict) -> dict:
    """The JSON-ready part of a result (internal keys start with '_')."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def write_json(result: dict, path: str):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        # Strict JSON: a NaN or infinite value (e.g. a bootstrap interval no resample could
        # fill) is written as null, so any JSON reader can load the file.
        json.dump(_strict(public(result)), fh, indent=2, default=_jsonable, allow_nan=False)
    os.replace(tmp, path)


def _strict(v):
    if isinstance(v, dict):
        return {k: _strict(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x) for x in v]
    if isinstance(v, np.ndarray):
        return _strict(v.tolist())
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(type(v))


def _interval(result, name):
    ci = (result.get("ci95") or {}).get(name)
    return f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""


def fit_table_rows(fit: dict):
    """(name, value, stderr, 95% interval) for every parameter and derived quantity."""
    rows = []
    names = list(fit["params"]) + [k for k in ("a", "b", "G") if k in fit]
    values = dict(fit["params"], **{k: fit[k] for k in ("a", "b", "G") if k in fit})
    for c in fit.get("compute_optimal", {}).values():
        key = f"{c['flops']:.3g}"
        for q in ("N_opt", "D_opt", "tokens_per_param", "loss_opt"):
            names.append(f"{q}@{key}")
            values[f"{q}@{key}"] = c[q]
    for n in names:
        se = (fit.get("stderr") or {}).get(n)
        ci = (fit.get("ci95") or {}).get(n)
        rows.append((n, values[n], se, ci))
    return rows


def fit_summary(fit: dict, report_path: str | None = None) -> str:
    """The fitted law with its 95% intervals, diagnostics, and where the report is."""
    p = fit["params"]
    law = fit["formula"].format(**{k: f"{v:.4g}" for k, v in p.items()})
    lines = [f"{fit['law']} fit on {fit['n_points']} points: {law}"]
    for n, v, se, ci in fit_table_rows(fit):
        extra = f" ± {se:.3g} (95% CI {ci[0]:.4g} .. {ci[1]:.4g})" if ci else ""
        lines.append(f"  {n:>24} = {v:.6g}{extra}")
    lines.append(f"  starts: {fit['n_starts']}, at best objective: {fit['n_starts_at_best']}, "
                 f"objective {fit['objective']:.6g}")
    if fit.get("bootstrap"):
        b = fit["bootstrap"]
        lines.append(f"  bootstrap: {b['n']} resamples of {b['n_units']} {b['unit']}, seed {b['seed']}")
    if "extrapolation" in fit:
        e = fit["extrapolation"]
        lines.append(f"  extrapolation: fit on {e['n_fit']} runs with {_holdout_rule(e)}, "
                     f"{e['n_heldout']} held out: mean |rel err| {e['mean_abs_rel_error']:.3%}, "
                     f"max {e['max_abs_rel_error']:.3%}")
    for w in fit["warnings"]:
        lines.append(f"  warning: {w}")
    for n in fit.get("notes", []):
        lines.append(f"  note: {n}")
    if report_path:
        lines.append(f"  report: {report_path}")
    return "\n".join(lines)


def isoflop_summary(res: dict, path: str | None = None) -> str:
    lines = [f"iso-FLOP ({res['grouping']}), {len(res['budgets'])} budgets: "
             f"N_opt ∝ C^{res['a']:.4f}{_interval(res, 'a')}, "
             f"D_opt ∝ C^{res['b']:.4f}{_interval(res, 'b')}"]
    for b in res["budgets"]:
        lines.append(f"  C={b['budget']:.3g}: N_opt={b['N_opt']:.4g} D_opt={b['D_opt']:.4g} "
                     f"loss={b['loss_opt']:.4f} ({b['n_runs']} runs{'' if b['used'] else ', not used'})")
    lines += [f"  warning: {w}" for w in res["warnings"]]
    if path:
        lines.append(f"  report: {path}")
    return "\n".join(lines)


def _fmt(v):
    return "" if v is None else f"{v:.5g}"


def markdown(title: str, summary: str, table_rows, pngs, extra_sections=()) -> str:
    out = [f"# {title}", "", "```", summary, "```", ""]
    if table_rows:
        out += ["| quantity | value | stderr | 95% CI |", "|---|---|---|---|"]
        for n, v, se, ci in table_rows:
            out.append(f"| {n} | {_fmt(v)} | {_fmt(se)} | "
                       f"{'' if not ci else f'{ci[0]:.5g} .. {ci[1]:.5g}'} |")
        out.append("")
    for head, body in extra_sections:
        out += [f"## {head}", "", body, ""]
    for p in pngs:
        name = os.path.basename(p)
        out += [f"![{name}]({name})", ""]
    return "\n".join(out)


def html_page(title: str, summary: str, table_rows, pngs, extra_sections=()) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
             "text-align:right}img{max-width:100%}</style></head><body>",
             f"<h1>{esc(title)}</h1><pre>{esc(summary)}</pre>"]
    if table_rows:
        parts.append("<table><tr><th>quantity</th><th>value</th><th>stderr</th><th>95% CI</th></tr>")
        for n, v, se, ci in table_rows:
            ci_s = "" if not ci else f"{ci[0]:.5g} .. {ci[1]:.5g}"
            parts.append(f"<tr><td>{esc(n)}</td><td>{_fmt(v)}</td><td>{_fmt(se)}</td>"
                         f"<td>{ci_s}</td></tr>")
        parts.append("</table>")
    for head, body in extra_sections:
        parts.append(f"<h2>{esc(head)}</h2><pre>{esc(body)}</pre>")
    for p in pngs:
        with open(p, "rb") as fh:
            data = base64.b64encode(fh.read()).decode("ascii")
        parts.append(f"<p><img alt='{esc(os.path.basename(p))}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str, title: str, summary: str, table_rows, pngs, extra_sections=()):
    md = os.path.join(out_dir, "report.md")
    with open(md, "w", encoding="utf-8") as fh:
        fh.write(markdown(title, summary, table_rows, pngs, extra_sections))
    page = os.path.join(out_dir, "report.html")
    with open(page, "w", encoding="utf-8") as fh:
        fh.write(html_page(title, summary, table_rows, pngs, extra_sections))
    return md, page


def _holdout_rule(ex: dict) -> str:
    if "threshold_params" in ex:
        return f"N <= {ex['threshold_params']:.3g}"
    return f"C <= {ex['threshold_flops']:.3g}"


def extrapolation_text(ex: dict) -> str:
    lines = [f"fit on {ex['n_fit']} runs with {_holdout_rule(ex)}; "
             f"predicted {ex['n_heldout']} held-out runs"]
    for r in ex["heldout"]:
        lines.append(f"{r['run']}: C={r['flops']:.3g} loss={r['loss']:.4f} "
                     f"predicted={r['predicted']:.4f} rel.err={r['rel_error']:+.3%}")
    return "\n".join(lines)
