"""Smoke sweep: 2 model sizes x 2 token budgets, about a minute on 2 CPU cores.

For trying the tool and for the end-to-end test. Four points cannot pin down the five
parameters of L(N, D), so the sweep fits the three-parameter power law in compute,
L(C) = E + A / C^alpha, and ends with a report like any other sweep (far too small for a
meaningful law: read it for its shape, not its numbers).

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
    s.learning_rates = (3e-3,)  # one LR for both, not configs/gpt.py's per-size LRs
    s.tokens = (64 * 8 * 24, 64 * 8 * 48)  # 24 and 48 optimizer steps
    s.runner.evals_per_run = 1
    s.runner.checkpoints_per_run = 3
    s.analysis.law = "power"
    s.analysis.x = "flops"
    s.analysis.bootstrap = 20
    return s
