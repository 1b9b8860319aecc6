"""Learning-rate transfer: LR (a log grid, factor 2) x width (4 widths, fixed depth) under SP and
under µP. Under µP the best LR should sit at the same grid point at every width; under SP it
drifts (down) as the model widens. 8 LRs x 4 widths x 2 parametrizations = 64 runs.

  python -m experiments.sweep run --config configs/sweeps/lr_transfer.py --workdir sweeps/lr_transfer
  python -m experiments.lr_transfer sweeps/lr_transfer --out reports/lr_transfer

Only the width changes: 2 layers and 4 heads throughout (the head width grows with the model,
the case µP's 1/d_head attention is for), one token budget. µP's base is the narrowest model
(64 wide, heads of 16), where µP and SP are the same model. No scaling law is fitted.
"""

from configs.sweep_base import default_sweep

LEARNING_RATES = tuple(2.0 ** -k for k in range(11, 3, -1))  # 4.9e-4 .. 6.25e-2


def get_config(arg: str = ""):
    s = default_sweep()
    s.name = "lr_transfer"
    s.kind = "grid"
    s.base.model.context_length = 128
    s.base.model.position = "rope"
    s.base.model.mup_base_width = 64
    s.base.model.mup_base_head_dim = 16
    s.base.train.batch_size = 16
    s.base.train.eval_batches = 8
    s.variants = ((2, 64, 4), (2, 128, 4), (2, 256, 4), (2, 512, 4))
    s.tokens = (524_288,)  # 256 steps of 16 x 128 tokens
    s.learning_rates = LEARNING_RATES
    s.parametrizations = ("sp", "mup")
    s.runner.evals_per_run = 1
    s.runner.checkpoints_per_run = 2
    s.analysis.enabled = False  # one budget, many LRs: a law over N would mean nothing here
    return s
