"""Reading a results table (CSV, JSONL, or a sweep directory) and validating columns.

A table keeps its raw cells; a numeric column is converted and checked only
when a law asks for it, so an error names exactly the rows that are wrong.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import AnalysisError

MAX_ROWS_NAMED = 8


@dataclass
class Results:
    columns: dict             # name -> list of raw cells (str, number or None)
    labels: list              # how to name each row in errors: "row 3" or a run directory
    source: str = ""
    notes: list = field(default_factory=list)
    dropped: list = field(default_factory=list)  # {"row": label, "reason": why} per row left out
    n_read: int | None = None                     # rows read before any were left out
    warnings: list = field(default_factory=list)
    derived: set = field(default_factory=set)     # columns made here, not read from the input

    def __len__(self):
        return len(self.labels)

    def has(self, name):
        return name in self.columns and any(v not in (None, "") for v in self.columns[name])

    def subset(self, keep):
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return Results({k: [v[i] for i in idx] for k, v in self.columns.items()},
                       [self.labels[i] for i in idx], self.source, list(self.notes),
                       list(self.dropped), self.read, list(self.warnings), set(self.derived))

    def input_columns(self):
        """The columns the input itself has (not those a --*-column option copied in)."""
        return sorted(c for c in self.columns if c not in self.derived)

    @property
    def read(self):
        return len(self) if self.n_read is None else self.n_read

    def drop(self, keep, reasons):
        """Subset to `keep` (bool mask), recording a reason for each row left out."""
        keep = np.asarray(keep, bool)
        out = self.subset(keep)
        out.dropped += [dict(row=self.labels[i], reason=reasons[i])
                        for i in np.flatnonzero(~keep)]
        return out

    def text(self, name):
        """Column as strings ('' where missing), e.g. run names."""
        if name not in self.columns:
            return ["" for _ in self.labels]
        return ["" if v is None else str(v) for v in self.columns[name]]

    def six_nd(self, params_column="params"):
        """C = 6 N D, N from `params_column`: the one place analysis/ writes the rule (where a
        table has no flops column, or --compute 6nd asks for it)."""
        return 6.0 * self.numeric(params_column) * self.numeric("tokens")

    def numeric(self, name, positive=True):
        """Column as float64, validated: present, numeric, finite, and (by default) > 0."""
        if not self.has(name):
            raise AnalysisError(
                f"{self.source}: missing column '{name}' (have: {', '.join(self.input_columns())}); "
                f"add it, name the column to use (--params-column, --tokens-column, "
                f"--loss-column) or choose another law/--x")
        raw = self.columns[name]
        values = np.empty(len(raw))
        bad_type, bad_value = [], []
        for i, v in enumerate(raw):
            try:
                if isinstance(v, bool) or v is None or v == "":
                    raise ValueError
                values[i] = float(v)
            except (TypeError, ValueError):
                bad_type.append(i)
                continue
            if not math.isfinite(values[i]) or (positive and values[i] <= 0):
                bad_value.append(i)
        if bad_type:
            raise AnalysisError(f"{self.source}: column '{name}' is not numeric in "
                                f"{self._name_rows(bad_type, name)}; fix or drop those rows")
        if bad_value:
            need = "positive and finite" if positive else "finite"
            raise AnalysisError(f"{self.source}: column '{name}' must be {need}, but is not in "
                                f"{self._name_rows(bad_value, name)}; fix or drop those rows")
        return values

    def _name_rows(self, rows, name):
        shown = ", ".join(f"{self.labels[i]} ({name}={self.columns[name][i]!r})"
                          for i in rows[:MAX_ROWS_NAMED])
        more = f" and {len(rows) - MAX_ROWS_NAMED} more" if len(rows) > MAX_ROWS_NAMED else ""
        return shown + more


DUPLICATES = ("drop", "refuse")


def load_results(path, duplicates="drop", loss_column="loss", tokens_column="tokens") -> Results:
    # (exported as analysis.load_table; analysis.load_results gives a DataFrame)
    """Read a CSV, TSV, JSONL, JSON-list or Parquet file, a sweep directory (its results.csv,
    else runs/*/result.json or */result.json), or one run directory (its result.json).
    Repeated rows are dropped with a note (duplicates="drop") or refused ("refuse").
    `loss_column` names the loss to fit (e.g. eval_NAME_loss of a second eval set),
    `tokens_column` the training tokens D."""
    table = deduplicate(_load(os.fspath(path)), duplicates)
    return use_tokens_column(use_loss_column(table, loss_column), tokens_column)


def to_results(obj, duplicates="drop") -> Results:
    """A table from what a caller has: a Results, a pandas DataFrame, or a path."""
    if isinstance(obj, Results):
        return obj
    if hasattr(obj, "columns") and hasattr(obj, "attrs"):  # a DataFrame (pandas not imported)
        from .api import as_table
        return deduplicate(as_table(obj), duplicates)
    return load_results(obj, duplicates)


def use_loss_column(table: Results, name: str) -> Results:
    """The table with column `name` (and `name`_stderr) as its loss (and loss_stderr)."""
    if name == "loss":
        return table
    if not table.has(name):
        losses = sorted(c for c in table.input_columns() if c.endswith("loss") and table.has(c))
        raise AnalysisError(f"{table.source}: no column '{name}' to fit; choose --loss-column "
                            f"from: {', '.join(losses) or 'none'}")
    table.derived |= {"loss", "loss_stderr"} - set(table.input_columns())
    table.columns["loss"] = table.columns[name]
    table.columns["loss_stderr"] = table.columns.get(f"{name}_stderr", [None] * len(table))
    table.notes.append(f"loss is column {name}")
    return table


def use_tokens_column(table: Results, name: str) -> Results:
    """The table with column `name` as its training tokens D."""
    if name == "tokens":
        return table
    if not table.has(name):
        raise AnalysisError(f"{table.source}: no column '{name}' for --tokens-column (have: "
                            f"{', '.join(table.input_columns())}); name the column of training "
                            f"tokens")
    table.derived |= {"tokens"} - set(table.input_columns())
    table.columns["tokens"] = table.columns[name]
    table.notes.append(f"tokens (D) is column {name}")
    return table


def _load(path) -> Results:
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "result.json")):
            return _load_run(path)
        if os.path.isfile(os.path.join(path, "results.csv")):
            table = _load(os.path.join(path, "results.csv"))
            table.notes.insert(0, f"read the sweep's results.csv in {path}")
            return table
        return _load_sweep(run_root(path))
    if not os.path.exists(path):
        raise AnalysisError(f"results not found: {path}; pass a CSV/JSONL file or a sweep directory")
    if path.endswith(".parquet") or _is_parquet(path):
        records = _parquet_records(path)
    else:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except UnicodeDecodeError:
            raise AnalysisError(f"{path}: not a text table (not UTF-8); pass a CSV, TSV, JSONL "
                                f"or Parquet file") from None
        stripped = text.lstrip()
        if path.endswith((".jsonl", ".json")) or stripped.startswith(("{", "[")):
            records = _parse_json_records(text, path)
        else:
            records = _parse_delimited(text, path)
    if not records:
        raise AnalysisError(f"{path}: no rows; the table needs a header and at least one run")
    labels = [f"row {i + 1}" for i in range(len(records))]
    # As for sweep directories: rows of unfinished or failed runs are left out, with a note.
    keep = [i for i, r in enumerate(records) if r.get("status") in (None, "", "done")]
    notes = [f"excluded {labels[i]}: status '{records[i]['status']}'"
             for i in range(len(records)) if i not in set(keep)]
    if not keep:
        raise AnalysisError(f"{path}: no rows with status 'done' ({len(records)} rows read)")
    out = _to_results([records[i] for i in keep], [labels[i] for i in keep], path, notes)
    out.dropped = [dict(row=labels[i], reason=f"status '{records[i]['status']}'")
                   for i in range(len(records)) if i not in set(keep)]
    out.n_read = len(records)
    return out


def _is_parquet(path):
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _parquet_records(path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise AnalysisError(f"{path}: reading Parquet needs pyarrow; pip install pyarrow, or "
                            f"pass a CSV") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow's own error types vary by version
        raise AnalysisError(f"{path}: unreadable Parquet ({' '.join(str(e).split())[:200]})") from None
    return table.to_pylist()


def _parse_delimited(text, path):
    """CSV, or TSV (a .tsv name, or a header with tabs and no commas)."""
    header = text.lstrip().split("\n", 1)[0]
    tab = path.endswith(".tsv") or ("\t" in header and "," not in header)
    records = list(csv.DictReader(text.splitlines(), delimiter="\t" if tab else ","))
    return [{k.strip(): (v.strip() if isinstance(v, str) else v)
             for k, v in r.items() if k is not None} for r in records]


def _parse_json_records(text, path):
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise AnalysisError(f"{path}: invalid JSON ({e}); write one object per line") from None
    else:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise AnalysisError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
    bad = [i + 1 for i, r in enumerate(records) if not isinstance(r, dict)]
    if bad:
        raise AnalysisError(f"{path}: rows {bad[:MAX_ROWS_NAMED]} are not JSON objects")
    return records


def run_root(path):
    """Where a sweep keeps its run directories: SWEEP/runs when present, else SWEEP."""
    runs = os.path.join(path, "runs")
    return runs if os.path.isdir(runs) else path


def _load_run(path):
    result = os.path.join(path, "result.json")
    try:
        with open(result, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise AnalysisError(f"{result}: unreadable ({e}); rerun that run") from None
    if record.get("status", "done") != "done":
        raise AnalysisError(f"{path}: status '{record.get('status')}', not done; finish the run "
                            f"or pass a sweep directory")
    name = os.path.basename(os.path.normpath(path))
    record.setdefault("run", name)
    return _to_results([record], [name], path, [])


def _load_sweep(path):
    records, labels, notes, dropped = [], [], [], []
    for name in sorted(os.listdir(path)):
        result = os.path.join(path, name, "result.json")
        if not os.path.isfile(result):
            continue
        try:
            with open(result, encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            raise AnalysisError(f"{result}: unreadable ({e}); rerun or remove that run") from None
        status = record.get("status", "done")
        if status != "done":
            notes.append(f"excluded {name}: status '{status}'")
            dropped.append(dict(row=name, reason=f"status '{status}'"))
            continue
        record.setdefault("run", name)
        records.append(record)
        labels.append(name)
    if not records:
        raise AnalysisError(f"{path}: no finished runs (no results.csv, runs/*/result.json or "
                            f"*/result.json with status 'done')"
                            + (f"; {len(notes)} excluded" if notes else ""))
    out = _to_results(records, labels, path, notes)
    out.dropped, out.n_read = dropped, len(records) + len(dropped)
    return out


def deduplicate(table: Results, mode="drop") -> Results:
    """Exact duplicate rows, and rows repeating a run name (a (run, step) pair for curves),
    are dropped keeping the last (a rerun appended later), with a note; or refused."""
    if mode not in DUPLICATES:
        raise AnalysisError(f"unknown --duplicates '{mode}'; use drop or refuse")
    names = list(table.columns)
    rows = [tuple(str(table.columns[k][i]) for k in names) for i in range(len(table))]
    key_cols = [c for c in ("run", "step") if table.has(c)] if table.has("run") else []
    keys = [tuple(table.text(c)[i] for c in key_cols) for i in range(len(table))]
    last_row, last_key = {}, {}
    for i in range(len(table)):
        last_row[rows[i]] = i
        if key_cols:
            last_key[keys[i]] = i
    reasons, exact, renamed = {}, [], []
    for i in range(len(table)):
        if last_row[rows[i]] != i:
            reasons[i] = f"exact duplicate of {table.labels[last_row[rows[i]]]}"
            exact.append(i)
        elif key_cols and last_key[keys[i]] != i:
            j = last_key[keys[i]]
            reasons[i] = (f"repeats {'/'.join(key_cols)} {'/'.join(keys[i])} of "
                          f"{table.labels[j]} (the later row is kept)")
            renamed.append(i)
    if not reasons:
        return table
    listed = "; ".join(f"{table.labels[i]}: {r}" for i, r in list(reasons.items())[:MAX_ROWS_NAMED])
    if mode == "refuse":
        raise AnalysisError(f"{table.source}: {len(reasons)} repeated rows ({listed}); remove them "
                            f"or pass --duplicates drop")
    keep = np.ones(len(table), bool)
    keep[list(reasons)] = False
    out = table.drop(keep, [reasons.get(i, "") for i in range(len(table))])
    out.warnings.append(f"dropped {len(exact)} exact duplicate rows and {len(renamed)} rows repeating "
                     f"a run name ({listed})")
    return out


def _to_results(records, labels, source, notes):
    names = []
    for r in records:
        for k, v in r.items():
            if k not in names and not isinstance(v, (dict, list)):
                names.append(k)
    columns = {k: [r.get(k) for r in records] for k in names}
    return Results(columns, labels, source, notes)


def final_rows(table: Results) -> Results:
    """Training curves (a `step` column) reduced to each run's last row."""
    if not table.has("step") or not table.has("run"):
        return table
    steps = table.numeric("step", positive=False)
    runs = table.text("run")
    last = {}
    for i, (run, step) in enumerate(zip(runs, steps)):
        if run not in last or step >= steps[last[run]]:
            last[run] = i
    if len(last) == len(table):
        return table
    out = table.subset(sorted(last.values()))
    out.notes.append(f"training curves: kept the last step of each of {len(last)} runs "
                     f"({len(table)} rows read)")
    return out


load_table = load_results  # the package-level name (analysis.load_results is the DataFrame one)
