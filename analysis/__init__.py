"""Scaling-law analysis from results tables: fits, intervals, allocation, plots, reports.

Depends on results files only (never on the training code). Public API:

    table = load_results("runs.csv")                  # CSV, JSONL or a sweep directory
    fit = fit_law(table, "chinchilla", bootstrap=1000)  # dict, the content of fit.json
    print(fit_summary(fit))
    iso = isoflop(table)                              # Approach 2
    env = envelope(table)                             # Approach 1 (training curves)
    run_fit("runs.csv", "out/")                       # fit + plots + report, like the CLI

JAX runs in float64 only inside the fits (a scoped setting), so importing this
package does not change JAX's global precision.
"""

from .data import Results, load_results
from .envelope import envelope
from .errors import AnalysisError
from .fit import fit_law
from .isoflop import isoflop
from .laws import make_law
from .report import fit_summary, isoflop_summary
from .pipeline import run_fit, run_isoflop

__all__ = ["AnalysisError", "Results", "envelope", "fit_law", "fit_summary", "isoflop",
           "isoflop_summary", "load_results", "make_law", "run_fit", "run_isoflop"]
