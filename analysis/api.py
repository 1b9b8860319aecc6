"""The Python API for notebooks: results as a pandas DataFrame, and a fitted law you can call.

    from analysis import load_results, Law
    df = load_results("sweeps/default")          # CSV, TSV, JSONL, Parquet, sweep or run dir
    law = Law.load("sweeps/default/analysis/fit.json")
    law.predict(1e6, 2e7)                         # loss at N, D
    law.predict(1e6, 2e7, interval=0.95)          # (value, low, high) from the stored bootstrap
    law.n_opt(1e15), law.d_opt(1e15)              # compute-optimal N and D at C FLOPs

Everything here is numpy (no JAX): loading a law and evaluating it is instant.
"""

from __future__ import annotations

import json
import os

import numpy as np

from . import allocation
from .allocation import SIX_ND
from .data import Results, load_results as _load_table
from .errors import AnalysisError


def load_results(path, *, duplicates="drop", loss_column="loss", tokens_column="tokens"):
    """A results file (CSV, TSV, JSONL, Parquet), a sweep directory or one run directory as a
    pandas DataFrame, one row per finished run, numeric columns as numbers. What the loader
    noticed is kept in `df.attrs`: source, notes, warnings, and dropped rows with reasons."""
    import pandas as pd

    table = _load_table(path, duplicates, loss_column, tokens_column)
    df = pd.DataFrame({name: _typed(values) for name, values in table.columns.items()},
                      index=pd.Index(table.labels, name="row"))
    df.attrs.update(source=table.source, notes=list(table.notes),
                    warnings=list(table.warnings), dropped=list(table.dropped))
    return df


def _typed(values):
    """Numbers when every present cell is one (CSV cells arrive as text), else the cells."""
    out = []
    for v in values:
        if v is None or v == "":
            out.append(np.nan)
            continue
        if isinstance(v, bool):
            return list(values)
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            return list(values)
    floats = np.asarray(out, float)
    whole = np.isfinite(floats).all() and np.all(floats == np.round(floats)) \
        and all(not isinstance(v, float) and "." not in str(v) and "e" not in str(v).lower()
                for v in values)
    return floats.astype(np.int64) if whole else floats


def as_table(results) -> Results:
    """A DataFrame (from load_results or built by hand) as the analysis' own table."""
    columns = {str(c): [None if _missing(v) else v for v in results[c].tolist()]
               for c in results.columns}
    labels = [str(i) if not isinstance(i, int) else f"row {i + 1}" for i in results.index]
    source = results.attrs.get("source", "DataFrame")
    return Results(columns, labels, source, list(results.attrs.get("notes", [])))


def _missing(v):
    return v is None or (isinstance(v, float) and np.isnan(v))


class Law:
    """A fitted law read from fit.json: call it, find its compute-optimal allocation, and get
    intervals from the bootstrap stored with it."""

    def __init__(self, fit: dict):
        self.fit = fit
        self.name = fit["law"]
        self.variables = tuple(fit.get("x") or ("params", "tokens"))
        self.params = {k: float(v) for k, v in fit["params"].items()}
        self.ci95 = fit.get("ci95") or {}
        self.identified = fit.get("identified") or {}
        compute = fit.get("compute") or {}
        self.cost = (float(compute["k"]), float(compute["p"])) if "k" in compute else SIX_ND
        self.samples = {k: np.asarray(v, float)
                        for k, v in (fit.get("bootstrap_samples") or {}).items()}
        if self.name == "data-constrained":
            raise AnalysisError("Law.load reads chinchilla, power and kaplan fits; a "
                                "data-constrained law also needs the unique tokens")

    @classmethod
    def load(cls, path) -> "Law":
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "fit.json")
        try:
            with open(path, encoding="utf-8") as fh:
                return cls(json.load(fh))
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise AnalysisError(f"{path}: not a readable fit.json ({e}); pass the fit.json "
                                f"that python -m analysis fit wrote") from None

    def __repr__(self):
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        return f"Law({self.name}: {shown})"

    # --- evaluating -------------------------------------------------------------------------

    def predict(self, *values, interval: float | None = None):
        """The loss at the law's variables (N, D for chinchilla and kaplan; the one variable
        of a power law), arrays broadcast. With `interval` (e.g. 0.95): (value, low, high),
        the bounds percentiles of the prediction over the stored bootstrap resamples."""
        if len(values) != len(self.variables):
            raise AnalysisError(f"{self.name} law of {', '.join(self.variables)}: give "
                                f"{len(self.variables)} value(s), got {len(values)}")
        x = [np.asarray(v, float) for v in values]
        value = self._formula(self.params, x)
        if interval is None:
            return value
        draws = self._formula(self._sample_params(), [v[..., None] for v in x])
        return (value, *self._bounds(draws, interval))

    def n_opt(self, flops, interval: float | None = None):
        """Compute-optimal parameters at `flops` (chinchilla, kaplan), under the fit's own cost model."""
        return self._allocation(flops, 0, interval)

    def d_opt(self, flops, interval: float | None = None):
        """Compute-optimal training tokens at `flops` (chinchilla, kaplan)."""
        return self._allocation(flops, 1, interval)

    # --- internals --------------------------------------------------------------------------

    def _formula(self, p, x):
        if self.name == "chinchilla":
            N, D = x
            return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
        if self.name == "power":
            return p["E"] + p["A"] / x[0] ** p["alpha"]
        if self.name == "kaplan" and len(x) == 2:
            N, D = x
            return ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"]
        if self.name == "kaplan":
            (c_name,) = [k for k in p if k.endswith("_c")]
            (a_name,) = [k for k in p if k.startswith("alpha_")]
            return (p[c_name] / x[0]) ** p[a_name]
        raise AnalysisError(f"unknown law {self.name!r} in fit.json")

    def _allocation(self, flops, which, interval):
        if self.name not in ("chinchilla", "kaplan") or len(self.variables) != 2:
            raise AnalysisError(f"a compute-optimal allocation needs L(N, D); this is a "
                                f"{self.name} law of {', '.join(self.variables)}")
        optimum = allocation.optimum_for(self.name)
        value = optimum(self.params, flops, self.cost)[which]
        if interval is None:
            return value
        samples = {k: v for k, v in self._sample_params().items()}
        draws = optimum(samples, np.asarray(flops, float)[..., None], self.cost)[which]
        return (value, *self._bounds(draws, interval))

    def _sample_params(self):
        if not self.samples:
            raise AnalysisError("this fit.json has no bootstrap samples; fit with "
                                "--bootstrap N (N > 0) for intervals")
        return self.samples

    @staticmethod
    def _bounds(draws, interval):
        if not 0 < interval < 1:
            raise AnalysisError(f"interval must be between 0 and 1, e.g. 0.95; got {interval}")
        tail = 50 * (1 - interval)
        low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=-1)
        return low, high
