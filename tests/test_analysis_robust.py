"""Issues 8 and 14 (analysis side): duplicates, degenerate data, provenance; never a traceback."""

import json
import subprocess
import sys

import numpy as np
import pytest

from analysis.data import load_results  # the table with row labels and notes
from analysis.errors import AnalysisError
from analysis.laws import make_law
from analysis.pipeline import run_fit

P = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# A tenth of the fitter's start grid where a test is about the record, not about which starts
# find the optimum (noise-free runs send the fitter through every start of the full grid).
STARTS = make_law("chinchilla").grid[::10]


def write_csv(path, rows):
    cols = list(rows[0])
    path.write_text("\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols)
                                                  for r in rows]) + "\n")
    return path


def grid_rows(loss=None):
    rows = []
    for i, N in enumerate(np.logspace(7, 9, 4)):
        for j, D in enumerate(np.logspace(8, 10, 4)):
            value = loss if loss is not None else \
                P["E"] + P["A"] / N ** P["alpha"] + P["B"] / D ** P["beta"]
            rows.append(dict(run=f"r{i}{j}", params=N, tokens=D, loss=value))
    return rows


@pytest.mark.slow
def test_duplicates_are_dropped_with_a_warning_or_refused_with_row_numbers(tmp_path):
    rows = grid_rows()
    rows.append(dict(rows[3]))                     # exact duplicate of row 4 -> row 17
    rows.append(dict(rows[5], loss=9.0))           # run r11 again, different loss -> row 18
    path = write_csv(tmp_path / "dup.csv", rows)
    t = load_results(path)
    assert len(t) == 16 and t.read == 18
    assert {d["row"] for d in t.dropped} == {"row 4", "row 6"}  # the later copies are kept
    assert "exact duplicate" in t.warnings[0] and "repeating a run name" in t.warnings[0]
    with pytest.raises(AnalysisError, match=r"row 4.*row 6.*--duplicates drop"):
        load_results(path, duplicates="refuse")
    out = subprocess.run([sys.executable, "-m", "analysis", "fit", str(path), "--out",
                          str(tmp_path / "o"), "--duplicates", "refuse"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and \
        len(out.stderr.strip().splitlines()) == 1


def test_provenance_names_input_rows_and_code(tmp_path):
    rows = grid_rows()
    rows.append(dict(rows[0]))
    rows.append(dict(rows[1], status="failed", run="x"))
    path = write_csv(tmp_path / "runs.csv", [dict(r, status=r.get("status", "done")) for r in rows])
    fit, _ = run_fit(str(path), tmp_path / "o", bootstrap=0, starts=STARTS)
    prov = json.loads((tmp_path / "o" / "fit.json").read_text())["provenance"]
    import hashlib
    assert prov["input"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["rows"]["read"] == 18 and prov["rows"]["used"] == 16
    reasons = {d["row"]: d["reason"] for d in prov["rows"]["dropped"]}
    assert reasons["row 18"] == "status 'failed'" and "duplicate" in reasons["row 1"]
    assert len(prov["code"]["git_commit"]) == 40 and isinstance(prov["code"]["git_dirty"], bool)
    assert prov["packages"]["numpy"] == np.__version__


@pytest.mark.slow
def test_constant_loss_warns_and_reports_without_traceback(tmp_path):
    path = write_csv(tmp_path / "flat.csv", grid_rows(loss=3.0))
    out = subprocess.run([sys.executable, "-m", "analysis", "fit", str(path), "--out",
                          str(tmp_path / "o"), "--bootstrap", "20"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "the loss does not vary" in out.stdout
    assert (tmp_path / "o" / "report.html").exists()
    fit = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert any("does not vary" in w for w in fit["warnings"])
    # Bootstrap refits start at the full-data optimum and stay there on a flat objective
    # ("95% range 1 .. 1"); the range now spans the best starts, which put E from ~0 to 3.
    lo, hi = fit["ci95"]["E"]
    assert lo < 1.0 and hi == pytest.approx(3.0, rel=1e-3) and not fit["identified"]["E"]


@pytest.mark.slow
def test_parameter_at_a_bound_warns(tmp_path):
    # L = A / N^alpha exactly (E = 0): E runs to its bound (exp of a very negative number).
    rows = [dict(r, loss=5000.0 / r["params"] ** 0.3 + 800.0 / r["tokens"] ** 0.25)
            for r in grid_rows()]
    fit, summary = run_fit(write_csv(tmp_path / "b.csv", rows), tmp_path / "o", bootstrap=20)
    assert any("E ran to a bound" in w for w in fit["warnings"]), fit["warnings"]
    assert "E: not identified" in summary
    assert (tmp_path / "o" / "report.md").exists()
