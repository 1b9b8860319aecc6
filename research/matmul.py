"""Linear ops whose backward pass is shaped for XLA's CPU kernels: the dense layers' matmul, and
a broadcast add over the batch (learned positions) whose gradient is a dot rather than a reduce.

The matmul (`dense_dot_general`) has the same math as `lax.dot_general(x, w)`: y = x @ w,
dx = dy @ w^T, dw = x^T @ dy. Only the weight gradient is arranged differently: XLA folds a
transposed operand into the dot, and a dot that contracts its left operand's leading dimension
does not go to YNNPACK (XLA's fast CPU matmul) but to a slower generic kernel. So one operand is
transposed explicitly, behind an optimization barrier that keeps XLA from folding it back, and
dw becomes a standard row-major GEMM that YNNPACK runs. The copy costs a pass over that operand,
and XLA's CPU transposes are slow (about 60 ms for the 4096 x 1024 MLP activation of a d256
model), so the smaller one is copied:
  - x [N, D] when D <= F (dw = x^T @ dy), materialized in the forward pass;
  - dy [N, F] when D > F, the MLP's down projection (dw = (dy^T @ x)^T, transposing the small
    [F, D] result instead), materialized in the backward pass: the tangent is written so that
    its transpose, the weight gradient, has that form (an optimization barrier transposes to one).
Results equal plain autodiff up to float summation order, in reverse and forward mode.
"""

from __future__ import annotations

import jax
from jax import lax


@jax.custom_jvp
def _matmul(x, w):
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


@_matmul.defjvp
def _matmul_jvp(primals, tangents):
    x, w = primals
    x_dot, w_dot = tangents
    y = _matmul(x, w)
    # x @ w_dot, written so that its transpose (the weight gradient) is a standard GEMM.
    x_ND = x.reshape(-1, x.shape[-1])
    if x.shape[-1] > w.shape[1]:
        # (w_dot^T @ x^T)^T; transposed: dw^T = barrier(dy^T) @ x, a standard GEMM, then dw.
        # w_dot^T sits behind a barrier too: in the backward that is dw^T's transpose, which
        # XLA otherwise folds into the dot, making it contract x's leading dimension again.
        w_dot_T = lax.optimization_barrier(w_dot.T)
        c_FN = lax.dot_general(w_dot_T, x_ND, (((1,), (1,)), ((), ())))
        y_dot_w = lax.optimization_barrier(c_FN).T.reshape(y.shape)
    else:
        # x^T materialized: the transpose of x^T-dot-w_dot is dw = x^T @ dy, a standard GEMM.
        x_T = lax.optimization_barrier(x_ND.T)
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


@jax.custom_jvp
def add_over_batch(x, table):
    """x + table broadcast over x's leading (batch) axis, e.g. learned positions [T, D] added
    to activations [B, T, D]. The table's gradient is the sum of dy over the batch; XLA's CPU
    backend runs that reduction over a short leading axis about 100x slower than the same sum
    written as a dot with a ones vector (17 ms against 0.1 ms at [16, 256, 256]), so the tangent
    is written as that dot's transpose."""
    return x + table


@add_over_batch.defjvp
def _add_over_batch_jvp(primals, tangents):
    x, table = primals
    x_dot, table_dot = tangents
    ones_B = jax.numpy.ones((x.shape[0],), table.dtype)
    # An outer product whose transpose, the table's gradient, is ones_B @ dy: a dot, not a reduce.
    spread = lax.dot_general(ones_B[:, None], table_dot[None], (((1,), (0,)), ((), ())))
    return add_over_batch(x, table), x_dot + spread
