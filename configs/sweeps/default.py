"""The main job: a 4 model sizes x 4 token budgets grid on the embedded Shakespeare corpus,
sized to finish in about 20 minutes on 2 CPU cores, compilation included, then the fit.

  python -m experiments.sweep run --config configs/sweeps/default.py --workdir sweeps/default

Sizes span about 8x in non-embedding parameters and budgets 8x in tokens, so both exponents
of L(N, D) = E + A / N^alpha + B / D^beta are constrained by the data.
"""

from experiments.sweeplib.spec import default_sweep


def get_config(arg: str = ""):
    s = default_sweep()
    s.name = "default"
    s.kind = "grid"
    s.base.model.context_length = 128
    s.base.train.batch_size = 16
    s.base.train.learning_rate = 3e-3
    s.base.train.eval_batches = 8
    s.variants = ("300k", "800k", "1.5m", "2.7m")
    s.tokens = (250_000, 500_000, 1_000_000, 2_000_000)
    s.runner.evals_per_run = 2
    s.runner.checkpoints_per_run = 4
    s.analysis.law = "chinchilla"
    s.analysis.bootstrap = 200
    return s
