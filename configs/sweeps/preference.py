"""The over-optimisation sweep as separate sweep-runner points (experiments/preference_sweep.py).

  python -m experiments.sweep run --config configs/sweeps/preference.py:smoke --workdir DIR
                                  [--workers 2] [--config.preference.KEY=VALUE ...]

ARG is a configs/preference.py variant: `smoke` (2 reward models, 3 betas: 6 points) or `sweep`
(4 reward models, 5 betas: 10 points). One shared point pretrains (or reuses
preference.pretrain_run), cuts the data, fine-tunes and labels the pairs; then one point per
reward model (with its best-of-n curve) and one per DPO beta, each waiting for the shared one.
At the end the fit writes DIR/analysis/preference.json and DIR/analysis/figures/, the fields and
figures `python -m experiments.preference` writes for the same config.

Only name, kind, preference, runner.*, executor.* and analysis.enabled apply to a preference
sweep; its model and stages are the `preference` section (configs/preference.py's keys).
"""

from configs import preference
from configs.sweep_base import PREFERENCE_POINT, default_sweep


def get_config(arg: str = "smoke"):
    s = default_sweep()
    s.name = f"preference-{arg}"
    s.kind = "preference"
    s.preference = preference.get_config(arg)
    s.runner.train_fn = PREFERENCE_POINT
    return s
