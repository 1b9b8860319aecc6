"""Warmup-stable-decay sweep (Hägele et al. 2024): per model size one constant-LR parent run,
and a short decay branch from its checkpoint for every token budget D.

Each branch of budget D (steps_D optimizer steps) restores the parent's checkpoint at step
round(steps_D * (1 - decay_fraction)) and decays the learning rate linearly over the rest, so one
model size yields len(tokens) data points for about the cost of its longest run plus the decays.
The parent checkpoints exactly those steps (train.keep_steps) and keeps them; parents and branches
share one warmup (train.warmup_steps). Branches wait for their parent to finish.

  python -m experiments.sweep plan --config configs/sweeps/wsd.py --workdir sweeps/wsd
"""

from configs.sweep_base import default_sweep


def get_config(arg: str = ""):
    s = default_sweep()
    s.name = "wsd"
    s.kind = "wsd"
    s.base.model.context_length = 128
    s.base.train.batch_size = 16
    s.learning_rates = (3e-3,)  # one LR for every size, not configs/gpt.py's per-size LRs
    s.base.train.warmup_fraction = 0.05  # of the parent's steps; shared by its branches
    s.variants = ("300k", "800k", "1.5m", "2.7m")
    s.tokens = (250_000, 500_000, 1_000_000, 2_000_000)
    s.wsd.decay_fraction = 0.2
    s.runner.evals_per_run = 2
    return s
