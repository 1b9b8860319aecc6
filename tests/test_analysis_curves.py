"""Issue 9 item 6 and issue 8: curves from run directories, and every input form of the CLI."""

import csv
import json
import subprocess
import sys

import numpy as np

from analysis.curves import curves_table
from analysis.data import load_results
from analysis.envelope import envelope, envelope_input
import pytest

P = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def loss_at(N, D):
    return P["E"] + P["A"] / N ** P["alpha"] + P["B"] / D ** P["beta"]


def make_sweep(root, with_tokens=False, eval_rows=True):
    """A sweep laid out as the runner writes it: SWEEP/runs/NAME/{result.json, metrics.jsonl,
    config.json}; eval rows at log-spaced steps, tokens = step x batch x context."""
    batch, ctx = 8, 64
    for N in (1e6, 4e6, 1.6e7, 6.4e7):
        name = f"m{int(N)}"
        d = root / "runs" / name
        d.mkdir(parents=True)
        steps = np.unique(np.geomspace(10, 20000, 12).astype(int))
        fpt = 6 * N
        rows = []
        for s in steps:
            tokens = int(s) * batch * ctx
            row = {"step": int(s), "train/loss": loss_at(N, tokens) * 1.01}
            if eval_rows:
                row = {"step": int(s), "eval/loss": loss_at(N, tokens), "eval/loss_stderr": 0.01}
                if with_tokens:
                    row.update(tokens=tokens, flops=fpt * tokens)
            rows.append(row)
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 9")
        last = int(steps[-1]) * batch * ctx
        (d / "result.json").write_text(json.dumps(dict(
            status="done", params=N, nonembedding_params=0.9 * N, tokens=last, flops=fpt * last,
            flops_per_token=fpt, batch_size=batch, context_length=ctx, loss=loss_at(N, last),
            learning_rate=1e-3)))
        (d / "config.json").write_text(json.dumps({"train": {"batch_size": batch}}))
    return root


def test_curves_from_eval_rows_with_or_without_tokens(tmp_path):
    a = curves_table(str(make_sweep(tmp_path / "a")))
    b = curves_table(str(make_sweep(tmp_path / "b", with_tokens=True)))
    assert len(a) == len(b) == 48 and set(a.text("loss_source")) == {"eval/loss"}
    for col in ("tokens", "flops", "loss", "step", "params"):
        assert np.allclose(a.numeric(col), b.numeric(col)), col
    assert np.allclose(a.numeric("flops"), 6 * a.numeric("params") * a.numeric("tokens"))
    # These runs stop at 10 tokens per parameter or fewer, before any size's curve reaches
    # the compute where the next size overtakes it (near 20): the envelope has no crossing
    # between sizes, so Approach 1 has nothing to fit and says so (no biased number).
    env = envelope(a)
    assert env["n_runs"] == 4 and env["a"] is None and env["n_points_used"] == 0
    assert "Approach 1 has nothing to fit" in env["warnings"][-1]


def test_curves_fall_back_to_train_loss_and_say_so(tmp_path):
    t = curves_table(str(make_sweep(tmp_path, eval_rows=False)))
    assert set(t.text("loss_source")) == {"train/loss"}
    assert any("train/loss" in n and "eval_points" in n for n in t.notes)


@pytest.mark.slow
def test_cli_curves_then_envelope_and_every_input_form(tmp_path):
    sweep = make_sweep(tmp_path / "s")
    run = [sys.executable, "-m", "analysis"]
    out = subprocess.run(run + ["curves", str(sweep), "--out", str(tmp_path / "c")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "48 rows from 4 runs" in out.stdout
    with open(tmp_path / "c" / "curves.csv") as f:
        assert len(list(csv.DictReader(f))) == 48
    for src in (tmp_path / "c" / "curves.csv", sweep):  # a curves file or the sweep itself
        e = subprocess.run(run + ["envelope", str(src), "--bootstrap", "20"], capture_output=True,
                           text=True, timeout=300)
        # No crossing between sizes in these short runs: nothing to fit, and it says so.
        assert e.returncode == 0, e.stderr
        out = json.loads(e.stdout)
        assert out["n_runs"] == 4 and out["a"] is None
        assert "nothing to fit" in out["warnings"][-1]
    # A sweep directory, its runs/ folder and a single run directory all load.
    assert len(load_results(str(sweep))) == 4
    assert len(load_results(str(sweep / "runs"))) == 4
    one = load_results(str(sweep / "runs" / "m1000000"))
    assert len(one) == 1 and one.text("run") == ["m1000000"]
    assert len(envelope_input(str(sweep))) == 48


def test_every_flag_has_help_with_its_default():
    import argparse

    from analysis.__main__ import _parser
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert p.formatter_class is argparse.ArgumentDefaultsHelpFormatter, name
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (name, action.option_strings)
    text = sub.choices["fit"].format_help()
    assert "(default: 1000)" in text and "(default: best)" in text and "(default: auto)" in text
