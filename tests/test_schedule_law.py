"""The schedule-aware law recovers a known law from a synthetic sweep's curves (0.5% noise),
predicts a held-out schedule, and allocates compute consistently with its own predictions."""

import numpy as np
import pytest

from analysis import schedule_allocation, schedule_fit, schedule_law
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
    """Every parameter's 95% bootstrap interval holds the generating value (a coarse start grid
    and 40 resamples keep it to seconds)."""
    starts = schedule_law.make().grid[::9]
    fit = schedule_fit.fit_schedule_law(synthetic_curves(), bootstrap=40, seed=1, starts=starts)
    for name, true in TRUTH.items():
        lo, hi = fit["ci95"][name]
        assert lo <= true <= hi, (name, true, lo, hi, fit["params"][name])
        assert fit["identified"][name], name
    # the fitted runs' final losses, from their schedules' final areas
    assert fit["final_loss_fit"]["max_abs_rel_error"] < 0.02


def test_allocation_minimises_the_predicted_final_loss():
    """N_opt(C) from the interpolated area table is the minimum of the law's final loss over
    N at that compute, each candidate run's areas computed exactly from its own schedule."""
    template = dict(kind="cosine", peak=3e-3, min_lr_ratio=0.1, warmup_fraction=0.05,
                    cooldown_fraction=0.2)
    cost, per_step = (6.0, 1.0), PER_STEP
    out = schedule_allocation.allocation(TRUTH, [1e13, 1e14], cost, per_step, template,
                                         schedule_law.MOMENTUM)

    def final_loss(n, c):
        steps = int(round(c / (6.0 * n) / per_step))
        s1, s2 = Schedule.named("cosine", steps, 3e-3).areas(schedule_law.MOMENTUM)
        return schedule_law.predict(TRUTH, n, s1[-1], s2[-1])

    for at in out["compute_optimal"].values():
        n, c = at["N_opt"], at["flops"]
        best = final_loss(n, c)
        assert best == pytest.approx(at["loss_opt"], rel=2e-3)
        for factor in (0.8, 1.25):
            assert final_loss(n * factor, c) > best


def test_schedule_options_are_refused_by_the_final_loss_laws(capsys):
    from analysis.__main__ import main
    assert main(["fit", "results.csv", "--law", "chinchilla", "--holdout-schedule", "wsd",
                 "--out", "unused"]) == 2
    assert "--holdout-schedule needs --law schedule" in capsys.readouterr().err


def test_schedule_sweep_trains_each_size_once_per_schedule():
    from configs.sweeps import schedules
    from experiments.sweeplib import plan
    runs = plan.expand(schedules.get_config())
    got = sorted((r.variant, r.config.train.schedule, r.config.train.decay_fraction)
                 for r in runs)
    assert [(v, s) for v, s, _ in got] == [(v, s) for v in ("100k", "L2d48")
                                           for s in ("constant", "cosine", "wsd")]
    assert all(f == 0.2 for _, s, f in got if s == "wsd")
    assert len({r.steps for r in runs}) == 1 and len({r.name for r in runs}) == 6


def test_sweep_fits_the_schedule_law_to_its_run_directories(tmp_path):
    from configs.sweeps import schedules
    from experiments.sweeplib.finish import analysis_commands
    from experiments.sweeplib.layout import SweepDir
    (cmd,) = analysis_commands(SweepDir(tmp_path), schedules.get_config())
    assert cmd[cmd.index("fit") + 1] == str(SweepDir(tmp_path).root)  # not results.csv
    assert cmd[cmd.index("--law") + 1] == "schedule"
    assert cmd[cmd.index("--holdout-schedule") + 1] == "wsd"
