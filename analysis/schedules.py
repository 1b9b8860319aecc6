"""Learning-rate schedules as numbers: the LR of every update and the areas under it.

The same arithmetic as the trainer's (linear warmup from peak/warmup to the peak, then
cosine to peak * min_lr_ratio at the last step, constant, or warmup-stable-decay with a linear
decay over the last decay_fraction of the steps; boundaries rounded to the nearest step), in
float64 and without importing research/: a law fitted here must be able to predict the final
loss of a schedule nobody trained. tests/test_lr_areas.py checks it against the trainer.

Areas (Tissue et al. 2024): S1(s) = sum_{i<s} eta_i, the forward area, warmup included;
S2(s) = sum_{i<s} m_i with m_i = momentum * m_{i-1} + max(eta_{i-1} - eta_i, 0), the
annealing area (LR decreases so far, each fading with the momentum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from .errors import AnalysisError

KINDS = ("cosine", "constant", "wsd")


@dataclass(frozen=True)
class Schedule:
    kind: str
    total_steps: int
    peak: float
    min_lr_ratio: float = 0.1
    warmup: int = 1
    decay_start: int = 0  # wsd only: the first step of the decay

    @classmethod
    def from_train(cls, train: dict, total_steps: int) -> "Schedule":
        """From a run's config.json `train` section and its number of steps."""
        total = int(total_steps)
        if int(train.get("warmup_steps", -1)) > 0:
            warmup = int(train["warmup_steps"])
        else:
            warmup = max(1, int(round(float(train.get("warmup_fraction", 0.05)) * total)))
        decay = float(train.get("decay_fraction", 0.2))
        return cls(str(train.get("schedule", "cosine")), total, float(train["learning_rate"]),
                   float(train.get("min_lr_ratio", 0.1)), warmup,
                   int(round(total * (1.0 - decay))))

    @classmethod
    def named(cls, kind: str, total_steps: int, peak: float, *, min_lr_ratio=0.1,
              warmup_fraction=0.05, warmup_steps=-1, cooldown_fraction=0.2) -> "Schedule":
        """A schedule nobody trained: `kind` over `total_steps` (WSD decays over the last
        cooldown_fraction), the warmup a fraction of the run unless warmup_steps > 0."""
        if kind not in KINDS:
            raise AnalysisError(f"unknown schedule '{kind}'; use {', '.join(KINDS)}")
        return cls.from_train(dict(schedule=kind, learning_rate=peak, min_lr_ratio=min_lr_ratio,
                                   warmup_fraction=warmup_fraction, warmup_steps=warmup_steps,
                                   decay_fraction=cooldown_fraction), total_steps)

    def learning_rates(self) -> np.ndarray:
        """eta_0 .. eta_{total_steps-1}."""
        step = np.arange(self.total_steps, dtype=np.float64)
        peak, floor = self.peak, self.peak * self.min_lr_ratio
        ramp = peak * np.minimum(1.0, (step + 1.0) / self.warmup)
        if self.kind == "constant":
            return ramp
        if self.kind == "cosine":
            span = max(self.total_steps - self.warmup, 1)
            frac = np.clip((step - self.warmup) / span, 0.0, 1.0)
            return np.where(step < self.warmup, ramp,
                            floor + (peak - floor) * 0.5 * (1.0 + np.cos(np.pi * frac)))
        if self.kind == "wsd":
            span = max(self.total_steps - self.decay_start, 1)
            frac = np.clip((step - self.decay_start) / span, 0.0, 1.0)
            return np.where(step < self.decay_start, ramp, peak + (floor - peak) * frac)
        raise AnalysisError(f"unknown schedule '{self.kind}'; use {', '.join(KINDS)}")

    def areas(self, momentum: float) -> tuple[np.ndarray, np.ndarray]:
        """(S1, S2), index s = after s updates (length total_steps + 1)."""
        return areas(self.learning_rates(), momentum)


def areas(lrs, momentum: float) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2) of an LR sequence, index s = after s updates."""
    lrs = np.asarray(lrs, dtype=np.float64)
    drops = np.maximum(np.diff(lrs, prepend=lrs[:1]) * -1.0, 0.0)
    m = lfilter([1.0], [1.0, -float(momentum)], drops)
    return (np.concatenate([[0.0], np.cumsum(lrs)]), np.concatenate([[0.0], np.cumsum(m)]))
