"""One definition of compute for every allocation, frontier and plot axis.

With a `flops` column, compute C means that column, and the cost of one token
as a function of model size, f(N) = flops / tokens, is inferred from the table
as a power law f(N) = k N^p (least squares in log space across runs). Without a
`flops` column, or when the user asks for it (`--compute 6nd`), C = 6 N D,
i.e. k = 6 and p = 1. N_opt(C) then minimises L(N, D) subject to C = f(N) D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Results
from .errors import AnalysisError

CHOICES = ("auto", "flops", "6nd")


@dataclass(frozen=True)
class CostModel:
    name: str                 # "flops column" or "6ND"
    k: float                  # C = k N^p D
    p: float
    params_column: str = "params"
    max_rel_error: float = 0.0  # of k N^p against the table's own flops / tokens
    source: str = "6ND"         # what f was fitted to: "flops_per_token" or "flops / tokens"

    def tokens(self, N, C):
        """D such that f(N) D = C."""
        return np.asarray(C, float) / (self.k * np.asarray(N, float) ** self.p)

    def describe(self) -> dict:
        if self.name == "6ND":
            return dict(name="6ND", formula="C = 6 N D", params_column=self.params_column)
        return dict(name="flops column",
                    formula=f"C = flops column; N_opt uses C = f(N) D with "
                            f"f(N) = {self.k:.4g} N^{self.p:.4f}",
                    k=self.k, p=self.p, params_column=self.params_column,
                    f_max_rel_error=self.max_rel_error,
                    source=self.source,
                    note=f"f(N) = FLOPs per token, fitted to {self.source} across the table's "
                         f"runs; outside their N range it is extrapolated (a warning says when "
                         f"N_opt gets there)")

    def axis_label(self) -> str:
        return "compute C (FLOPs, 6ND)" if self.name == "6ND" else "compute C (FLOPs, flops column)"


def cost_model(table: Results, params_column="params", compute="auto") -> CostModel:
    """The convention for this table: the flops column when present, else 6ND."""
    if compute not in CHOICES:
        raise AnalysisError(f"unknown --compute '{compute}'; use one of {', '.join(CHOICES)}")
    if compute == "6nd" or (compute == "auto" and not table.has("flops")):
        return CostModel("6ND", 6.0, 1.0, params_column)
    if not table.has("flops"):
        raise AnalysisError(f"{table.source}: --compute flops but the table has no 'flops' "
                            f"column; add it or use --compute 6nd")
    N = table.numeric(params_column)
    # The runs' analytic FLOPs per token when recorded (exact per size), else flops / tokens.
    source = "flops_per_token" if table.has("flops_per_token") else "flops / tokens"
    f = table.numeric("flops_per_token") if source == "flops_per_token" else \
        table.numeric("flops") / table.numeric("tokens")
    logN, logf = np.log(N), np.log(f)
    if np.ptp(logN) < 1e-9:  # one model size: the exponent cannot be inferred, assume linear
        p, logk = 1.0, float(np.mean(logf - logN))
    else:
        p, logk = np.polyfit(logN, logf, 1)
    k = float(np.exp(logk))
    err = float(np.max(np.abs(k * N ** p / f - 1.0)))
    return CostModel("flops column", k, float(p), params_column, err, source)


def compute_column(table: Results, model: CostModel) -> np.ndarray:
    """C for every row under the convention (the table's own flops, or 6ND)."""
    if model.name == "6ND":
        return table.six_nd(model.params_column)
    return table.numeric("flops")
