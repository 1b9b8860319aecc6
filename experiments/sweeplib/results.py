"""DIR/results.csv: one row per finished data point, in the schema `python -m analysis` reads.

Rewritten whole and atomically after every finished run (under the sweep lock, so a slower
writer cannot put back an older table). WSD parents are left out: their constant-LR loss is not
a point of the law, their branches are. Failed runs are not rows; `status` lists them.
"""

from __future__ import annotations

import csv
import io

from experiments.sweeplib.layout import SweepDir, write_atomic

COLUMNS = (
    "run", "params", "nonembedding_params", "tokens", "flops", "loss", "loss_stderr", "seed",
    "status", "config_hash", "bits_per_byte", "variant", "kind", "compute_budget", "n_layers",
    "d_model", "n_heads", "context_length", "batch_size", "learning_rate", "steps", "epochs",
    "unique_tokens", "wall_s", "branched_from", "parametrization",
)


def rows(sweep_dir: SweepDir, runs) -> list[dict]:
    out = []
    for run in runs:
        if not run.is_data_point:
            continue
        result = sweep_dir.result(run.name)
        if not result or result.get("status") != "done":
            continue
        row = {k: result.get(k, "") for k in COLUMNS}
        # One loss/stderr/bits-per-byte column per evaluation set (data.eval_sets).
        row.update({k: v for k, v in result.items() if k.startswith("eval_") and k != "eval_sets"})
        row.update(
            run=run.name, kind=run.role, variant=run.variant, seed=run.seed,
            compute_budget=run.compute_budget or "", branched_from=run.depends_on,
        )
        out.append(row)
    return out


def write(sweep_dir: SweepDir, runs) -> int:
    """Call under SweepDir.lock(). Returns the number of rows written."""
    table = rows(sweep_dir, runs)
    extra = sorted({k for row in table for k in row} - set(COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS + tuple(extra), restval="",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_atomic(sweep_dir.results_csv, buf.getvalue())
    return len(table)
