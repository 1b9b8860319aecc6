"""DIR/results.csv: one row per finished data point, in the schema of common/results.py (the run's
result.json scalar fields plus its role, parent and compute budget), which `python -m analysis`
reads.

Rewritten whole and atomically after every finished run (under the sweep lock, so a slower
writer cannot put back an older table). WSD parents are left out: their constant-LR loss is not
a point of the law, their branches are. Failed runs are not rows; `status` lists them.
"""

from __future__ import annotations

from common import results as schema
from common.files import write_atomic
from experiments.sweeplib.layout import SweepDir


def rows(sweep_dir: SweepDir, runs) -> list[dict]:
    out = []
    for run in runs:
        if not run.is_data_point:
            continue
        result = sweep_dir.result(run.name)
        if not result or result.get("status") != "done":
            continue
        out.append(schema.row({"run": run.name, **result}, role=run.role,
                              parent=run.depends_on, compute_budget=run.compute_budget))
    return out


def write(sweep_dir: SweepDir, runs) -> int:
    """Call under SweepDir.lock(). Returns the number of rows written."""
    table = rows(sweep_dir, runs)
    write_atomic(sweep_dir.results_csv, schema.csv_text(table))
    return len(table)
