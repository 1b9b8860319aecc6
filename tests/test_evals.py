"""Issue 9 items 6-7 (research side): log-spaced evals, eval rows with tokens and FLOPs,
the stderr's unit and the train split's size in result.json."""

import json

from research import evals, flops, train as train_lib
from tests.test_train import small_config


def test_eval_steps_are_log_spaced_and_end_at_the_last_step():
    steps = sorted(evals.eval_steps(10_000, 8, 0))
    assert steps[0] == 1 and steps[-1] == 10_000 and len(steps) == 8
    ratios = [b / a for a, b in zip(steps[2:], steps[3:])]  # past the rounding of 1 and 4
    assert max(ratios) / min(ratios) < 1.05  # evenly spaced in log step
    assert sorted(evals.eval_steps(12, 0, 6)) == [6, 12]
    assert {4, 8, 12} <= evals.eval_steps(12, 3, 4)


def test_run_writes_eval_rows_with_tokens_and_flops(tmp_path):
    c = small_config(data=8)
    c.train.eval_points = 4
    c.train.eval_every = 0
    result = train_lib.train(c, str(tmp_path), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals_ = [r for r in rows if "eval/loss" in r]
    assert [r["step"] for r in evals_] == sorted(evals.eval_steps(12, 4, 0))
    per_step = c.train.batch_size * c.model.context_length
    for r in evals_:
        assert r["tokens"] == r["step"] * per_step
        assert r["flops"] == flops.run_flops(c.model, r["tokens"])
    assert evals_[-1]["flops"] == result["flops"] and evals_[-1]["tokens"] == result["tokens"]
    assert "eval batch" in result["loss_stderr_unit"] and result["unique_tokens"] > 0
    assert result["epochs"] > 0
