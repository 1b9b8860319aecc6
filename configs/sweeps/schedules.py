"""Schedule sweep: 2 model sizes (57k and 100k non-embedding parameters) x {constant, cosine, WSD with a 20% cooldown} at one budget,
about 5 minutes on 2 CPU cores. The quick check of the schedule-aware law (docs/schedule-law.md):
fitted to every curve point of the constant and cosine runs, it predicts the WSD runs' final
losses, a schedule it never saw.

  python -m experiments.sweep run --config configs/sweeps/schedules.py --workdir sweeps/schedules

The main job's model and training settings (rotary positions, 16 x 128-token steps, peak LR
3e-3, 5% warmup, floor 0.1 x peak); 1.05M tokens = 512 steps. Each curve has 16 evenly spaced
points on the same 4 x 16 validation windows (a few % of a run's time); the final loss uses 80
batches, as in the main job.
"""

from configs.sweep_base import default_sweep
from configs.sweeps.default import get_config as default_config


def get_config(arg: str = ""):
    main = default_config()
    s = default_sweep()
    s.name = "schedules"
    s.kind = "grid"
    s.base = main.base
    s.base.train.eval_points = 0  # no log-spaced points: the first ~100 steps are a plateau
    s.base.train.eval_batches = 4  # the curve's fixed windows: 64 of 128 tokens
    s.variants = ((2, 48), "100k")  # 57k and 100k non-embedding parameters
    s.tokens = (1_048_576,)
    s.schedules = ("constant", "cosine", "wsd")
    s.wsd.decay_fraction = 0.2
    s.runner.evals_per_run = 16
    s.runner.checkpoints_per_run = 2
    s.analysis.law = "schedule"
    s.analysis.params_column = "nonembedding_params"
    s.analysis.bootstrap = 200
    s.analysis.holdout_schedule = "wsd"
    return s
