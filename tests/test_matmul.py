"""The dense layers' matmul and the loss compute what plain autodiff computes."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from research.matmul import add_over_batch, dense_dot_general
from research.model import cross_entropy

DIMS = (((2,), (0,)), ((), ()))


@pytest.mark.parametrize("d_in,d_out", [(32, 48), (48, 32)])  # x or dy is the one transposed
def test_dense_matmul_value_and_gradients_equal_plain_dot_general(d_in, d_out):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 24, d_in)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(d_in, d_out)), jnp.float32)
    dy = jnp.asarray(rng.normal(size=(4, 24, d_out)), jnp.float32)

    def loss(dot):
        return lambda x, w: jnp.sum(dot(x, w, DIMS) * dy)

    np.testing.assert_array_equal(dense_dot_general(x, w, DIMS), lax.dot_general(x, w, DIMS))
    ours = jax.jit(jax.grad(loss(dense_dot_general), argnums=(0, 1)))(x, w)
    plain = jax.grad(loss(lax.dot_general), argnums=(0, 1))(x, w)
    # Against numpy in float64: dx = dy w^T, dw = x^T dy summed over batch and positions.
    x64, w64, dy64 = (np.asarray(a, np.float64) for a in (x, w, dy))
    np.testing.assert_allclose(ours[0], dy64 @ w64.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours[1], x64.reshape(-1, d_in).T @ dy64.reshape(-1, d_out),
                               rtol=1e-5, atol=1e-4)
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    # Forward mode too: the directional derivative along (x_dot, w_dot) against float64 numpy.
    x_dot = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    w_dot = jnp.asarray(rng.normal(size=w.shape), jnp.float32)
    _, tangent = jax.jit(lambda *a: jax.jvp(lambda x, w: dense_dot_general(x, w, DIMS),
                                            a[:2], a[2:]))(x, w, x_dot, w_dot)
    expected = np.asarray(x_dot, np.float64) @ w64 + x64 @ np.asarray(w_dot, np.float64)
    np.testing.assert_allclose(tangent, expected, rtol=1e-5, atol=1e-4)


def _contracted_lhs_axes(hlo: str) -> list[tuple[int, int]]:
    """(contracted axis, rank) of every dot's left operand in an optimized HLO module."""
    ranks = {m[0]: len(m[1].split(",")) for m in re.findall(r"%(\S+) = f32\[([\d,]+)\]", hlo)}
    dots = re.findall(r" dot\(%([^,]+), [^)]*\),(?: lhs_batch_dims=\{[\d,]*\},)? "
                      r"lhs_contracting_dims=\{(\d+)\}", hlo)
    return [(int(axis), ranks[lhs]) for lhs, axis in dots]


@pytest.mark.parametrize("d_in,d_out", [(32, 48), (48, 32)])
def test_dense_matmul_gradient_runs_as_standard_gemms(d_in, d_out):
    # XLA's CPU backend sends a dot that contracts its left operand's leading axis to a slow
    # generic kernel. Every dot of the compiled gradient contracts the left operand's last axis
    # (in both arrangements: x transposed, or dy and then the product).
    x = jnp.ones((4, 24, d_in), jnp.float32)
    w = jnp.ones((d_in, d_out), jnp.float32)
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(dense_dot_general(x, w, DIMS))),
                            argnums=(0, 1)))
    axes = _contracted_lhs_axes(grad.lower(x, w).compile().as_text())
    assert len(axes) == 3  # y, dx and dw
    assert all(axis == rank - 1 for axis, rank in axes), axes


def test_cross_entropy_picks_the_target_logit_exactly():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 5, 11)).astype(np.float32) * 4
    targets = rng.integers(0, 11, (3, 5)).astype(np.int32)
    picked = np.take_along_axis(logits, targets[..., None], -1)[..., 0].astype(np.float64)
    logz = np.log(np.exp(logits.astype(np.float64)).sum(-1))
    assert abs(float(cross_entropy(jnp.asarray(logits), jnp.asarray(targets))) - (logz - picked).mean()) < 1e-5
    grad = jax.grad(lambda l: cross_entropy(l, jnp.asarray(targets)))(jnp.asarray(logits))
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    expected = (softmax - np.eye(11)[targets]) / targets.size
    np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_add_over_batch_equals_broadcast_add_and_its_table_gradient_is_a_dot():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(6, 8, 5)), jnp.float32)
    table = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
    dy = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    np.testing.assert_array_equal(add_over_batch(x, table), x + table[None])
    grad = jax.jit(jax.grad(lambda x, t, dy: jnp.sum(add_over_batch(x, t) * dy), argnums=(0, 1)))
    dx, dtable = grad(x, table, dy)
    np.testing.assert_array_equal(dx, dy)
    np.testing.assert_allclose(dtable, np.asarray(dy, np.float64).sum(0), rtol=1e-5, atol=1e-5)
    # Forward mode: the tangent is x_dot + table_dot on every batch row.
    x_dot = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    t_dot = jnp.asarray(rng.normal(size=table.shape), jnp.float32)
    _, tangent = jax.jvp(add_over_batch, (x, table), (x_dot, t_dot))
    np.testing.assert_allclose(tangent, x_dot + t_dot[None], rtol=1e-6, atol=1e-6)
    # The table's gradient is a dot with ones, not a reduce over the batch axis (100x slower on
    # XLA's CPU backend at [16, 256, 256]).
    hlo = grad.lower(x, table, dy).compile().as_text()
    assert " dot(" in hlo, "the table gradient should be a dot"
    batch_reduce = re.search(r"reduce\([^\n]*dimensions=\{0\}", hlo)
    assert not batch_reduce, "a reduce over the batch axis is back"
