"""Which fitted quantities the data pin down, and numbers printed at a usable precision.

A quantity is *identified* when its bootstrap distribution is tight: standard error
at most half the value and a 95% interval spanning at most a factor MAX_RATIO (for
positive quantities), and the starts that reach the best objective agree on it.
Exponents (alpha, beta, a, b, ...) live in a narrow range (a, b in [0, 1/p]), where a
relative rule passes "0.39 (95% CI 0.14 .. 0.93)"; for them the 95% interval must also
be at most MAX_EXPONENT_WIDTH wide.
An unidentified quantity is reported as "not identified (95% range lo .. hi)",
never as value ± stderr (a stderr larger than the value says nothing).
"""

from __future__ import annotations

import math

MAX_REL_STDERR = 0.5
MAX_RATIO = 10.0
MAX_EXPONENT_WIDTH = 0.5
EXACT_REL = 1e-6   # a stderr below this fraction of the value: an exact fit, not a precision
TINY, HUGE = 1e-30, 1e30


def is_exponent(name):
    """Allocation exponents a, b and a law's exponents (alpha, beta, alpha_N, ...)."""
    return name in ("a", "b") or name.startswith(("alpha", "beta"))


def is_identified(value, stderr, ci, disagree=False, exponent=False):
    if disagree or value is None or not math.isfinite(value):
        return False
    if not TINY <= abs(value) <= HUGE:
        return False
    if stderr is None or ci is None:
        return stderr is None and ci is None  # no bootstrap: judged by the starts alone
    if not (math.isfinite(stderr) and stderr <= MAX_REL_STDERR * abs(value)):
        return False
    lo, hi = ci
    if exponent and hi - lo > MAX_EXPONENT_WIDTH:
        return False
    if not exponent and value > 0 and lo <= 0:
        return False  # a positive scale whose interval reaches zero (e.g. no loss floor)
    return not (lo > 0 and hi / lo > MAX_RATIO)


def classify(values: dict, stderr: dict, ci95: dict, disagree=()) -> dict:
    """name -> True/False for every quantity in `values`."""
    boot = bool(ci95)
    return {k: is_identified(v, stderr.get(k) if boot else None, ci95.get(k) if boot else None,
                             k in disagree, is_exponent(k)) for k, v in values.items()}


def num(v, sig=4):
    """A readable number: 4 significant digits, never a value beyond 1e-30..1e30."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if v == 0:
        return "0"
    if abs(v) < TINY:
        return "≈0"
    if abs(v) > HUGE:
        return "> 1e30" if v > 0 else "< -1e30"
    return f"{v:.{sig}g}"


def _parts(v, se):
    """(value, stderr, exponent suffix) rounded to the stderr's second significant digit.
    Scientific notation when the value is large or small, or when rounding would leave
    digits of a whole number that mean nothing (99511 ± 48353 -> (1.00 ± 0.48)e+5)."""
    place = math.floor(math.log10(se)) - 1  # decimal place of se's 2nd significant digit
    v_round = round(v, -place)
    mag = math.floor(math.log10(abs(v_round))) if v_round else math.floor(math.log10(se))
    if mag >= 5 or mag <= -4 or place > 0:
        scale = 10.0 ** mag
        d = max(0, mag - place)
        return f"{v / scale:.{d}f}", f"{se / scale:.{d}f}", f"e{mag:+d}"
    d = max(0, -place)
    return f"{v:.{d}f}", f"{se:.{d}f}", ""


def _has_se(v, se):
    return se is not None and math.isfinite(se) and se > 0 and v is not None and \
        TINY <= abs(v) <= HUGE


def pm(v, se):
    """value ± stderr, both rounded to the stderr's second significant digit (an exact fit,
    stderr below EXACT_REL of the value, prints the value to 6 digits and the stderr alone)."""
    if not _has_se(v, se):
        return num(v)
    if se < EXACT_REL * abs(v):
        return f"{v:.6g} ± {se:.1e}"
    val, err, exp = _parts(v, se)
    return f"({val} ± {err}){exp}" if exp else f"{val} ± {err}"


def rounded(v, se):
    """The value alone at the precision its stderr allows (for tables)."""
    if not _has_se(v, se):
        return num(v)
    if se < EXACT_REL * abs(v):
        return f"{v:.6g}"
    val, _, exp = _parts(v, se)
    return val + exp


def quantities(fit):
    """Every reported quantity of a fit: parameters, allocation exponents, optima."""
    values = dict(fit["params"], **{k: fit[k] for k in ("a", "b", "G") if k in fit})
    for c in fit.get("compute_optimal", {}).values():
        key = f"{c['flops']:.3g}"
        for q in ("N_opt", "D_opt", "tokens_per_param", "loss_opt"):
            values[f"{q}@{key}"] = c[q]
    return values


def describe(name, v, se, ci, identified):
    """One line: 'alpha = 0.341 ± 0.012 (95% CI 0.32 .. 0.36)' or 'E: not identified ...'."""
    if not identified:
        rng = f" (95% range {num(ci[0], 2)} .. {num(ci[1], 2)})" if ci else ""
        return f"{name}: not identified by these runs{rng}"
    if se is None and not ci:
        return f"{name} = {num(v)} (uncertainty not estimated)"
    extra = f" (95% CI {num(ci[0], 3)} .. {num(ci[1], 3)})" if ci else ""
    return f"{name} = {pm(v, se)}{extra}"
