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


@jax.custom_vjp
def _matmul(x, w):
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


def _matmul_fwd(x, w):
    return _matmul(x, w), (x, w)


def _matmul_bwd(res, dy):
    x, w = res
    dx = lax.dot_general(dy, w, (((dy.ndim - 1,), (1,)), ((), ())))
    x_T = lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)  # [D, N], materialized
    dw = x_T @ dy.reshape(-1, dy.shape[-1]).astype(x_T.dtype)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


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
