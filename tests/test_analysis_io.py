"""Loading and validating results, iso-FLOP and envelope approaches, and the command line."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from analysis import AnalysisError, envelope, fit_law, isoflop
from analysis.data import load_results  # the table with row labels and notes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def law(N, D):
    return P["E"] + P["A"] / N ** P["alpha"] + P["B"] / D ** P["beta"]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def good_rows(n=8):
    return [[f"r{i}", 1e7 * 2 ** i, 1e9 * 1.5 ** i, law(1e7 * 2 ** i, 1e9 * 1.5 ** i)] for i in range(n)]


@pytest.mark.parametrize("bad, column, message", [
    (lambda rows: [r[:3] for r in rows], "loss", "missing column 'loss'"),
    (lambda rows: rows[:2] + [rows[2][:3] + ["oops"]] + rows[3:], "loss", "not numeric in row 3"),
    (lambda rows: rows[:4] + [[rows[4][0], -5, *rows[4][2:]]] + rows[5:], "params",
     "must be positive and finite, but is not in row 5"),
    (lambda rows: rows[:1] + [rows[1][:2] + ["nan", rows[1][3]]] + rows[2:], "tokens",
     "must be positive and finite, but is not in row 2"),
    (lambda rows: rows[:4], "loss", "too few"),
])
def test_bad_inputs_name_rows(tmp_path, bad, column, message):
    rows = bad(good_rows())
    header = ["run", "params", "tokens", "loss"][:len(rows[0])]
    path = write_csv(tmp_path / "r.csv", header, rows)
    with pytest.raises(AnalysisError) as err:
        fit_law(load_results(path), "chinchilla", bootstrap=0)
    text = str(err.value)
    assert message in text and "\n" not in text
    if "row" in message:
        assert f"'{column}'" in text


def test_jsonl_and_sweep_directory(tmp_path):
    rows = good_rows(6)
    with open(tmp_path / "r.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(dict(run=r[0], params=r[1], tokens=r[2], loss=r[3], extra="x")) + "\n")
    t = load_results(tmp_path / "r.jsonl")
    assert len(t) == 6 and np.allclose(t.numeric("loss"), [r[3] for r in rows])
    assert t.text("extra") == ["x"] * 6
    csv_path = write_csv(tmp_path / "s.csv", ["run", "params", "tokens", "loss", "status"],
                         [r + ["running" if i == 1 else "done"] for i, r in enumerate(rows)])
    t = load_results(csv_path)
    assert len(t) == 5 and t.labels[1] == "row 3" and "excluded row 2" in t.notes[0]
    sweep = tmp_path / "sweep"
    for i, r in enumerate(rows):
        os.makedirs(sweep / r[0])
        status = "failed" if i == 2 else "done"
        with open(sweep / r[0] / "result.json", "w") as fh:
            json.dump(dict(params=r[1], nonembedding_params=r[1] * 0.9, tokens=r[2],
                           flops=6 * r[1] * r[2], loss=r[3], loss_stderr=0.01, seed=0,
                           status=status, run=r[0], config={"d": 1}), fh)
    t = load_results(sweep)
    assert len(t) == 5 and "r2" not in t.text("run")
    assert any("r2" in n and "failed" in n for n in t.notes)
    assert np.allclose(t.numeric("flops"), 6 * t.numeric("params") * t.numeric("tokens"))


def isoflop_table(budgets=(1e18, 1e19, 1e20), per_budget=9):
    rows = []
    for C in budgets:
        n_opt = 1.0 * (C / 6) ** (P["beta"] / (P["alpha"] + P["beta"]))  # near the optimum
        G = (P["alpha"] * P["A"] / (P["beta"] * P["B"])) ** (1 / (P["alpha"] + P["beta"]))
        centre = G * n_opt
        for k in np.linspace(-1, 1, per_budget):
            N = centre * np.exp(k)
            D = C / (6 * N)
            rows.append(dict(run=f"c{C:g}_{k:+.2f}", params=N, tokens=D, flops=C, loss=law(N, D)))
    return rows


def test_isoflop_recovers_known_exponent(tmp_path):
    rows = isoflop_table()
    path = tmp_path / "iso.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    res = isoflop(load_results(path), bootstrap=50, seed=0)
    a_true = P["beta"] / (P["alpha"] + P["beta"])
    assert res["a"] == pytest.approx(a_true, abs=0.01)
    assert res["b"] == pytest.approx(1 - a_true, abs=0.01)
    assert len(res["budgets"]) == 3 and res["grouping"] == "exact actual FLOPs"
    assert res["ci95"]["a"][0] <= res["a"] <= res["ci95"]["a"][1]


def test_envelope_of_training_curves_follows_optimal_allocation():
    rows = []
    for i, N in enumerate(np.exp(np.linspace(np.log(1e7), np.log(3e9), 25))):
        for D in np.exp(np.linspace(np.log(1e8), np.log(1e12), 60)):
            rows.append(dict(run=f"m{i}", step=int(D / 1e5), params=N, tokens=D, loss=law(N, D)))
    from analysis.data import Results
    t = Results({k: [r[k] for r in rows] for k in rows[0]}, [f"row {i}" for i in range(len(rows))], "t")
    env = envelope(t)
    a_true = P["beta"] / (P["alpha"] + P["beta"])
    assert env["a"] == pytest.approx(a_true, abs=0.05)
    assert env["b"] == pytest.approx(1 - a_true, abs=0.05)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "analysis", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_writes_fit_and_isoflop_outputs(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[f"r{i}", N, D, 1.8 + 900 / N ** 0.3 * rng.lognormal(0, 0.005)]
            for i, (N, D) in enumerate(zip(np.exp(rng.uniform(16, 22, 40)), np.full(40, 1e10)))]
    path = write_csv(tmp_path / "r.csv", ["run", "params", "tokens", "loss"], rows)
    out = tmp_path / "fit"
    proc = run_cli("fit", path, "--law", "power", "--x", "params", "--out", str(out),
                   "--bootstrap", "30", "--holdout-above-flops", str(6e10 * np.exp(21)), "--svg")
    assert proc.returncode == 0, proc.stderr
    fit = json.loads((out / "fit.json").read_text())
    for key in ("law", "params", "stderr", "ci95", "n_points", "n_starts", "n_starts_at_best",
                "objective", "warnings", "extrapolation"):
        assert key in fit
    assert fit["params"]["alpha"] == pytest.approx(0.3, rel=0.05)
    for name in ("loss_vs_x", "residuals"):
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.svg").exists()
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and (out / "report.md").exists()
    assert "report.html" in proc.stdout and "alpha" in proc.stdout

    iso_path = tmp_path / "iso.jsonl"
    iso_path.write_text("\n".join(json.dumps(r) for r in isoflop_table()))
    proc = run_cli("isoflop", str(iso_path), "--out", str(tmp_path / "iso"), "--bootstrap", "20")
    assert proc.returncode == 0, proc.stderr
    iso = json.loads((tmp_path / "iso" / "isoflop.json").read_text())
    assert {"a", "b", "ci95", "budgets"} <= set(iso)
    assert {"budget", "N_opt", "D_opt", "loss_opt"} <= set(iso["budgets"][0])
    assert (tmp_path / "iso" / "isoflop_parabolas.png").exists()
    assert not list((tmp_path / "iso").glob("*.svg"))  # SVG only when asked (--svg)


@pytest.mark.slow
def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    path = write_csv(tmp_path / "r.csv", ["run", "params", "tokens"], [["a", 1, 2]])
    proc = run_cli("fit", path, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.strip().count("\n") == 0
    assert "loss" in proc.stderr
    proc = run_cli("fit", path, "--law", "nonsense", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")


def test_result_json_is_strict_json_with_null_for_non_finite(tmp_path):
    from analysis import report

    path = str(tmp_path / "fit.json")
    report.write_json({"params": {"E": np.float64(1.5)}, "ci95": {"b": [np.nan, np.inf]},
                       "_internal": object()}, path)

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    data = json.loads(open(path).read(), parse_constant=refuse)
    assert data == {"params": {"E": 1.5}, "ci95": {"b": [None, None]}}


def test_loss_column_fits_a_second_eval_set(tmp_path):
    """Two eval sets from two known power laws: --loss-column picks which one is fitted."""
    from analysis.pipeline import run_fit

    N = np.geomspace(1e5, 1e8, 12)
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "params", "tokens", "loss", "loss_stderr", "eval_other_loss",
                    "eval_other_loss_stderr"])
        for i, n in enumerate(N):
            w.writerow([f"r{i}", n, 1e9, 2.0 + 50.0 * n ** -0.3, 0.01, 1.5 + 80.0 * n ** -0.45, 0.01])
    first, _ = run_fit(str(path), str(tmp_path / "a"), "power", "params", bootstrap=0)
    other, _ = run_fit(str(path), str(tmp_path / "b"), "power", "params", bootstrap=0,
                       loss_column="eval_other_loss")
    exponent = next(k for k in first["params"] if k not in ("E", "A"))
    assert first["params"][exponent] == pytest.approx(0.3, rel=1e-3)
    assert other["params"][exponent] == pytest.approx(0.45, rel=1e-3)
    with pytest.raises(AnalysisError, match="eval_other_loss"):
        run_fit(str(path), str(tmp_path / "c"), "power", "params", bootstrap=0,
                loss_column="eval_missing_loss")
