"""The main job: a 4 model sizes x 4 token budgets grid on the embedded Shakespeare corpus,
sized to finish in about 20 minutes on 2 CPU cores, compilation included, then the fit.

  python -m experiments.sweep run --config configs/sweeps/default.py --workdir sweeps/default

Sizes span 15x in non-embedding parameters and budgets 8x in tokens (0.1 to 8 tokens per
parameter), so both terms of L(N, D) = E + A / N^alpha + B / D^beta are constrained by the data.
The largest budget is about a quarter of an epoch of the corpus: no token is seen twice.
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
    s.variants = ("100k", "300k", "800k", "1.5m")  # 0.1M to 1.55M non-embedding parameters
    s.tokens = (131_072, 262_144, 524_288, 1_048_576)  # 64 to 512 steps of 16 x 128 tokens
    s.runner.evals_per_run = 2
    s.runner.checkpoints_per_run = 4
    s.analysis.law = "chinchilla"
    s.analysis.bootstrap = 200
    return s
