"""The sweep's fit on Weights & Biases: its own run in the sweep's group, with the fitted
parameters, their intervals and the figures (when the sweep's base config says log.wandb=True).

The training runs log themselves (research/metrics.py), grouped under the sweep's name; this
adds one run named `<sweep>-fit` (job type "analysis") beside them.
"""

from __future__ import annotations

import json
import sys

from experiments.sweeplib.layout import SweepDir


def fit_settings(sweep) -> dict | None:
    log = sweep.base.get("log")
    if not log or not log.get("wandb", False):
        return None
    return {"project": log.get("wandb_project") or None, "entity": log.get("wandb_entity") or None,
            "group": log.get("wandb_group") or str(sweep.name)}


def log_fit(sweep_dir: SweepDir, sweep, out=print) -> bool:
    """Log DIR/analysis/fit.json and its figures to a W&B run of their own. Returns whether it
    did; a tracking failure is one line and never fails the sweep."""
    settings = fit_settings(sweep)
    fit_file = sweep_dir.analysis / "fit.json"
    if settings is None or not fit_file.exists():
        return False
    try:
        import wandb
    except ImportError:
        out("note: log.wandb=True but wandb is not installed; the fit was not logged to W&B")
        return False
    fit = json.loads(fit_file.read_text())
    try:
        run = wandb.init(project=settings["project"], entity=settings["entity"],
                         group=settings["group"], name=f"{sweep.name}-fit", job_type="analysis",
                         dir=str(sweep_dir.analysis), config={"law": fit.get("law"),
                                                              "formula": fit.get("formula"),
                                                              "n_points": fit.get("n_points")})
        summary = {f"fit/{k}": v for k, v in (fit.get("params") or {}).items()}
        for k, (lo, hi) in ((k, v) for k, v in (fit.get("ci95") or {}).items() if v):
            summary[f"fit/{k}_ci95_low"], summary[f"fit/{k}_ci95_high"] = lo, hi
        for k, ok in (fit.get("identified") or {}).items():
            summary[f"fit/{k}_identified"] = bool(ok)
        ex = fit.get("extrapolation")
        if ex:
            summary["fit/extrapolation_max_abs_rel_error"] = ex.get("max_abs_rel_error")
        images = {f"figures/{p.stem}": wandb.Image(str(p))
                  for p in sorted(sweep_dir.analysis.glob("*.png"))}
        run.log({**summary, **images})
        run.summary.update(summary)
        report = sweep_dir.analysis / "report.html"
        if report.exists():
            run.save(str(report), base_path=str(sweep_dir.analysis))
        run.finish()
    except Exception as e:  # tracking is for people; the fit on disk is the result
        out(f"note: logging the fit to W&B failed ({type(e).__name__}: {e})")
        return False
    out(f"fit logged to W&B: group {settings['group']}, run {sweep.name}-fit")
    return True


