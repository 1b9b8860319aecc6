"""The LR areas a schedule-aware law reads: hand-computed sums for small schedules, and the
analysis side's own schedule arithmetic (it may not import research/) equal to the trainer's."""

import dataclasses

import numpy as np
import pytest

from analysis import schedules as analysis_schedules
from research import lr_areas
from research.config import TrainConfig


def test_areas_by_hand():
    lrs = [1.0, 1.0, 0.5, 0.25, 0.25]
    s1, s2 = lr_areas.areas(lrs, momentum=0.5)
    assert s1.tolist() == [0.0, 1.0, 2.0, 2.5, 2.75, 3.0]
    # drops: 0, 0, 0.5, 0.25, 0; m = 0, 0, 0.5, 0.5*0.5 + 0.25 = 0.5, 0.25
    assert s2 == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.25])
    # an increase (warmup) adds nothing; with momentum 1 S2 sums the drop below the peak
    s1, s2 = lr_areas.areas([0.5, 1.0, 0.75, 0.5], momentum=1.0)
    assert s1[-1] == 2.75 and s2 == pytest.approx([0.0, 0.0, 0.0, 0.25, 0.75])


def test_constant_schedule_has_no_annealing_area():
    t = TrainConfig(schedule="constant", learning_rate=2e-3, warmup_steps=3)
    lrs = lr_areas.learning_rates(t, 10)
    assert lrs[:3] == pytest.approx([2e-3 / 3, 4e-3 / 3, 2e-3]) and lrs[3:] == pytest.approx(2e-3)
    s1, s2 = lr_areas.areas(lrs)
    assert s1[-1] == pytest.approx(2e-3 * (1 / 3 + 2 / 3 + 8)) and not s2.any()


@pytest.mark.parametrize("train, steps", [
    (TrainConfig(schedule="cosine", learning_rate=3e-3, warmup_fraction=0.05), 128),
    (TrainConfig(schedule="cosine", learning_rate=1e-3, min_lr_ratio=0.0, warmup_steps=7), 50),
    (TrainConfig(schedule="constant", learning_rate=3e-3, warmup_fraction=0.05), 200),
    (TrainConfig(schedule="wsd", learning_rate=3e-3, warmup_steps=13, decay_fraction=0.2), 256),
    (TrainConfig(schedule="wsd", learning_rate=6e-3, warmup_steps=5, decay_fraction=0.35), 77),
])
def test_analysis_schedule_matches_the_trainer(train, steps):
    spec = analysis_schedules.Schedule.from_train(dataclasses.asdict(train), steps)
    np.testing.assert_allclose(spec.learning_rates(), lr_areas.learning_rates(train, steps),
                               rtol=2e-6, atol=1e-6 * train.learning_rate)
    s1, s2 = lr_areas.areas(lr_areas.learning_rates(train, steps))
    a1, a2 = spec.areas(lr_areas.ANNEAL_MOMENTUM)
    np.testing.assert_allclose(a1, s1, rtol=2e-6)
    np.testing.assert_allclose(a2, s2, rtol=1e-5, atol=1e-9)
