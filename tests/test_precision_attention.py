"""Mixed precision, attention implementations and remat policies (research/model.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.config import ModelConfig
from research.model import GPT, cross_entropy

CFG = ModelConfig(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=4,
                  position="rope", attention="einsum")


def _batch():
    return jax.random.randint(jax.random.key(1), (4, 17), 0, 64)


def _loss_and_grads(cfg, params, batch):
    def loss(p):
        logits, _ = GPT(cfg).apply({"params": p}, batch[:, :-1])
        return cross_entropy(logits, batch[:, 1:])
    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.fixture(scope="module")
def params():
    # Jitted: an eager Flax init compiles one small program per operation.
    return nn.meta.unbox(jax.jit(GPT(CFG).init)(jax.random.key(0), _batch()[:, :-1])["params"])


@pytest.fixture(scope="module")
def reference(params):
    return _loss_and_grads(CFG, params, _batch())


@pytest.mark.parametrize("change", [dict(attention="dot_product"), dict(remat="full"),
                                    dict(remat="save_dots"),
                                    dict(remat="save_dots", scan_layers=False)])
def test_options_give_the_default_loss_and_grads(params, reference, change):
    import dataclasses
    batch = _batch()
    ref_loss, ref_grads = reference
    cfg = dataclasses.replace(CFG, **change)
    if not cfg.scan_layers:  # unstacked parameters: block_i = layer i of the scanned stack
        blocks = params["blocks"]
        p = {k: v for k, v in params.items() if k != "blocks"}
        p.update({f"block_{i}": jax.tree.map(lambda x: x[i], blocks) for i in range(cfg.n_layers)})
        loss, grads = _loss_and_grads(cfg, p, batch)
        grads = {**{k: v for k, v in grads.items() if not k.startswith("block_")},
                 "blocks": jax.tree.map(lambda *xs: jnp.stack(xs),
                                        *[grads[f"block_{i}"] for i in range(cfg.n_layers)])}
    else:
        loss, grads = _loss_and_grads(cfg, params, batch)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_bf16_compute_keeps_float32_logits(params):
    """The output matmul accumulates and returns float32: the logits equal a float32 product
    of the (bf16) final hidden state and (bf16) embedding far closer than bf16 resolution."""
    import dataclasses
    cfg = dataclasses.replace(CFG, compute_dtype="bfloat16")
    tokens = _batch()[:, :-1]
    (logits, _), state = GPT(cfg).apply({"params": params}, tokens,
                                       capture_intermediates=True, mutable=["intermediates"])
    assert logits.dtype == jnp.float32
    hidden = state["intermediates"]["ln_f"]["__call__"][0]
    assert hidden.dtype == jnp.bfloat16
    table = params["wte"]["embedding"].astype(jnp.bfloat16).astype(jnp.float32)
    exact = jnp.einsum("btd,vd->btv", hidden.astype(jnp.float32), table,
                       precision=jax.lax.Precision.HIGHEST)
    err = float(jnp.max(jnp.abs(logits - exact)))
    bf16_step = float(jnp.max(jnp.abs(exact))) * 2.0 ** -8  # one bf16 rounding at that size
    assert err < bf16_step / 20, (err, bf16_step)
    loss = cross_entropy(logits, _batch()[:, 1:])
    assert loss.dtype == jnp.float32


def test_params_stay_float32_under_bf16_compute(params):
    import dataclasses
    cfg = dataclasses.replace(CFG, compute_dtype="bfloat16")
    p = jax.jit(GPT(cfg).init)(jax.random.key(0), _batch()[:, :-1])["params"]
    assert {x.dtype for x in jax.tree.leaves(p)} == {jnp.dtype(jnp.float32)}
