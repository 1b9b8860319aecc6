"""The schedule-aware law recovers a known law from a synthetic sweep's curves (0.5% noise),
predicts a held-out schedule, and allocates compute consistently with its own predictions."""

import numpy as np
import pytest

from analysis import schedule_fit, schedule_law
from analysis.data import Results
from analysis.schedules import Schedule

TRUTH = dict(E=1.0, A=30.0, alpha=0.3, B=0.4, beta=0.5, C=0.3)
SIZES = (5e4, 1e5, 3e5, 8e5)
PER_STEP = 2048


def synthetic_curves(truth=TRUTH, noise=0.005, seed=0, every=32):
    """Curves of 4 sizes x {constant, cosine, wsd} at 512 steps and cosine at 256, a point every
    `every` steps, drawn from `truth` with log-normal noise."""
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("run", "params", "tokens", "flops", "loss", "curve_loss", "step",
                            "learning_rate", "schedule", "min_lr_ratio", "warmup_steps",
                            "decay_start", "total_steps", "tokens_per_step")}
    for n in SIZES:
        for kind, steps in (("constant", 512), ("cosine", 512), ("wsd", 512), ("cosine", 256)):
            sched = Schedule.named(kind, steps, 3e-3)
            s1, s2 = sched.areas(schedule_law.MOMENTUM)
            for step in range(every, steps + 1, every):
                loss = schedule_law.predict(truth, n, s1[step], s2[step])
                loss *= np.exp(rng.normal(0, noise))
                for k, v in (("run", f"{int(n)}-{kind}-{steps}"), ("params", n),
                             ("tokens", step * PER_STEP), ("flops", 6 * n * step * PER_STEP),
                             ("loss", loss), ("curve_loss", loss), ("step", step),
                             ("learning_rate", 3e-3), ("schedule", kind), ("min_lr_ratio", 0.1),
                             ("warmup_steps", sched.warmup), ("decay_start", sched.decay_start),
                             ("total_steps", steps), ("tokens_per_step", PER_STEP)):
                    cols[k].append(v)
    return Results(cols, [f"row {i}" for i in range(len(cols["run"]))], "synthetic")


def test_recovers_a_known_law_within_its_intervals():
    fit = schedule_fit.fit_schedule_law(synthetic_curves(), bootstrap=40, seed=1)
    for name, true in TRUTH.items():
        lo, hi = fit["ci95"][name]
        assert lo <= true <= hi, (name, true, lo, hi, fit["params"][name])
    assert fit["identified"]["alpha"] and fit["identified"]["beta"]
