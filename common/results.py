"""The results table's schema: a row is a run's result.json, its scalar fields, plus what only the
sweep knows of the run: its role, its parent and its compute budget.

No column list is kept here: a field the trainer adds to result.json is a column at once, under
the same name. Nested fields (provenance, timing, mesh, eval_sets) stay in result.json.
"""

from __future__ import annotations

import csv
import io

SWEEP_FIELDS = ("role", "parent", "compute_budget")


def is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def row(result: dict, *, role: str, parent: str = "", compute_budget: float = 0.0) -> dict:
    """One results-table row: `role` (grid, isoflop, wsd_branch...), `parent` (a WSD branch's
    parent run; '' otherwise) and `compute_budget` (an iso-FLOP run's target C; '' otherwise)."""
    out = {k: v for k, v in result.items() if is_scalar(v) and k not in SWEEP_FIELDS}
    out.update(role=role, parent=parent, compute_budget=compute_budget or "")
    return out


def csv_text(rows: list[dict]) -> str:
    """The rows as CSV; columns in the order they first appear (`run` first in every record)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    return buf.getvalue()
