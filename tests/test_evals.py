"""Issue 9 items 6-7 (research side): log-spaced evals, eval rows with tokens and FLOPs,
the stderr's unit and the train split's size in result.json, and a final evaluation larger
than the ones along the way (train.final_eval_batches), capped at a set's disjoint windows."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from research import checkpoint, evals, flops, lr_areas, train as train_lib
from research.data import batches as data_lib
from research.config import RunConfig
from research.errors import ConfigError
from research.model import GPT
from tests.test_data_sources import write_jsonl
from tests.test_train import small_config


def test_eval_steps_are_log_spaced_and_end_at_the_last_step():
    steps = sorted(evals.eval_steps(10_000, 8, 0))
    assert steps[0] == 1 and steps[-1] == 10_000 and len(steps) == 8
    ratios = [b / a for a, b in zip(steps[2:], steps[3:])]  # past the rounding of 1 and 4
    assert max(ratios) / min(ratios) < 1.05  # evenly spaced in log step
    assert sorted(evals.eval_steps(12, 0, 6)) == [6, 12]
    assert {4, 8, 12} <= evals.eval_steps(12, 3, 4)


@pytest.mark.slow
def test_run_writes_eval_rows_with_tokens_and_flops(tmp_path):
    c = small_config(data=8)
    c.train.eval_points = 4
    c.train.eval_every = 0
    result = train_lib.train(RunConfig.from_configdict(c), str(tmp_path), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals_ = [r for r in rows if "eval/loss" in r]
    assert [r["step"] for r in evals_] == sorted(evals.eval_steps(12, 4, 0))
    per_step = c.train.batch_size * c.model.context_length
    for r in evals_:
        assert r["tokens"] == r["step"] * per_step
        assert r["flops"] == flops.run_flops(c.model, r["tokens"])
    assert evals_[-1]["flops"] == result["flops"] and evals_[-1]["tokens"] == result["tokens"]
    # The LR of the last update and the areas under the schedule so far (lr_areas' tests
    # check those against hand sums); the train rows' LR is the compiled step's own.
    lrs = lr_areas.learning_rates(RunConfig.from_configdict(c).train, 12)
    train_lr = {r["step"]: r["train/lr"] for r in rows if "train/lr" in r}
    for step, lr in train_lr.items():
        assert lrs[step - 1] == pytest.approx(lr, rel=1e-6)
    for r in evals_:
        s = r["step"]
        assert r["lr"] == pytest.approx(lrs[s - 1], rel=1e-6)
        assert r["lr_area"] == pytest.approx(lrs[:s].sum(), rel=1e-9)
        assert r["lr_anneal_area"] == pytest.approx(lr_areas.areas(lrs[:s])[1][-1], rel=1e-9)
    assert "eval batch" in result["loss_stderr_unit"] and result["unique_tokens"] > 0
    assert result["epochs"] > 0


def _window_losses(workdir, tokens, n_windows):
    """Per-window mean next-token losses of the run's final parameters on the `n_windows`
    windows spread evenly over `tokens` (the model applied directly, not the trainer's eval)."""
    cfg, params = checkpoint.load_for_inference(workdir)
    ctx = cfg.model.context_length
    n = data_lib.num_windows(tokens, ctx)
    starts = (np.arange(n_windows) * n) // n_windows
    windows = np.stack([np.asarray(tokens[s * ctx:s * ctx + ctx + 1], dtype=np.int32)
                        for s in starts])
    logits, _ = GPT(cfg.model).apply({"params": params}, jnp.asarray(windows[:, :-1]))
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=-1, keepdims=True)
    logz = top[..., 0] + np.log(np.exp(logits - top).sum(axis=-1))
    target = np.take_along_axis(logits, windows[:, 1:, None], -1)[..., 0]
    return (logz - target).mean(axis=-1)


