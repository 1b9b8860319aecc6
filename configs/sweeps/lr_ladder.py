"""Per-size learning rates for SP: LR (a log grid, factor 2) x the main job's four model sizes,
at one token budget (524k tokens, 256 steps: the geometric middle of the main job's 128 to 1024
steps). configs/gpt.py's LEARNING_RATES and the main job's per-size LRs come from this sweep.

  python -m experiments.sweep run --config configs/sweeps/lr_ladder.py --workdir sweeps/lr_ladder
  python -m experiments.lr_transfer sweeps/lr_ladder --out reports/lr_ladder

6 LRs x 4 sizes = 24 runs, about 13 minutes on 2 CPU cores. The second command draws loss
against LR per size (d_model tells the sizes apart) and prints each size's best LR; a best LR at
either end of the grid means the grid should be widened. No scaling law is fitted.
"""

from configs.sweep_base import default_sweep
from configs.sweeps.default import get_config as default_config

LEARNING_RATES = tuple(7.5e-4 * 2.0**k for k in range(6))  # 7.5e-4 .. 2.4e-2


def get_config(arg: str = ""):
    main = default_config()
    s = default_sweep()
    s.name = "lr_ladder"
    s.kind = "grid"
    s.base = main.base  # the main job's model and training settings, LR aside
    s.base.train.eval_points = 0  # no loss curves: only the final loss is compared
    s.variants = main.variants
    s.tokens = (524_288,)
    s.learning_rates = LEARNING_RATES
    s.runner.evals_per_run = 1
    s.runner.checkpoints_per_run = 1
    s.analysis.enabled = False  # one budget, many LRs: no law over N here
    return s
