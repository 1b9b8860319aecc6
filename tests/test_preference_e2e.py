"""The preference command end to end at a tiny scale: every stage runs, preference.json holds
the documented fields, and a second call reads the finished stages back instead of rerunning.
The same stages swept as separate points by the sweep runner give the same preference.json."""

import csv
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = [
    "--config.pretrain.model.context_length=32", "--config.pretrain.train.batch_size=8",
    "--config.pretrain.train.tokens=2560", "--config.pretrain.train.eval_batches=2",
    "--config.prompts.prompt_tokens=8", "--config.prompts.response_tokens=8",
    "--config.prompts.sft_examples=40", "--config.prompts.pair_prompts=24",
    "--config.prompts.heldout_prompts=16", "--config.prompts.eval_prompts=6",
    "--config.sft.steps=3", "--config.sft.batch_size=8",
    "--config.reward_model.train_pairs=8,24", "--config.reward_model.steps=3",
    "--config.reward_model.batch_size=8", "--config.best_of_n.max_n=4",
    "--config.best_of_n.samples=4", "--config.dpo.steps=3", "--config.dpo.batch_size=8",
    "--config.dpo.samples_per_prompt=2", "--config.fit.bootstrap=10",
]


ENV = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="")  # one CPU device, for every process


def run(workdir, *extra):
    return subprocess.run(
        [sys.executable, "-m", "experiments.preference", "--config",
         "configs/preference.py:smoke", "--workdir", str(workdir), *TINY, *extra],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=1200)


def run_sweep(workdir, *extra):
    tiny = [t.replace("--config.", "--config.preference.", 1) for t in TINY]
    return subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "run", "--config",
         "configs/sweeps/preference.py:smoke", "--workdir", str(workdir), "--quiet", *tiny,
         *extra], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def one_command(tmp_path_factory):
    """The whole pipeline by the one command, shared by the tests of this file."""
    workdir = tmp_path_factory.mktemp("preference")
    out = run(workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_smoke_pipeline_writes_preference_json(one_command):
    tmp_path = one_command
    s = json.loads((tmp_path / "preference.json").read_text())
    assert 0 <= s["reward_model"]["heldout_accuracy"] <= 1
    assert [r["train_pairs"] for r in s["reward_model"]["by_train_pairs"]] == [8, 24]
    for key in ("heldout_accuracy", "gold_reward", "heldout_margin", "kl", "beta"):
        assert isinstance(s["dpo"][key], float), key
    assert isinstance(s["sft"]["gold_reward"], float)
    assert [p["n"] for p in s["best_of_n"]] == [1, 2, 4]
    for point in s["best_of_n"]:
        assert set(point) >= {"n", "kl", "proxy_reward", "gold_reward"}
    assert s["best_of_n"][0]["kl"] == 0.0
    fit = s["overoptimization"]["best_of_n"][0]
    assert set(fit) >= {"alpha", "beta", "r2", "alpha_interval", "beta_interval"}
    assert s["overoptimization"]["dpo"]["form"] == "rl"
    for figure in s["figures"]:
        assert (tmp_path / figure).is_file()
    # Finished stages are read back: only the fit runs again, and a bad stage name is one line.
    again = run(tmp_path, "--stages", "fit")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed" not in again.stderr
    bad = run(tmp_path, "--stages", "sft,dpoo")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: unknown stage 'dpoo'; choose from pretrain, data, sft, pairs, reward_model, "
        "best_of_n, dpo, fit"]


@pytest.mark.slow
def test_sweep_points_give_the_one_commands_numbers(one_command, tmp_path):
    """The sweep runner runs the shared stages, each reward model and each beta as separate
    points in a training child, then the fit in its own process. With the same config and
    seeds every number equals the one command's bit for bit: the same code on one CPU device,
    fed the same data; the points read the SFT policy back from its checkpoint, an exact f32
    round trip. The sweep starts from the one command's pretrained run (pretrain_run), so
    the comparison covers every post-training stage without pretraining twice. (One worker
    keeps the test short; `--workers 2` gives the same file.)"""
    reuse = f"--config.preference.pretrain_run={one_command / 'pretrain'}"
    out = run_sweep(tmp_path, reuse)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "6/6 runs done, 0 failed" in out.stdout + out.stderr
    swept = json.loads((tmp_path / "analysis" / "preference.json").read_text())
    one = json.loads((one_command / "preference.json").read_text())
    assert swept["reward_model"]["by_train_pairs"] == one["reward_model"]["by_train_pairs"]
    assert swept["best_of_n"] == one["best_of_n"] and swept["dpo"] == one["dpo"]
    assert swept == one  # every field, the fits and their intervals included
    for figure in swept["figures"]:
        assert (tmp_path / "analysis" / figure).is_file()
    with open(tmp_path / "results.csv") as f:  # one row per point, as for training runs
        rows = list(csv.DictReader(f))
    assert sorted(r["role"] for r in rows) == ["pref_dpo"] * 3 + ["pref_reward_model"] * 2 + [
        "pref_shared"]
    assert [float(r["heldout_accuracy"]) for r in rows if r["role"] == "pref_reward_model"] == [
        r["heldout_accuracy"] for r in one["reward_model"]["by_train_pairs"]]
    # The same command again: every point is done and the fit of unchanged results is kept.
    again = run_sweep(tmp_path, reuse)
    assert again.returncode == 0 and "starts" not in again.stderr, again.stderr[-3000:]
