"""The preference command end to end at a tiny scale: every stage runs, preference.json holds
the documented fields, and a second call reads the finished stages back instead of rerunning."""

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


def run(workdir, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="")
    return subprocess.run(
        [sys.executable, "-m", "experiments.preference", "--config",
         "configs/preference.py:smoke", "--workdir", str(workdir), *TINY, *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_smoke_pipeline_writes_preference_json(tmp_path):
    out = run(tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
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
