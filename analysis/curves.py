"""Training curves as data: a sweep's metrics.jsonl files -> the table Approach 1 reads.

Each run directory holds metrics.jsonl (rows with `step` and `eval/loss` or
`train/loss`) and result.json (params, nonembedding_params, flops_per_token,
batch_size, context_length). Rows that already carry `tokens` and `flops` are
taken as they are; otherwise tokens = step x batch_size x context_length and
flops = flops_per_token x tokens, the same arithmetic the run used for its total.

Each row also carries its run's schedule (kind, peak `learning_rate`, `min_lr_ratio`,
`warmup_steps`, `decay_start`, `total_steps`, `tokens_per_step`, from config.json), the LR of
the last update and the areas under the schedule so far (`lr_area` S1 and `lr_anneal_area` S2,
analysis/schedules.py; recomputed from the schedule for runs whose rows predate them), and
`curve_loss`: the loss on the curve's fixed windows, the same at every step of a run (at the
last step `loss` is the larger final evaluation, `curve_loss` the curve's own windows).
"""

from __future__ import annotations

import csv
import io
import os

from common import files

from .data import Results, run_root
from .errors import AnalysisError
from .schedules import Schedule

ANNEAL_MOMENTUM = 0.999  # the momentum of the exported lr_anneal_area (research/lr_areas.py's)
COLUMNS = ("run", "params", "nonembedding_params", "tokens", "flops", "loss", "loss_stderr",
           "step", "learning_rate", "branched_from", "loss_source", "curve_loss",
           "curve_loss_stderr", "lr", "lr_area", "lr_anneal_area", "schedule", "min_lr_ratio",
           "warmup_steps", "decay_start", "total_steps", "tokens_per_step")
SOURCES = ("auto", "eval", "train")


def _metrics(path):
    return [row for row in files.read_jsonl(path) if isinstance(row, dict) and "step" in row]


def _run_facts(run_dir, result):
    """params, nonembedding_params, flops_per_token, tokens_per_step for one run."""
    cfg = files.read_json(os.path.join(run_dir, "config.json"), default=None) or {}
    train, model = cfg.get("train", {}), cfg.get("model", {})
    batch = result.get("batch_size", train.get("batch_size"))
    ctx = result.get("context_length", model.get("context_length"))
    fpt = result.get("flops_per_token")
    if fpt is None and result.get("flops") and result.get("tokens"):
        fpt = float(result["flops"]) / float(result["tokens"])
    per_step = (batch * ctx) if batch and ctx else None
    facts = dict(params=result.get("params"), nonembedding_params=result.get("nonembedding_params"),
                 flops_per_token=fpt, tokens_per_step=per_step,
                 learning_rate=result.get("learning_rate", train.get("learning_rate")),
                 schedule=None)
    steps = result.get("steps")
    if train.get("learning_rate") and steps:
        facts["schedule"] = Schedule.from_train(train, int(steps))
    return facts


def _schedule_columns(facts, step, row):
    """The run's schedule and, at `step`, its LR and areas (the row's own when it has them)."""
    sched = facts["schedule"]
    if sched is None:
        return dict(lr=row.get("lr"), lr_area=row.get("lr_area"),
                    lr_anneal_area=row.get("lr_anneal_area"))
    if "areas" not in facts:
        facts["lrs"] = sched.learning_rates()
        facts["areas"] = sched.areas(ANNEAL_MOMENTUM)
    s1, s2 = facts["areas"]
    step = min(step, sched.total_steps)
    return dict(lr=row.get("lr", float(facts["lrs"][step - 1])),
                lr_area=row.get("lr_area", float(s1[step])),
                lr_anneal_area=row.get("lr_anneal_area", float(s2[step])),
                schedule=sched.kind, min_lr_ratio=sched.min_lr_ratio, warmup_steps=sched.warmup,
                decay_start=sched.decay_start, total_steps=sched.total_steps,
                tokens_per_step=facts["tokens_per_step"])


