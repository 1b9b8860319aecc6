"""The dense layers' matmul, with a backward pass shaped for XLA's CPU matmul library.

Same math as `lax.dot_general(x, w)`: y = x @ w, dx = dy @ w^T, dw = x^T @ dy. Only the weight
gradient is arranged differently: XLA folds the transpose of x into the dot, and a dot that
contracts its left operand's leading dimension does not go to YNNPACK (XLA's fast CPU matmul)
but to a slower generic kernel. Materializing x^T (behind an optimization barrier, so it is not
folded back) makes dw a standard row-major GEMM that YNNPACK runs; the copy costs one pass over
the activations. Results equal plain autodiff up to float summation order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


@jax.custom_jvp
def _matmul(x, w):
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


@_matmul.defjvp
def _matmul_jvp(primals, tangents):
    x, w = primals
    x_dot, w_dot = tangents
    y = _matmul(x, w)
    # x @ w_dot, written with x^T materialized ([D, N], behind a barrier so XLA cannot fold the
    # transpose away): its transpose, the weight gradient, is then x^T @ dy, a standard GEMM.
    x_T = lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)
    y_dot_w = lax.dot_general(x_T, w_dot, (((0,), (0,)), ((), ()))).reshape(y.shape)
    return y, lax.dot_general(x_dot, w, (((x.ndim - 1,), (0,)), ((), ()))) + y_dot_w


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """A drop-in `dot_general` for nn.Dense (x [..., D] @ kernel [D, F]); anything else falls
    back to lax.dot_general."""
    (lc, rc), (lb, rb) = dimension_numbers
    standard = (tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb
                and rhs.ndim == 2 and precision is None and preferred_element_type is None
                and jax.default_backend() == "cpu")
    if not standard:
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)
    return _matmul(lhs, rhs)
