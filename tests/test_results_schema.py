"""The results table's schema (common/results.py): a row is a result.json's scalar fields plus the
run's role, parent and compute budget; nested fields stay out, and no field appears twice."""

import csv
import io

from common import results


RESULT = {"run": "100k-D262k-wsd-s0-abc", "params": 100, "tokens": 262144, "flops": 1.5e12,
          "flops_per_token": 5.7e6, "loss": 2.5, "loss_stderr": None, "status": "done",
          "unique_tokens": 900000, "provenance": {"git_commit": "x"}, "timing": {"total_s": 1.0},
          "branched_from": {"run": "/s/runs/parent", "step": 40}, "eval_sets": {"validation": "v"}}


def test_row_is_the_scalar_fields_plus_role_parent_and_budget():
    row = results.row(RESULT, role="wsd_branch", parent="100k-wsdparent-s0-def")
    scalar = {k for k, v in RESULT.items() if not isinstance(v, dict)}
    assert set(row) == scalar | {"role", "parent", "compute_budget"}
    assert row["parent"] == "100k-wsdparent-s0-def" and row["compute_budget"] == ""
    assert all(row[k] == RESULT[k] for k in scalar)
    grid = results.row({"run": "a", "loss": 3.0}, role="isoflop", compute_budget=1e15)
    assert (grid["role"], grid["parent"], grid["compute_budget"]) == ("isoflop", "", 1e15)


def test_csv_keeps_every_column_once_and_reads_back():
    rows = [results.row(RESULT, role="grid"),
            results.row({**RESULT, "run": "b", "eval_extra_loss": 2.0}, role="grid")]
    table = list(csv.DictReader(io.StringIO(results.csv_text(rows))))
    header = next(csv.reader(io.StringIO(results.csv_text(rows))))
    assert len(header) == len(set(header)) and header[0] == "run"
    assert "eval_extra_loss" in header and table[0]["eval_extra_loss"] == ""
    assert table[1]["eval_extra_loss"] == "2.0" and table[0]["loss_stderr"] == ""
    assert float(table[0]["flops_per_token"]) == RESULT["flops_per_token"]