def collect(sweep_dir, source="auto"):
    """(records, notes): one record per eval (or train) row of every finished run."""
    if source not in SOURCES:
        raise AnalysisError(f"unknown --source '{source}'; use auto, eval or train")
    if not os.path.isdir(sweep_dir):
        raise AnalysisError(f"{sweep_dir}: not a directory; pass a sweep or run directory")
    root = run_root(sweep_dir)
    if os.path.isfile(os.path.join(sweep_dir, "metrics.jsonl")):
        run_dirs = [sweep_dir]  # one run directory
    else:
        run_dirs = [os.path.join(root, n) for n in sorted(os.listdir(root))
                    if os.path.isfile(os.path.join(root, n, "metrics.jsonl"))]
    parents = _parents(sweep_dir)
    runs, notes = {}, []
    for d in run_dirs:
        name = os.path.basename(os.path.normpath(d))
        result = files.read_json(os.path.join(d, "result.json"), default=None)
        if not result or result.get("status", "done") != "done":
            notes.append(f"skipped {name}: not finished (no result.json with status 'done')")
            continue
        runs[name] = (_run_facts(d, result), _metrics(os.path.join(d, "metrics.jsonl")))
    if not runs:
        raise AnalysisError(f"{sweep_dir}: no finished runs with metrics.jsonl; run the sweep first")
    n_eval = {r: sum("eval/loss" in m for m in ms) for r, (_, ms) in runs.items()}
    if source == "auto":
        source = "eval" if min(n_eval.values()) >= 2 else "train"
        if source == "train":
            notes.append(f"loss from train/loss rows: {sum(v < 2 for v in n_eval.values())} runs "
                         f"have fewer than 2 eval rows (set train.eval_points to evaluate along "
                         f"the run)")
    key = f"{source}/loss"
    records = []
    for name, (facts, rows) in runs.items():
        for m in rows:
            if key not in m:
                continue
            step = int(m["step"])
            tokens = m.get("tokens")
            if tokens is None:
                if facts["tokens_per_step"] is None:
                    raise AnalysisError(f"{name}: no tokens in metrics rows and no batch_size/"
                                        f"context_length in result.json or config.json")
                tokens = step * facts["tokens_per_step"]
            flops = m.get("flops")
            if flops is None and facts["flops_per_token"] is not None:
                flops = facts["flops_per_token"] * tokens
            if step <= 0 or not tokens:
                continue  # the loss before training is not a point of any curve
            curve = m.get("eval/curve_loss", m[key]) if source == "eval" else m[key]
            curve_err = m.get("eval/curve_loss_stderr", m.get(f"{source}/loss_stderr")) \
                if source == "eval" else None
            records.append(dict(run=name, params=facts["params"],
                                nonembedding_params=facts["nonembedding_params"], tokens=tokens,
                                flops=flops, loss=m[key], loss_stderr=m.get(f"{source}/loss_stderr"),
                                step=step, learning_rate=facts["learning_rate"],
                                branched_from=parents.get(name, ""), loss_source=key,
                                curve_loss=curve, curve_loss_stderr=curve_err,
                                **_schedule_columns(facts, step, m)))
    return records, notes


def _parents(sweep_dir):
    """run -> WSD parent, from the sweep's results.csv when there is one."""
    path = os.path.join(sweep_dir, "results.csv")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return {r["run"]: r.get("parent") or "" for r in csv.DictReader(fh) if r.get("run")}


def curves_table(sweep_dir, source="auto") -> Results:
    records, notes = collect(sweep_dir, source)
    if not records:
        raise AnalysisError(f"{sweep_dir}: no loss rows in any metrics.jsonl; run the sweep first")
    columns = {k: [r.get(k) for r in records] for k in COLUMNS}
    labels = [f"{r['run']} step {r['step']}" for r in records]
    return Results(columns, labels, sweep_dir, notes)


def write_curves(sweep_dir, out_dir, source="auto"):
    """Writes out_dir/curves.csv; returns (path, table)."""
    table = curves_table(sweep_dir, source)
    path = os.path.join(out_dir, "curves.csv")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for i in range(len(table)):
        w.writerow(["" if table.columns[k][i] is None else table.columns[k][i] for k in COLUMNS])
    files.write_atomic(path, buf.getvalue())
    return path, table
