"""Learning-rate transfer: LR (a log grid, factor 2) x width (4 widths, fixed depth) under SP and
under µP. Under µP the best LR should sit at the same grid point at every width; under SP it
drifts (down) as the model widens. 6 LRs x 4 widths x 2 parametrizations = 48 runs of 128 steps,
about 10-12 minutes on 2 otherwise idle CPU cores. `sweep plan` estimates 17.5 minutes there
(23 under load): it counts process start and compilation once per run, which a sweep's
long-lived child pays once per shape, so its estimates run 1.5-1.8x long here.

  python -m experiments.sweep run --config configs/sweeps/lr_transfer.py --workdir sweeps/lr_transfer
  python -m experiments.lr_transfer sweeps/lr_transfer --out reports/lr_transfer

Only the width changes, 32 to 256: 2 layers and 2 heads throughout (the head width grows with the
model, 16 to 128: the case µP's 1/d_head attention is for), one budget of 128 steps of 16 x 64
tokens (half the main job's context keeps the 256-wide model affordable). µP's base is the
narrowest model (32 wide, heads of 16), where µP and SP are the same model. The grid is
configs/sweeps/lr_ladder.py's points moved one step down: there (2048-token steps) SP's best LR
was 6e-3 for the 48- and 64-wide 2-layer models, with a cliff at 1.2e-2, and 3e-3 at 128 wide;
with half the tokens per step and up to 8x the width SP's optima should lie lower, so
3.75e-4 .. 1.2e-2 should bracket SP's best LR at every width and µP's (the 32-wide model's) at
both ends. A best LR at an end of the grid means it did not; `experiments.lr_transfer` prints
each width's best LR. No scaling law is fitted.
"""

from configs.sweep_base import default_sweep

LEARNING_RATES = tuple(3.75e-4 * 2.0**k for k in range(6))  # 3.75e-4 .. 1.2e-2
WIDTHS = (32, 64, 128, 256)


def get_config(arg: str = ""):
    s = default_sweep()
    s.name = "lr_transfer"
    s.kind = "grid"
    s.base.model.context_length = 64
    s.base.model.position = "rope"
    s.base.model.mup_base_width = WIDTHS[0]
    s.base.model.mup_base_head_dim = WIDTHS[0] // 2
    s.base.train.batch_size = 16
    s.base.train.eval_batches = 8
    s.base.train.eval_points = 0  # no loss curves: only the final loss is compared
    s.variants = tuple((2, w, 2) for w in WIDTHS)
    s.tokens = (131_072,)  # 128 steps of 16 x 64 tokens
    s.learning_rates = LEARNING_RATES
    s.parametrizations = ("sp", "mup")
    s.runner.evals_per_run = 1
    s.runner.checkpoints_per_run = 1
    s.analysis.enabled = False  # one budget, many LRs: a law over N would mean nothing here
    return s
