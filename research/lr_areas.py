"""The learning-rate schedule of a run as areas: what a schedule-aware loss law reads.

Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing") write the loss after s steps as
a function of two sums over the schedule eta_0, eta_1, ... (eta_i is the LR of update i):

- the forward area S1(s) = sum_{i<s} eta_i (warmup included);
- the annealing area S2(s) = sum_{i<s} m_i, with m_0 = 0 and
  m_i = ANNEAL_MOMENTUM * m_{i-1} + max(eta_{i-1} - eta_i, 0):
  the LR decreases so far, each fading with a momentum. Increases (warmup) add nothing.

Both are pure functions of the config; the trainer records them in every eval row and
analysis/schedules.py recomputes them (for any momentum) from the schedule's parameters.
"""

from __future__ import annotations

import numpy as np

from research import optim

ANNEAL_MOMENTUM = 0.999  # Tissue et al.'s default decay of past LR decreases


def learning_rates(train_cfg, total_steps: int) -> np.ndarray:
    """eta_0 .. eta_{total_steps-1}: the LR of every update, as the compiled step computes it."""
    s = optim.schedule_inputs(train_cfg, total_steps)
    steps = np.arange(total_steps, dtype=np.float32)
    return np.asarray(optim.lr_at(train_cfg.schedule, steps, s), dtype=np.float64)


def areas(lrs, momentum: float = ANNEAL_MOMENTUM) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2), each of length len(lrs) + 1: index s is the area after s updates."""
    lrs = np.asarray(lrs, dtype=np.float64)
    drops = np.maximum(np.concatenate([[0.0], lrs[:-1] - lrs[1:]]), 0.0) if len(lrs) else lrs
    m = np.empty_like(drops)
    acc = 0.0
    for i, d in enumerate(drops):  # a linear recurrence; runs are thousands of steps at most
        acc = momentum * acc + d
        m[i] = acc
    s1 = np.concatenate([[0.0], np.cumsum(lrs)])
    s2 = np.concatenate([[0.0], np.cumsum(m)])
    return s1, s2


class ScheduleTrace:
    """LR and areas of one run at any step (computed once, before training)."""

    def __init__(self, train_cfg, total_steps: int):
        self.lrs = learning_rates(train_cfg, total_steps)
        self.s1, self.s2 = areas(self.lrs)

    def row(self, step: int) -> dict:
        """The eval-row fields after `step` updates: the LR of the last update and both areas."""
        step = int(step)
        return {"lr": float(self.lrs[step - 1]) if step > 0 else float(self.lrs[0]),
                "lr_area": float(self.s1[step]), "lr_anneal_area": float(self.s2[step])}
