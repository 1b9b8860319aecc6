"""Iso-FLOP sweep (Hoffmann et al. 2022, approach 2): for each compute budget C, every model
size trained on D = C / (its own analytic training FLOPs per token) tokens, rounded to whole
optimizer steps (each run within experiments.sweeplib.plan.ISOFLOP_TOLERANCE of C). The analysis
fits a parabola in log N per budget and the compute-optimal N(C), D(C).

  python -m experiments.sweep run --config configs/sweeps/isoflop.py --workdir sweeps/isoflop
"""

from configs.sweep_base import default_sweep


def get_config(arg: str = ""):
    s = default_sweep()
    s.name = "isoflop"
    s.kind = "isoflop"
    s.base.model.context_length = 128
    s.base.train.batch_size = 16
    s.variants = ("100k", "300k", "800k", "1.5m", "2.7m")
    s.learning_rates = (3e-3,)  # one LR for every size, not configs/gpt.py's per-size LRs
    s.flops = (3e12, 1e13, 3e13)
    s.runner.evals_per_run = 2
    return s