@pytest.mark.slow
def test_final_eval_uses_its_own_size_for_every_set_and_is_capped(tmp_path, monkeypatch):
    """Evaluations along the run use eval_batches; the last one uses final_eval_batches for
    every eval set, capped at a set's disjoint windows (said in result.json); its stderr is
    the standard error of the batch means of independently computed per-window losses."""
    # A second set of 1 document, ~1,700 bytes: 53 windows of 32 tokens, 3 batches of 16.
    small = write_jsonl(tmp_path / "small.jsonl", ["abcdefghij " * 155])
    c = small_config(data=8)
    c.data.data_dir = str(tmp_path / "data")  # the small set's store stays out of the user cache
    c.data.eval_sets = ("validation", f"small={small}")
    c.train.eval_points, c.train.eval_every = 3, 0
    c.train.eval_batches, c.train.final_eval_batches = 2, 5
    sizes = []
    real_window_losses = train_lib.window_losses

    def counting(trainer, params, batches):
        sizes.append(len(batches))
        return real_window_losses(trainer, params, batches)

    monkeypatch.setattr(train_lib, "window_losses", counting)
    workdir = tmp_path / "run"
    result = train_lib.train(RunConfig.from_configdict(c), str(workdir), progress=False)

    n_evals = len(evals.eval_steps(12, 3, 0))
    # (validation, small) per evaluation; at the end, the curve's own 2 batches as well (its
    # 32 windows are not among the final 80)
    assert sizes == [2, 2] * (n_evals - 1) + [5, 3, 2]
    assert result["loss_stderr_units"] == 5 and result["eval_windows"] == 5 * 16
    assert result["eval_tokens"] == 5 * 16 * 32 and "5 batches" in result["loss_stderr_unit"]
    assert result["eval_validation_loss_stderr_units"] == 5
    assert result["eval_small_loss_stderr_units"] == 3
    assert set(result["capped_eval_sets"]) == {"small"}
    assert "5 batches requested" in result["capped_eval_sets"]["small"]

    data = data_lib.load_token_data(RunConfig.from_configdict(c).data, progress=False)
    for name, units, loss, err in (("validation", 5, result["loss"], result["loss_stderr"]),
                                   ("small", 3, result["eval_small_loss"],
                                    result["eval_small_loss_stderr"])):
        per_window = _window_losses(str(workdir), data.eval_sets[name], units * 16)
        means = per_window.reshape(units, 16).mean(axis=1)  # batch b = windows 16b..16b+15
        assert loss == pytest.approx(per_window.mean(), rel=1e-4), name
        assert err == pytest.approx(means.std(ddof=1) / math.sqrt(units), rel=1e-3), name
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    eval_rows = [r for r in rows if "eval/loss" in r]
    assert eval_rows[-1]["eval/loss"] == result["loss"]
    # Every point of the curve, the last included, is measured on the same 2 x 16 windows.
    curve_windows = _window_losses(str(workdir), data.eval_sets["validation"], 2 * 16)
    assert eval_rows[-1]["eval/curve_loss"] == pytest.approx(curve_windows.mean(), rel=1e-4)
    assert all(r["eval/curve_loss"] == r["eval/loss"] for r in eval_rows[:-1])


def test_final_eval_batches_defaults_to_eval_batches():
    t = RunConfig().train
    assert t.final_eval_batches == 0 and evals.final_batches(t) == t.eval_batches
    with pytest.raises(ConfigError, match="final_eval_batches"):
        RunConfig.from_configdict({"train": {"final_eval_batches": -1}})


class _WindowScorer:
    """A stand-in trainer whose 'loss' of a window is a fixed function of its tokens, so any
    window's value can be computed independently."""

    eval_compiled: dict = {}
    calls = 0

    def eval_loss(self, params, batch):
        _WindowScorer.calls += 1
        return np.sin(np.asarray(batch, np.float64) @ np.linspace(0.1, 1.0, batch.shape[1]))


@pytest.mark.parametrize("curve_batches, final_batches, reused", [(2, 32, True), (2, 5, False),
                                                                  (3, 9, True)])
def test_final_losses_read_the_curve_windows_among_the_final_ones(
        curve_batches, final_batches, reused):
    """The curve's last point is its own windows' loss whether or not they are among the final
    evaluation's windows; when they are, no batch is evaluated twice."""
    tokens = np.random.default_rng(0).integers(0, 256, 40_000).astype(np.int32)
    data = data_lib.TokenData(None, tokens, tokens, {}, eval_sets={"validation": tokens})

    def sets(n):
        return {"validation": data_lib.eval_batches(data, n_batches=n, batch_size=8,
                                                    context_length=31, eval_set="validation")}

    curve_sets, final_sets = sets(curve_batches), sets(final_batches)
    scorer = _WindowScorer()
    want_curve = train_lib.evaluate(scorer, None, curve_sets["validation"])
    want_final = train_lib.evaluate(scorer, None, final_sets["validation"])
    _WindowScorer.calls = 0
    losses, curve = train_lib._final_losses(scorer, None, curve_sets, final_sets)
    assert losses["validation"] == pytest.approx(want_final, rel=1e-12)
    assert curve == pytest.approx(want_curve, rel=1e-12)
    assert _WindowScorer.calls == final_batches + (0 if reused else curve_batches)
