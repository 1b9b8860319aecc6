"""Text summary, Markdown report, and one self-contained HTML page (PNGs inlined)."""

from __future__ import annotations

import base64
import html
import json
import os

import numpy as np

from common.files import write_atomic

from .uncertainty import describe, num, pm, quantities, rounded


def public(result: dict) -> dict:
    """The JSON-ready part of a result (internal keys start with '_')."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def write_json(result: dict, path: str):
    # Strict JSON: a NaN or infinite value (e.g. a bootstrap interval no resample could fill)
    # is written as null, so any JSON reader can load the file.
    write_atomic(path, json.dumps(_strict(public(result)), indent=2, default=_jsonable,
                                  allow_nan=False))


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


def fit_table_rows(fit: dict):
    """(name, value, stderr, 95% interval, identified) for every parameter and derived
    quantity; value and stderr are None for a quantity the data do not identify."""
    rows = []
    ident = fit.get("identified", {})
    for n, v in quantities(fit).items():
        se = (fit.get("stderr") or {}).get(n)
        ci = (fit.get("ci95") or {}).get(n)
        ok = ident.get(n, True)
        rows.append((n, v if ok else None, se if ok else None, ci, ok))
    return rows


def headline(fit: dict) -> str:
    """The law with identified values filled in; unidentified terms keep their symbol."""
    ident = fit.get("identified", {})
    vals = {k: (num(v) if ident.get(k, True) else f"{k}*") for k, v in fit["params"].items()}
    law = fit["formula"].format(**vals)
    missing = [k for k in fit["params"] if not ident.get(k, True)]
    if missing:
        law += f"   (* not identified: {', '.join(missing)})"
    return law


def fit_summary(fit: dict, report_path: str | None = None) -> str:
    """The fitted law with its 95% intervals, diagnostics, and where the report is."""
    lines = [f"{fit['law']} fit on {fit['n_points']} points: {headline(fit)}"]
    if "compute" in fit:
        lines.append(f"  compute convention: {fit['compute']['formula']}")
    for n, v, se, ci, ok in fit_table_rows(fit):
        if ok and v is not None:
            lines.append(f"  {describe(n, v, se, ci, True)}")
        else:
            lines.append(f"  {describe(n, v, se, ci, False)}")
    abandoned = fit.get("n_starts_abandoned")
    dropped = f" ({abandoned} abandoned as unable to reach the best)" if abandoned else ""
    screened = fit.get("n_starts_screened")
    screened = f" best of {screened} by their starting objective" if screened else ""
    lines.append(f"  starts: {fit['n_starts']}{screened}{dropped}, at best objective: "
                 f"{fit['n_starts_at_best']}, objective {fit['objective']:.6g}")
    if fit.get("bootstrap"):
        b = fit["bootstrap"]
        lines.append(f"  bootstrap: {b['n']} resamples of {b['n_units']} {b['unit']}, seed {b['seed']}")
    elif fit.get("stderr"):
        lines.append("  intervals: approximate (no bootstrap): Gauss-Newton covariance at the "
                     "optimum and the spread of the best starts; --bootstrap N for resampled ones")
    else:
        lines.append("  uncertainty not estimated (no bootstrap)")
    if "extrapolation" in fit:
        e = fit["extrapolation"]
        inside = (f", {e['n_inside']} of {e['n_heldout']} inside their 95% prediction interval"
                  if e.get("prediction_interval") else ", no prediction intervals (no bootstrap)")
        lines.append(f"  extrapolation: fit on {e['n_fit']} runs with {_holdout_rule(e)}, "
                     f"{e['n_heldout']} held out: mean |rel err| {e['mean_abs_rel_error']:.3%}, "
                     f"max {e['max_abs_rel_error']:.3%}{inside}")
    return "\n".join(lines + closing_lines(fit, report_path))


def isoflop_summary(res: dict, path: str | None = None) -> str:
    se, ci = res.get("stderr") or {}, res.get("ci95") or {}

    def exponent(k):
        if k not in ci:
            return f"{num(res[k], 3)} (uncertainty not estimated)"
        return f"{pm(res[k], se[k])} (95% CI {num(ci[k][0], 3)} .. {num(ci[k][1], 3)})"

    lines = [f"iso-FLOP ({res['grouping']}), {len(res['budgets'])} budgets: "
             f"N_opt ∝ C^{exponent('a')}, D_opt = C / f(N_opt) ∝ C^{exponent('b')}"]
    for b in res["budgets"]:
        s = b.get("log_N_opt_stderr")
        n = pm(b["N_opt"], b["N_opt"] * s) if s else num(b["N_opt"])
        lines.append(f"  C={num(b['budget'], 3)}: N_opt={n} D_opt={num(b['D_opt'], 3)} "
                     f"loss={b['loss_opt']:.4f} ({b['n_runs']} runs"
                     f"{'' if b['used'] else ', not used'})")
    return "\n".join(lines + closing_lines(res, path))


def closing_lines(result: dict, report_path=None) -> list[str]:
    """The end of every printed summary: its warnings, its notes, and where the report is."""
    lines = [f"  warning: {w}" for w in result["warnings"]]
    lines += [f"  note: {n}" for n in result.get("notes", [])]
    if report_path:
        lines.append(f"  report: {report_path}")
    return lines

def envelope_text(env: dict) -> str:
    """Approach 1 in one line: exponents with their bootstrap intervals and what they rest on."""
    if env["a"] is None:
        return env["warnings"][-1]
    ci = env.get("ci95") or {}
    parts = []
    for k, name in (("a", "N_opt"), ("b", "D_opt")):
        rng = f" (95% CI {num(ci[k][0], 3)} .. {num(ci[k][1], 3)})" if k in ci else ""
        parts.append(f"{name} ∝ C^{num(env[k], 3)}{rng}")
    return (f"{', '.join(parts)} through {env['n_points_used']} crossings of the envelope "
            f"from one size to another (>= 3 curves overlapping) over {env['n_runs']} runs")


def _cells(row):
    """(value, stderr, interval) cells of a table row; unidentified rows say so."""
    n, v, se, ci = row[:4]
    ok = row[4] if len(row) > 4 else True
    rng = "" if not ci else f"{num(ci[0], 3)} .. {num(ci[1], 3)}"
    if not ok:
        return "not identified", "", rng
    return rounded(v, se), ("" if se is None else num(se, 2)), rng


RUNS_HEADER = ("run", "N", "D", "C (FLOPs)", "loss", "± stderr", "role")


def input_runs(fit: dict) -> list:
    """One row per input run: what was fitted, what the extrapolation check held out (with
    the prediction of the fit made without it), and what was left out and why."""
    d = fit.get("_data")
    if not d:
        return []
    law, logX, logL = d["law"], d["logX"], d["logL"]
    held = {r["run"]: r for r in (fit.get("extrapolation") or {}).get("heldout", [])}
    runs = d.get("runs") or [f"row {i + 1}" for i in range(len(logL))]
    stderr = d.get("stderr")
    cols = dict(zip(law.x, range(logX.shape[1])))
    rows = []
    for i, run in enumerate(runs):
        se = "" if stderr is None or not np.isfinite(stderr[i]) else f"{stderr[i]:.3g}"
        role = "fitted"
        if run in held:
            role = f"held out: predicted {held[run]['predicted']:.4g} ({held[run]['rel_error']:+.2%})"
        rows.append((run, _g(logX, cols, "params", i), _g(logX, cols, "tokens", i),
                     f"{np.exp(d['logC'][i]):.3g}", f"{np.exp(logL[i]):.4g}", se, role))
    for drop in ((fit.get("provenance") or {}).get("rows") or {}).get("dropped", []):
        rows.append((str(drop.get("row", "")), "", "", "", "", "", f"left out: {drop.get('reason', '')}"))
    return rows


def _g(logX, cols, name, i):
    return f"{np.exp(logX[i, cols[name]]):.3g}" if name in cols else ""


def _runs_markdown(rows):
    out = ["## Input runs", "", "| " + " | ".join(RUNS_HEADER) + " |",
           "|" + "---|" * len(RUNS_HEADER)]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return out + [""]


def _runs_html(rows):
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in RUNS_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<h2>Input runs</h2><table><tr>{head}</tr>{body}</table>"


def markdown(title: str, summary: str, table_rows, pngs, extra_sections=(), runs=()) -> str:
    out = [f"# {title}", "", "```", summary, "```", ""]
    if table_rows:
        out += ["## Fitted parameters", "", "| quantity | value | stderr | 95% CI |",
                "|---|---|---|---|"]
        for row in table_rows:
            v, se, rng = _cells(row)
            out.append(f"| {row[0]} | {v} | {se} | {rng} |")
        out.append("")
    for head, body in extra_sections:
        out += [f"## {head}", "", body, ""]
    if runs:
        out += _runs_markdown(runs)
    for p in pngs:
        name = os.path.basename(p)
        out += [f"![{name}]({name})", ""]
    return "\n".join(out)


def html_page(title: str, summary: str, table_rows, pngs, extra_sections=(), runs=()) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
             "text-align:right}img{max-width:100%}</style></head><body>",
             f"<h1>{esc(title)}</h1><pre>{esc(summary)}</pre>"]
    if table_rows:
        parts.append("<h2>Fitted parameters</h2>")
        parts.append("<table><tr><th>quantity</th><th>value</th><th>stderr</th><th>95% CI</th></tr>")
        for row in table_rows:
            v, se, rng = _cells(row)
            parts.append(f"<tr><td>{esc(row[0])}</td><td>{esc(v)}</td><td>{esc(se)}</td>"
                         f"<td>{esc(rng)}</td></tr>")
        parts.append("</table>")
    for head, body in extra_sections:
        parts.append(f"<h2>{esc(head)}</h2><pre>{esc(body)}</pre>")
    if runs:
        parts.append(_runs_html(runs))
    for p in pngs:
        with open(p, "rb") as fh:
            data = base64.b64encode(fh.read()).decode("ascii")
        parts.append(f"<p><img alt='{esc(os.path.basename(p))}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str, title: str, summary: str, table_rows, pngs, extra_sections=(),
                 runs=()):
    md = os.path.join(out_dir, "report.md")
    write_atomic(md, markdown(title, summary, table_rows, pngs, extra_sections, runs))
    page = os.path.join(out_dir, "report.html")
    write_atomic(page, html_page(title, summary, table_rows, pngs, extra_sections, runs))
    return md, page


def _holdout_rule(ex: dict) -> str:
    if "threshold_params" in ex:
        return f"N <= {ex['threshold_params']:.3g}"
    return f"C <= {ex['threshold_flops']:.3g}"


def extrapolation_text(ex: dict) -> str:
    lines = [f"fit on {ex['n_fit']} runs with {_holdout_rule(ex)}; "
             f"predicted {ex['n_heldout']} held-out runs"]
    for r in ex["heldout"]:
        pi = ""
        if "pi95" in r:
            pi = (f" 95% PI {r['pi95'][0]:.4f} .. {r['pi95'][1]:.4f} "
                  f"({'inside' if r['inside'] else 'OUTSIDE'})")
        lines.append(f"{r['run']}: C={r['flops']:.3g} loss={r['loss']:.4f} "
                     f"predicted={r['predicted']:.4f} rel.err={r['rel_error']:+.3%}{pi}")
    return "\n".join(lines)
