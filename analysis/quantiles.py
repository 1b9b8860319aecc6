"""Student's t quantile for a whole number of degrees of freedom, in numpy.

The fit's profile check and the iso-FLOP intervals need one quantile each; importing
scipy.special for them costs about a second of a warm `analysis fit`. For whole degrees of
freedom the t distribution has a closed form (Abramowitz and Stegun 26.7.3-4): with
theta = atan(t / sqrt(dof)) and c = cos^2 theta, P(|T| <= t) is a finite series in c,
which bisection inverts.
"""

from __future__ import annotations

import math

import numpy as np


def t_within(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's t with `dof` degrees of freedom (a whole number >= 1)."""
    theta = math.atan(t / math.sqrt(dof))
    c = math.cos(theta) ** 2
    if dof % 2 == 0:
        # sin(theta) * (1 + 1/2 c + 1*3/(2*4) c^2 + ...), dof/2 terms
        k = np.arange(1, dof // 2)
        terms = np.cumprod(c * (2 * k - 1) / (2 * k))
        return math.sin(theta) * (1.0 + float(terms.sum()))
    if dof == 1:
        return 2 * theta / math.pi
    # 2/pi * (theta + sin(theta) cos(theta) (1 + 2/3 c + 2*4/(3*5) c^2 + ...)), (dof-1)/2 terms
    k = np.arange(1, (dof - 1) // 2)
    terms = np.cumprod(c * (2 * k) / (2 * k + 1))
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * (1.0 + float(terms.sum())))


def t_quantile(dof: int, p: float) -> float:
    """The p quantile of Student's t with `dof` whole degrees of freedom, 0.5 <= p < 1
    (scipy.special.stdtrit(dof, p)), to about 1e-12 relative."""
    dof = int(dof)
    if dof < 1 or not 0.5 <= p < 1:
        raise ValueError(f"t_quantile needs dof >= 1 and 0.5 <= p < 1, got {dof}, {p}")
    target = 2 * p - 1  # P(|T| <= t) at the p quantile
    lo, hi = 0.0, 1.0
    while t_within(hi, dof) < target:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_within(mid, dof) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * hi:
            break
    return 0.5 * (lo + hi)


def f1_quantile(dof: int, p: float) -> float:
    """The p quantile of the F distribution with 1 and `dof` degrees of freedom
    (scipy.special.fdtri(1, dof, p)): the square of t's (1 + p) / 2 quantile."""
    return t_quantile(dof, (1 + p) / 2) ** 2
