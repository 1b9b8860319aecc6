"""Reward-model over-optimisation (Gao et al. 2023): gold reward against d = sqrt(KL).

Two forms, both through the origin (R is the gain over the starting policy, so R(0) = 0):
  best-of-n:  R_bon(d) = d (alpha - beta d)
  RL / DPO:   R_RL(d)  = d (alpha - beta log d)
Each is linear in (alpha, beta), so the fit is an exact least-squares solve. Intervals come
from a bootstrap over prompts: the per-prompt table is resampled by rows, the curve averaged
and refitted. Inputs are plain arrays or the JSON the preference pipeline writes; nothing here
imports the training code.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from analysis.errors import AnalysisError

FORMS = ("bon", "rl")


def design(d, form: str) -> np.ndarray:
    """Columns multiplying (alpha, beta): [d, -d^2] or [d, -d log d] (0 at d = 0)."""
    d = np.asarray(d, np.float64)
    if form == "bon":
        return np.stack([d, -d * d], axis=1)
    if form == "rl":
        safe = np.where(d > 0, d, 1.0)
        return np.stack([d, -d * np.log(safe)], axis=1)
    raise AnalysisError(f"unknown form {form!r}; use 'bon' (best-of-n) or 'rl'")


def fit(d, reward, form: str = "bon") -> dict:
    """Least-squares alpha, beta and R^2 (about the mean of `reward`) of one curve."""
    d, reward = np.asarray(d, np.float64), np.asarray(reward, np.float64)
    if d.shape != reward.shape or d.ndim != 1 or len(d) < 3:
        raise AnalysisError(f"a fit needs matching 1-D d and reward with at least 3 points, got "
                            f"shapes {d.shape} and {reward.shape}")
    if np.any(d < 0) or not np.all(np.isfinite(reward)):
        raise AnalysisError("d = sqrt(KL) must be >= 0 and every reward finite")
    X = design(d, form)
    coef, *_ = np.linalg.lstsq(X, reward, rcond=None)
    residual = reward - X @ coef
    total = np.sum((reward - reward.mean()) ** 2)
    r2 = 1.0 - np.sum(residual ** 2) / total if total > 0 else float("nan")
    return {"alpha": float(coef[0]), "beta": float(coef[1]), "r2": float(r2)}


def fit_table(d, table_PK, form: str = "bon", bootstrap: int = 200, seed: int = 0,
              d_table_PK=None) -> dict:
    """Fit the mean over prompts of a [prompts, points] gain table, with percentile 95%
    intervals from resampling prompts. `d_table_PK` (optional): per-prompt KL, when d is
    itself measured (DPO); then d = sqrt(mean KL) is recomputed in every resample."""
    table_PK = np.asarray(table_PK, np.float64)
    if table_PK.ndim != 2:
        raise AnalysisError(f"the gain table must be [prompts, points], got shape {table_PK.shape}")

    def d_of(rows):
        if d_table_PK is None:
            return np.asarray(d, np.float64)
        return np.sqrt(np.maximum(np.asarray(d_table_PK, np.float64)[rows].mean(axis=0), 0.0))

    every = np.arange(len(table_PK))
    point = fit(d_of(every), table_PK.mean(axis=0), form)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        rows = rng.integers(0, len(table_PK), len(table_PK))
        try:
            draws.append(fit(d_of(rows), table_PK[rows].mean(axis=0), form))
        except AnalysisError:
            continue
    out = {"form": form, **point, "bootstrap": len(draws), "prompts": int(len(table_PK))}
    for key in ("alpha", "beta"):
        values = np.array([x[key] for x in draws])
        out[f"{key}_interval"] = [float(np.percentile(values, 2.5)),
                                  float(np.percentile(values, 97.5))] if len(values) else None
    return out


def peak(alpha: float, beta: float, form: str = "bon") -> dict:
    """Where the fitted gold gain is largest: d* and R(d*) (None when beta <= 0: no peak)."""
    if beta <= 0:
        return {"d": None, "gain": None}
    if form == "bon":
        d = alpha / (2 * beta)
    else:  # d/dd [alpha d - beta d log d] = alpha - beta (log d + 1) = 0
        d = math.exp(alpha / beta - 1)
    gain = float((design([d], form) @ np.array([alpha, beta]))[0])
    return {"d": float(d), "gain": gain}


def _save(fig, path: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(curves: list[dict], path: str, title: str) -> str:
    """Gold reward gain (points and fitted curve) against sqrt(KL), and beside it the proxy
    reward gain where there is one (its units are the reward model's own); one colour per curve.
    Each curve: {"label", "d", "gold", "proxy" (or None), "fit" (fit() output)}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_proxy = any(c.get("proxy") is not None for c in curves)
    fig, axes = plt.subplots(1, 2 if with_proxy else 1, figsize=(10 if with_proxy else 6, 4))
    axes = np.atleast_1d(axes)
    for i, c in enumerate(curves):
        colour, d = f"C{i}", np.asarray(c["d"], float)
        f = c["fit"]
        grid = np.linspace(0, max(d.max(), 1e-9), 100)
        axes[0].plot(d, c["gold"], "o", color=colour)
        axes[0].plot(grid, design(grid, f["form"]) @ np.array([f["alpha"], f["beta"]]), "-",
                     color=colour, label=f"{c['label']} (fit R²={f['r2']:.3f})")
        if c.get("proxy") is not None:
            axes[1].plot(d, c["proxy"], "^--", color=colour, label=c["label"])
    xlabel = "d = sqrt(KL(policy || initial policy))"
    axes[0].set(xlabel=xlabel, ylabel="gold reward gain", title=title)
    axes[0].axhline(0, color="grey", lw=0.5)
    axes[0].legend(fontsize=8)
    if with_proxy:
        axes[1].set(xlabel=xlabel, ylabel="proxy reward gain (reward-model units)",
                    title="proxy reward of the same samples")
        axes[1].legend(fontsize=8)
    return _save(fig, path)


def plot_coefficients(sizes, fits: list[dict], path: str, xlabel: str) -> str:
    """alpha and beta (with intervals) of one fit per reward model, against its size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key in zip(axes, ("alpha", "beta")):
        values = [f[key] for f in fits]
        lo = [v - (f[f"{key}_interval"] or [v, v])[0] for v, f in zip(values, fits)]
        hi = [(f[f"{key}_interval"] or [v, v])[1] - v for v, f in zip(values, fits)]
        ax.errorbar(sizes, values, yerr=[lo, hi], fmt="o-", capsize=3)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(key)
    return _save(fig, path)


def load(path: str) -> dict:
    """The JSON the preference pipeline writes (best_of_n.json, dpo_sweep.json)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise AnalysisError(f"cannot read {path} ({e}); run the preference pipeline "
                            "first") from None
