"""Learning-rate transfer across depth under depth-µP (research/mup.py, CompleteP): LR x depth
(2, 4, 8 layers at width 64) x 3 seeds, µP with the tuned base multipliers, each residual branch
scaled by (L0/L)^alpha with L0 = 2. The argument picks alpha's rule: "complete" (alpha = 1, the
default) or "sqrt" (alpha = 1/2), or "none" for the same grid without depth-µP.

  python -m experiments.sweep run --config configs/sweeps/depth_transfer.py:complete \\
      --workdir sweeps/depth_transfer --no-analysis
  python -m experiments.lr_transfer sweeps/depth_transfer --out reports/depth_transfer

(experiments.lr_transfer groups by width: with one width every depth lands in one curve; read
results.csv by n_layers instead.) Budget and shape as configs/sweeps/lr_transfer.py.
"""

from configs.sweeps import lr_transfer

DEPTHS = (2, 4, 8)
WIDTH = 64
LEARNING_RATES = (3e-3, 6e-3, 1.2e-2)


def get_config(arg: str = "complete"):
    rule = arg or "complete"
    if rule not in ("complete", "sqrt", "none"):
        raise ValueError(f"depth_transfer rule {rule!r}; use complete, sqrt or none")
    s = lr_transfer.get_config("mup")
    s.name = "depth_transfer"
    s.base.model.depth_parametrization = rule
    s.base.model.mup_base_depth = DEPTHS[0]
    s.variants = tuple((depth, WIDTH, 2) for depth in DEPTHS)
    s.learning_rates = LEARNING_RATES
    return s
