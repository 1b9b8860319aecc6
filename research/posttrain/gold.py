"""The gold reward: a transparent, peaked function of one text feature, and Bradley-Terry labels.

gold(text) = -((f(text) - peak) / width)^2, with f the share of vowels among the response's
letters. It is highest at `peak` and falls on either side. Set `peak` above what the SFT
policy usually writes and its preference pairs mostly say "more vowels is better"; a reward
model that learns only that trend keeps rewarding vowels past the peak, where the gold reward
falls. The set-up is built so that over-optimisation can happen (docs/preference.md).
"""

from __future__ import annotations

import numpy as np

VOWELS = frozenset("aeiouAEIOU")


def vowel_share(text: str) -> float:
    """Vowels / letters of `text` (0 when it has no letters)."""
    letters = [c for c in text if c.isascii() and c.isalpha()]
    return sum(c in VOWELS for c in letters) / len(letters) if letters else 0.0


def gold_reward(texts, peak: float, width: float) -> np.ndarray:
    """gold of each text: -((vowel share - peak) / width)^2."""
    f = np.array([vowel_share(t) for t in texts], np.float64)
    return -((f - peak) / width) ** 2


def bradley_terry_labels(gold_a, gold_b, temperature: float, seed: int) -> np.ndarray:
    """True where `a` is preferred, drawn with P(a over b) = sigmoid((gold_a - gold_b) / T):
    real, controlled label noise (T -> 0 always picks the higher gold)."""
    diff = (np.asarray(gold_a, np.float64) - np.asarray(gold_b, np.float64)) / temperature
    p_a = 1.0 / (1.0 + np.exp(-np.clip(diff, -60, 60)))
    return np.random.default_rng(seed).random(p_a.shape) < p_a
