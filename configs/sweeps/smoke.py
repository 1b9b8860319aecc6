"""Smoke sweep: 2 model sizes x 2 token budgets, about a minute on 2 CPU cores.

For trying the tool and for the end-to-end test; far too small for a meaningful law (the fit of
4 points is expected to fail, and the runner says so in one line while keeping results.csv).

  python -m experiments.sweep run --config configs/sweeps/smoke.py --workdir sweeps/smoke
"""

from configs.sweep_base import default_sweep


def get_config(arg: str = ""):
    s = default_sweep()
    s.name = "smoke"
    s.kind = "grid"
    s.base.model.context_length = 64
    s.base.train.batch_size = 8
    s.base.train.eval_batches = 4
    s.base.train.log_every = 5
    s.variants = ("100k", "300k")
    s.tokens = (64 * 8 * 24, 64 * 8 * 48)  # 24 and 48 optimizer steps
    s.runner.evals_per_run = 1
    s.runner.checkpoints_per_run = 3
    s.analysis.bootstrap = 20
    return s
