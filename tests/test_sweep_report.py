"""`sweep status` totals the fixed costs and training time of the finished runs; the progress
line's ETA predicts the runs left from them."""

import json

import pytest

from experiments.sweeplib import ledger, report
from common.files import write_atomic
from experiments.sweeplib.layout import SweepDir
from experiments.sweeplib.startup import overhead_fields


class _Run:
    def __init__(self, name):
        self.name = name


class _State:
    def __init__(self, state):
        self.state = state


def test_status_totals_fixed_costs_and_training_time(tmp_path):
    sd = SweepDir(tmp_path)
    sd.make()
    timing = {"setup_s": 0.5, "data_s": 1.0, "compile_s": 2.0, "eval_s": 0.125,
              "final_eval_s": 0.125, "checkpoint_s": 0.25, "train_s": 10.0, "total_s": 14.0}
    for name in ("a", "b"):
        write_atomic(sd.run_dir(name) / "result.json", json.dumps({"status": "done", "timing": timing}))
        # The worker saw 15 s: 1 s of start-up outside the trainer.
        ledger.append_event(sd, name, "finished", **overhead_fields(sd.result(name), wall_s=15.0))
    runs = [_Run("a"), _Run("b"), _Run("c")]
    states = {"a": _State("done"), "b": _State("done"), "c": _State("pending")}
    line = report.timing_totals(sd, runs, states)
    # Per run: fixed = 1 (start-up) + 0.5 + 1 + 2 + 0.125 + 0.125 + 0.25 = 5 s; two runs: 10 s
    # and 20 s training.
    assert line.startswith("time of 2 finished runs: fixed 10.0s: start-up 2.0, setup 1.0, data 2.0, "
                           "compile 4.0, curve evals 0.2, final eval 0.2, checkpoint 0.5; "
                           "training 20.0s")
    assert "fixed 5.0s per run, 33% of their time" in line
    assert report.timing_totals(sd, runs, {k: _State("pending") for k in states}) is None


def test_eta_recovers_a_per_token_plus_per_flop_cost_and_the_fixed_cost():
    """Training seconds a*tokens + b*FLOPs plus a fixed cost per run, measured on the small
    runs, predict the large ones exactly (seconds per FLOP alone would not)."""
    from experiments.sweeplib.report import remaining_seconds

    a, b, fixed = 2e-5, 3e-12, 1.5
    runs = [(tokens, tokens * flops_per_token) for flops_per_token in (1e4, 1e5, 1e6)
            for tokens in (1e5, 2e5, 4e5)]
    finished = [(t, f, a * t + b * f, fixed) for t, f in runs[:4]]
    left = runs[4:]
    want = sum(a * t + b * f + fixed for t, f in left)
    assert remaining_seconds(finished, left) == pytest.approx(want, rel=1e-9)
    per_flop_only = sum(s for _, _, s, _ in finished) / sum(f for _, f, _, _ in finished)
    assert per_flop_only * sum(f for _, f in left) > 3 * want  # the old rule's overshoot


def test_eta_never_counts_a_negative_cost():
    """Noisy times whose least-squares fit has a negative term fall back to one term."""
    from experiments.sweeplib.report import remaining_seconds

    finished = [(1e5, 1e9, 1.0, 0.0), (2e5, 1e10, 1.1, 0.0), (4e5, 1e10, 4.0, 0.0)]
    assert remaining_seconds(finished, [(1e6, 1e9)]) > 0
    assert remaining_seconds(finished, [(1e5, 1e12)]) > 0
