"""Learning-rate transfer: LR (a log grid, factor 2) x width (4 widths, fixed depth) x seeds under
SP and under µP. Under µP the best LR should sit at the same grid point at every width (and wider
should be better); under SP it drifts (down) as the model widens.

  python -m experiments.sweep run --config configs/sweeps/lr_transfer.py --workdir sweeps/lr_transfer
  python -m experiments.lr_transfer sweeps/lr_transfer --out reports/lr_transfer

Only the width changes, 32 to 256: 2 layers and 2 heads throughout (the head width grows with the
model, 16 to 128: the case µP's 1/d_head attention is for), one budget of 128 steps of 16 x 64
tokens (half the main job's context keeps the 256-wide model affordable). µP's base is the
narrowest model (32 wide, heads of 16), where µP is SP times the base multipliers
(model.mup_*_mult, tuned by configs/sweeps/mup_base.py). Short runs sit on a plateau for 20-40
steps and leave it at a seed-dependent step, so every cell has 3 seeds and
`experiments.lr_transfer` reports mean ± standard error and decides the best LR with them.

The argument picks a part of the grid (the full one is 6 LRs x 4 widths x 2 x 3 seeds = 144 runs):
  ""      the full grid: 3.75e-4 .. 1.2e-2 for both parametrizations
  "mup"   µP only, its optimum and both neighbours (3e-3, 6e-3, 1.2e-2): 36 runs
  "sp256" SP at width 256 only, its optimum and the neighbour above (7.5e-4, 1.5e-3; 3.75e-4
          was 0.1 nats worse on one seed): 6 runs, the reference µP-256 must match
A part can be cut further with --config.variants=... (docs/mup.md lists what was run).
No scaling law is fitted.
"""

from configs.sweep_base import default_sweep

LEARNING_RATES = tuple(3.75e-4 * 2.0**k for k in range(6))  # 3.75e-4 .. 1.2e-2
WIDTHS = (32, 64, 128, 256)
SEEDS = (0, 1, 2)
PARTS = {  # name: (parametrizations, learning rates, widths)
    "": (("sp", "mup"), LEARNING_RATES, WIDTHS),
    "mup": (("mup",), LEARNING_RATES[3:], WIDTHS),
    "sp256": (("sp",), LEARNING_RATES[1:3], WIDTHS[-1:]),
}


def get_config(arg: str = ""):
    if arg not in PARTS:
        raise ValueError(f"lr_transfer part {arg!r}; use one of {sorted(PARTS)} ('' = the full grid)")
    parametrizations, learning_rates, widths = PARTS[arg]
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
    s.variants = tuple((2, w, 2) for w in widths)
    s.tokens = (131_072,)  # 128 steps of 16 x 64 tokens
    s.learning_rates = learning_rates
    s.parametrizations = parametrizations
    s.seeds = SEEDS
    s.runner.evals_per_run = 1
    s.runner.checkpoints_per_run = 1
    s.analysis.enabled = False  # one budget, many LRs: a law over N would mean nothing here
    return s
