"""Depth-µP (research/mup.py, CompleteP): residual branches x (L0/L)^alpha, the in-block Adam LR x
(L/L0)^(alpha - 1), residual-projection init at the base depth; exactly off at L = L0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import meta as nn_meta

from research import mup
from research.config import ModelConfig
from research.model import GPT

BASE = dict(vocab_size=61, context_length=16, d_model=32, n_heads=2)


def _logits(cfg, params, tokens):
    return jax.jit(lambda p: GPT(cfg).apply({"params": p}, tokens)[0])(params)


@pytest.mark.parametrize("kind,alpha", [("sqrt", 0.5), ("complete", 1.0)])
def test_branch_scale_equals_scaled_output_projections(kind, alpha):
    """At L = 4, L0 = 2 each branch's output is x (1/2)^alpha: the same logits as the plain model
    with its attention-out and MLP-down kernels and biases scaled by hand. At L = L0 it is off."""
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 61)
    plain = ModelConfig(**BASE, n_layers=4)
    deep = ModelConfig(**BASE, n_layers=4, depth_parametrization=kind, mup_base_depth=2)
    params = jax.jit(GPT(plain).init)(jax.random.key(0), tokens)["params"]
    params = jax.tree.map(lambda x: getattr(x, "value", x), params,
                          is_leaf=lambda x: hasattr(x, "value"))
    scale = 0.5 ** alpha
    assert mup.branch_scale(deep) == pytest.approx(scale)
    by_hand = jax.tree_util.tree_map_with_path(
        lambda path, x: x * scale if any(getattr(k, "key", None) in ("out", "down") for k in path)
        else x, params)
    np.testing.assert_allclose(_logits(deep, params, tokens), _logits(plain, by_hand, tokens),
                               rtol=1e-4, atol=1e-5)
    at_base = ModelConfig(**BASE, n_layers=2, depth_parametrization=kind, mup_base_depth=2)
    assert mup.branch_scale(at_base) == 1.0 and mup.residual_init_depth(at_base) == 2


def test_depth_learning_rates_and_init():
    """CompleteP's Adam rule: in-block parameters (L/L0)^(alpha-1), the rest 1; with µP's width
    factor on top for hidden matrices. Residual projections start at the base depth's std."""
    shapes = lambda cfg: jax.eval_shape(GPT(cfg).init, jax.random.key(0),  # noqa: E731
                                        jnp.zeros((1, 8), jnp.int32))["params"]
    sq = ModelConfig(**BASE, n_layers=8, depth_parametrization="sqrt", mup_base_depth=2)
    lrs = {jax.tree_util.keystr(p): mup.lr_factor(sq, p) for p, _ in
           jax.tree_util.tree_leaves_with_path(nn_meta.unbox(shapes(sq)))}
    assert lrs["['blocks']['mlp']['up']['kernel']"] == pytest.approx(0.5)  # (8/2)^-1/2
    assert lrs["['blocks']['ln1']['scale']"] == pytest.approx(0.5)
    assert lrs["['wte']['embedding']"] == lrs["['ln_f']['scale']"] == 1.0
    both = ModelConfig(**BASE, n_layers=8, depth_parametrization="complete", mup_base_depth=2,
                       parametrization="mup", mup_base_width=16, mup_base_head_dim=8)
    lrs = {jax.tree_util.keystr(p): mup.lr_factor(both, p) for p, _ in
           jax.tree_util.tree_leaves_with_path(nn_meta.unbox(shapes(both)))}
    assert lrs["['blocks']['mlp']['up']['kernel']"] == pytest.approx(0.5)  # width m = 2, alpha 1
    assert lrs["['blocks']['ln1']['scale']"] == 1.0
    params = jax.jit(GPT(sq).init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    down = np.asarray(params["blocks"]["mlp"]["down"]["kernel"].value)
    assert down.std() == pytest.approx(0.02 / (2 * 2) ** 0.5, rel=0.05)  # base depth, not 8
    with pytest.raises(Exception, match="depth_parametrization"):
        ModelConfig(**BASE, n_layers=4, depth_parametrization="cube")
