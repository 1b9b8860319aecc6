"""Best-of-n with a reward model: its KL from the policy and an unbiased estimate of the
expected reward of the best of n from N >= n samples per prompt."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln


def kl_best_of_n(n) -> np.ndarray:
    """KL(best-of-n || policy) = log n - (n - 1) / n (Stiennon et al.; Gao et al. use it)."""
    n = np.asarray(n, np.float64)
    return np.log(n) - (n - 1) / n


def max_weights(N: int, n: int) -> np.ndarray:
    """P(the i-th smallest of N scores is the largest of a uniform n-subset) = C(i-1, n-1)/C(N, n),
    for i = 1..N (zero below n)."""
    if not 1 <= n <= N:
        raise ValueError(f"best-of-{n} needs 1 <= n <= N={N} samples")
    i = np.arange(1, N + 1)
    w = np.zeros(N)
    ok = i >= n
    log_c = (gammaln(i[ok]) - gammaln(n) - gammaln(i[ok] - n + 1)
             - (gammaln(N + 1) - gammaln(n + 1) - gammaln(N - n + 1)))
    w[ok] = np.exp(log_c)
    return w / w.sum()  # exact up to rounding; renormalised


def expected_best_of_n(proxy_PN, values_PN, n: int) -> np.ndarray:
    """Per prompt: E[value of the sample the proxy ranks highest among n of the N drawn],
    averaged over every n-subset (no subset noise). proxy_PN, values_PN: [prompts, N]."""
    proxy_PN, values_PN = np.asarray(proxy_PN), np.asarray(values_PN, np.float64)
    order_PN = np.argsort(proxy_PN, axis=1, kind="stable")
    ranked_PN = np.take_along_axis(values_PN, order_PN, axis=1)
    return ranked_PN @ max_weights(proxy_PN.shape[1], n)


def n_values(max_n: int) -> list[int]:
    """1, 2, 4, ... up to max_n."""
    return [2 ** k for k in range(int(math.log2(max_n)) + 1)]
