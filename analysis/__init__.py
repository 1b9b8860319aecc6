"""Scaling-law analysis from results tables: fits, intervals, allocation, plots, reports.

Depends on results files only (never on the training code). Public API:

    df = load_results("runs.csv")                     # a pandas DataFrame (CSV, TSV, JSONL,
                                                      # Parquet, a sweep or run directory)
    fit = fit_law(df, "chinchilla", bootstrap=1000)   # dict, the content of fit.json
    print(fit_summary(fit))
    iso = isoflop(df)                                 # Approach 2
    run_fit(df, "out/")                               # fit + plots + report, like the CLI
    law = Law.load("out/fit.json")                    # law.predict(N, D), law.n_opt(C), ...
    env = envelope(load_table("curves.csv"))          # Approach 1 (training curves)

`load_table` gives the analysis' own table (raw cells, row labels for error messages).

JAX runs in float64 only inside the fits (a scoped setting), so importing this
package does not change JAX's global precision.
"""

import importlib

# Modules named like the functions they export are imported now (numpy only), so the
# names stay bound to the functions; the rest load on first use.
from .envelope import envelope
from .isoflop import isoflop

# Lazy: `python -m analysis curves` or `--help` should not pay for importing JAX.
_WHERE = {"Results": "data", "load_table": "data", "load_results": "api", "Law": "api",
          "AnalysisError": "errors", "fit_law": "fit", "make_law": "laws",
          "fit_summary": "report", "isoflop_summary": "report", "run_fit": "pipeline",
          "run_isoflop": "pipeline"}

__all__ = sorted([*_WHERE, "envelope", "isoflop"])


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
