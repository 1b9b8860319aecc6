"""µP base multipliers: a search at the base width (Tensor Programs V tunes these constants on the
small model; µP then carries them to every width). One point of the search per invocation, named
by the config argument, at the LR-transfer sweep's shape and budget (configs/sweeps/lr_transfer.py:
2 layers, 32 wide, 2 heads of 16, 128 steps of 16 x 64 tokens), 3 seeds x 3 LRs:

  python -m experiments.sweep run --config configs/sweeps/mup_base.py:out=8,attn=2.83,init=2.83 \\
      --workdir sweeps/mup_base/o8-a2.83-i2.83 --no-analysis

The argument sets model.mup_output_mult (out), mup_attn_mult (attn) and mup_init_mult (init);
a factor left out keeps its default (research/config.py). At the base width µP is SP times these
constants, so each run takes seconds. For another base, set base.model.d_model (and
mup_base_width, mup_base_head_dim, n_heads) to it and search again. Compare points with
`python -m experiments.lr_transfer` over a point's directory or mean the seeds of results.csv.
"""

from configs.sweeps import lr_transfer
from configs.sweep_base import default_sweep

LEARNING_RATES = (3e-3, 6e-3, 1.2e-2)
SEEDS = (0, 1, 2)
KEYS = {"out": "mup_output_mult", "attn": "mup_attn_mult", "init": "mup_init_mult"}


def multipliers(arg: str) -> dict:
    """'out=8,attn=2.83' -> {'mup_output_mult': 8.0, 'mup_attn_mult': 2.83}."""
    out = {}
    for item in filter(None, (part.strip() for part in arg.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in KEYS:
            raise ValueError(f"mup_base point {item!r}: write NAME=VALUE with NAME one of "
                             f"{', '.join(KEYS)}, e.g. out=8,attn=2.83,init=2.83")
        out[KEYS[name]] = float(value)
    return out


def get_config(arg: str = ""):
    s = default_sweep()
    base = lr_transfer.get_config("mup")
    s.name = "mup_base"
    s.kind = "grid"
    s.base = base.base
    s.base.model.parametrization = "mup"
    for key, value in multipliers(arg).items():
        s.base.model[key] = value
    width = lr_transfer.WIDTHS[0]
    s.variants = ((2, width, 2),)
    s.tokens = base.tokens
    s.learning_rates = LEARNING_RATES
    s.seeds = SEEDS
    s.runner.evals_per_run = 1
    s.runner.checkpoints_per_run = 1
    s.analysis.enabled = False
    return s
