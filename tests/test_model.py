"""The GPT model: shapes, parameter counts, causality, KV-cache decoding, initialisation."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import gpt as gpt_configs
from research import flops
from research.config import ModelConfig, RunConfig
from research.model import GPT, cross_entropy, init_cache

SMALL = dict(vocab_size=61, context_length=16, d_model=32, n_layers=2, n_heads=2)
VARIANTS = {
    "learned_tied": dict(),
    "learned_untied": dict(tie_embeddings=False),
    "rope_tied": dict(position="rope"),
    "rope_untied_mlp2": dict(position="rope", tie_embeddings=False, mlp_ratio=2),
}


def small_cfg(**overrides) -> ModelConfig:
    return ModelConfig(**{**SMALL, **overrides})


@functools.lru_cache(maxsize=None)
def init_params(cfg: ModelConfig, seed: int = 0):
    tokens = jnp.zeros((1, cfg.context_length), jnp.int32)
    return nn.meta.unbox(jax.jit(GPT(cfg).init)(jax.random.key(seed), tokens)["params"])


def abstract_params(cfg: ModelConfig):
    """Parameter shapes without computing anything (so even the 1.4B model costs nothing)."""
    tokens = jax.ShapeDtypeStruct((1, 8), jnp.int32)
    return nn.meta.unbox(jax.eval_shape(GPT(cfg).init, jax.random.key(0), tokens)["params"])


def random_tokens(cfg, shape, seed):
    return jax.random.randint(jax.random.key(seed), shape, 0, cfg.vocab_size)


@functools.lru_cache(maxsize=None)
def _jitted_forward(cfg):
    return jax.jit(lambda p, t: GPT(cfg).apply({"params": p}, t)[0])


def forward(cfg, params, tokens):
    return _jitted_forward(cfg)(params, tokens)


def n_params(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("scan_layers", [True, False])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_output_shapes_and_dtype(variant, scan_layers):
    cfg = small_cfg(scan_layers=scan_layers, **VARIANTS[variant])
    params = abstract_params(cfg)
    tokens = jax.ShapeDtypeStruct((3, 11), jnp.int32)
    logits, cache = jax.eval_shape(lambda p, t: GPT(cfg).apply({"params": p}, t), params, tokens)
    assert logits.shape == (3, 11, cfg.vocab_size) and logits.dtype == jnp.float32
    assert cache is None
    assert ("lm_head" in params) == (not cfg.tie_embeddings)
    assert ("wpe" in params) == (cfg.position == "learned")
    layer_keys = {"blocks"} if scan_layers else {f"block_{i}" for i in range(cfg.n_layers)}
    assert layer_keys <= set(params)

    cache = init_cache(cfg, batch=3, length=cfg.context_length)
    logits, new_cache = jax.eval_shape(
        lambda p, t, c: GPT(cfg).apply({"params": p}, t, c, 4), params, tokens, cache)
    assert logits.shape == (3, 11, cfg.vocab_size)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), new_cache) == jax.tree.map(
        lambda x: (x.shape, x.dtype), cache)


def test_bfloat16_compute_still_returns_finite_float32_logits():
    cfg = small_cfg(compute_dtype="bfloat16")
    params = init_params(cfg)
    logits = forward(cfg, params, random_tokens(cfg, (2, 5), 0))
    assert logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))  # param_dtype


def _unstack_layers(scanned_params, n_layers):
    """The scanned tree ([L, ...] leaves under "blocks") as the loop's block_0..block_{L-1}."""
    loop_params = {k: v for k, v in scanned_params.items() if k != "blocks"}
    for i in range(n_layers):
        loop_params[f"block_{i}"] = jax.tree.map(lambda x: x[i], scanned_params["blocks"])
    return loop_params


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_scanned_and_looped_layers_compute_the_same_function(position):
    scan_cfg = small_cfg(position=position)
    loop_cfg = small_cfg(position=position, scan_layers=False)
    scanned = init_params(scan_cfg)
    looped = _unstack_layers(scanned, scan_cfg.n_layers)
    # The loop's own init has exactly the tree we built, so the restacking is the real mapping.
    reference = abstract_params(loop_cfg)
    assert jax.tree.structure(looped) == jax.tree.structure(reference)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(looped),
                                                  jax.tree.leaves(reference)))
    tokens = random_tokens(scan_cfg, (2, 16), 1)
    # Same arithmetic, differently fused by XLA: float32 agreement to 1e-5 on logits of order 1.
    np.testing.assert_allclose(forward(loop_cfg, looped, tokens),
                               forward(scan_cfg, scanned, tokens), rtol=0, atol=1e-5)


def test_scan_unroll_changes_neither_the_function_nor_its_gradient_nor_the_run_identity():
    """Unrolling the layer scan is a speed choice: same parameter tree, same loss and gradients
    (up to float summation order), and a run's config hash does not see it."""
    from research import run_dir

    rolled = small_cfg(n_layers=3, scan_unroll=1)
    unrolled = small_cfg(n_layers=3)  # default: every layer in one scan iteration
    assert unrolled.scan_unroll >= 3
    params = init_params(rolled)
    assert jax.tree.structure(abstract_params(unrolled)) == jax.tree.structure(params)
    tokens = random_tokens(rolled, (2, 16), 3)

    def loss(cfg):
        def f(p):
            logits, _ = GPT(cfg).apply({"params": p}, tokens[:, :-1])
            return cross_entropy(logits, tokens[:, 1:])
        return jax.jit(jax.value_and_grad(f))(params)

    (l1, g1), (l2, g2) = loss(rolled), loss(unrolled)
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    config = gpt_configs.get_config("100k")
    other = gpt_configs.get_config("100k")
    other.model.scan_unroll = 1
    assert run_dir.config_hash(RunConfig.from_configdict(config)) == \
        run_dir.config_hash(RunConfig.from_configdict(other))
    with pytest.raises(Exception, match="scan_unroll"):
        RunConfig.from_configdict(dict(config, model=dict(config.model, scan_unroll=0)))


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(tie_embeddings=False),
    dict(position="rope"),
    dict(position="rope", tie_embeddings=False, mlp_ratio=2, scan_layers=False),
    dict(vocab_size=300, context_length=40, d_model=48, n_layers=3, n_heads=3, mlp_ratio=3),
])
def test_parameter_count_matches_analytic_count(overrides):
    cfg = small_cfg(**overrides)
    params = abstract_params(cfg)
    counts = flops.param_counts(cfg)
    assert n_params(params) == counts["params"]
    embedding = n_params([params["wte"], params.get("wpe", ())])
    if "lm_head" in params:
        embedding += n_params(params["lm_head"])
    assert counts["embedding_params"] == embedding
    assert counts["nonembedding_params"] == counts["params"] - embedding


@pytest.mark.parametrize("variant", ["tiny", *gpt_configs.LADDER])
def test_parameter_count_matches_for_every_shipped_variant(variant):
    cfg = RunConfig.from_configdict(gpt_configs.get_config(variant)).model
    assert n_params(abstract_params(cfg)) == flops.param_counts(cfg)["params"]


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_causality_later_tokens_do_not_change_earlier_logits_or_loss(position):
    cfg = small_cfg(position=position)
    params = init_params(cfg)
    tokens = random_tokens(cfg, (2, 16), 2)
    base = forward(cfg, params, tokens)
    for t in [0, 5, 14]:
        # Every token after t replaced: positions <= t must see no difference at all.
        perturbed = tokens.at[:, t + 1:].set((tokens[:, t + 1:] + 7) % cfg.vocab_size)
        changed = forward(cfg, params, perturbed)
        np.testing.assert_allclose(changed[:, :t + 1], base[:, :t + 1], rtol=0, atol=1e-6)
        # ... and the perturbation is real: later positions do change.
        assert float(jnp.max(jnp.abs(changed[:, t + 1:] - base[:, t + 1:]))) > 1e-4
        loss_upto_t = lambda logits: cross_entropy(logits[:, :t], tokens[:, 1:t + 1])
        if t > 0:
            np.testing.assert_allclose(loss_upto_t(changed), loss_upto_t(base), atol=1e-6)


def test_causality_by_jacobian_of_each_position_loss():
    # Position s enters the model only through wpe[s]: moving wpe[s] along a random direction
    # must leave loss_t exactly unchanged (zero derivative) for every s > t, and not for s <= t.
    cfg = small_cfg()
    params = init_params(cfg)
    tokens = random_tokens(cfg, (1, 9), 3)  # 8 positions of the 16 wpe rows
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    direction_D = jax.random.normal(jax.random.key(1), (cfg.d_model,))

    def per_position_loss(offsets_S):
        wpe = params["wpe"].at[:8].add(offsets_S[:, None] * direction_D)
        logits, _ = GPT(cfg).apply({"params": {**params, "wpe": wpe}}, inputs)
        logz = jax.nn.logsumexp(logits[0], axis=-1)
        return logz - jnp.take_along_axis(logits[0], targets[0, :, None], axis=-1)[:, 0]

    jac = np.asarray(jax.jit(jax.jacfwd(per_position_loss))(jnp.zeros(8)))  # [t, s]
    later = np.triu(np.ones((8, 8), bool), k=1)  # s > t
    assert np.abs(jac[later]).max() == 0.0
    assert np.abs(jac[~later]).min() > 0.0


@pytest.mark.parametrize("position,scan_layers", [
    ("learned", True), ("rope", True), ("learned", False)])
def test_kv_cache_decoding_equals_full_forward(position, scan_layers):
    # Prefill 5 tokens, then decode the rest one at a time into a cache longer than needed.
    # Tolerance: 1e-5 absolute on float32 logits of order 1 (only summation order differs).
    cfg = small_cfg(position=position, scan_layers=scan_layers)
    params = init_params(small_cfg(position=position))
    if not scan_layers:
        params = _unstack_layers(params, cfg.n_layers)
    tokens = random_tokens(cfg, (2, 12), 4)
    full = forward(cfg, params, tokens)

    apply = jax.jit(lambda p, t, c, i: GPT(cfg).apply({"params": p}, t, c, i))
    cache = init_cache(cfg, batch=2, length=cfg.context_length)
    prefill, cache = apply(params, tokens[:, :5], cache, 0)
    steps = [prefill]
    for i in range(5, 12):
        logits, cache = apply(params, tokens[:, i:i + 1], cache, i)
        steps.append(logits)
    decoded = jnp.concatenate(steps, axis=1)
    np.testing.assert_allclose(decoded, full, rtol=0, atol=1e-5)
    # The tolerance is far below what a decoding bug costs: the last token at a wrong index.
    shifted, _ = apply(params, tokens[:, 11:], cache, 12)
    assert float(jnp.max(jnp.abs(shifted[:, 0] - full[:, 11]))) > 1e-3


def test_query_blocks_cover_the_sequence_in_equal_blocks_of_about_the_block_length():
    from research.model import query_blocks
    assert query_blocks(128) == [(0, 64), (64, 128)]
    assert query_blocks(256) == [(0, 64), (64, 128), (128, 192), (192, 256)]
    assert query_blocks(4096) == [(i * 512, (i + 1) * 512) for i in range(8)]  # at most 8
    assert query_blocks(64) == [(0, 64)] and query_blocks(100) == [(0, 100)]
    assert query_blocks(129) == [(0, 129)]  # 2 blocks would be unequal


@pytest.mark.parametrize("position,T", [("learned", 16), ("rope", 10)])
def test_attention_in_query_blocks_equals_one_block_in_value_and_gradient(monkeypatch, position, T):
    # Blocks of 4 positions: 4 blocks, and 2 (10 = 2 x 5). The one-block pass is the reference
    # the causality and KV-cache tests above check.
    from research import model
    cfg = small_cfg(position=position)
    params = init_params(cfg)
    tokens = random_tokens(cfg, (2, T + 1), 5)

    def loss_and_logits(p):
        logits = GPT(cfg).apply({"params": p}, tokens[:, :-1])[0]
        return cross_entropy(logits, tokens[:, 1:]), logits

    def value_and_grad():  # traced afresh, so QUERY_BLOCK is read now
        return jax.jit(jax.value_and_grad(loss_and_logits, has_aux=True))(params)

    monkeypatch.setattr(model, "QUERY_BLOCK", 10**6)
    (loss1, logits1), grad1 = value_and_grad()
    monkeypatch.setattr(model, "QUERY_BLOCK", 4)
    assert len(model.query_blocks(T)) == {16: 4, 10: 2}[T]
    (loss_b, logits_b), grad_b = value_and_grad()
    np.testing.assert_allclose(logits_b, logits1, rtol=0, atol=1e-5)
    np.testing.assert_allclose(loss_b, loss1, rtol=1e-6)
    for g_b, g1 in zip(jax.tree.leaves(grad_b), jax.tree.leaves(grad1)):
        np.testing.assert_allclose(g_b, g1, rtol=1e-4, atol=1e-7)
    # The coord check (layers as a Python loop) still sees each layer's whole score matrix.
    looped = small_cfg(position=position, scan_layers=False)
    capture = jax.jit(lambda p, t: GPT(looped).apply(
        {"params": p}, t, capture_intermediates=True, mutable=["intermediates"])[1])
    state = capture(init_params(looped), tokens[:, :-1])
    sown = [state["intermediates"][f"block_{i}"]["attn"]["logits"] for i in range(cfg.n_layers)]
    assert [[x.shape for x in s] for s in sown] == [[(2, cfg.n_heads, T, T)]] * cfg.n_layers


def test_gpt2_initialisation_statistics():
    cfg = ModelConfig(vocab_size=256, context_length=128, d_model=128, n_layers=4, n_heads=4,
                      tie_embeddings=False)
    params = init_params(cfg, seed=5)
    blocks = params["blocks"]
    residual_std = 0.02 / np.sqrt(2 * cfg.n_layers)  # GPT-2: out-projections scaled by depth

    def assert_std(x, expected):
        x = np.asarray(x)
        assert abs(x.mean()) < 0.1 * expected
        assert abs(x.std() / expected - 1) < 0.05, (x.std(), expected)

    assert_std(params["wte"]["embedding"], 0.02)
    assert_std(params["wpe"], 0.01)
    assert_std(params["lm_head"]["kernel"], 0.02)
    for name in ["query", "key", "value"]:
        assert_std(blocks["attn"][name]["kernel"], 0.02)
    assert_std(blocks["mlp"]["up"]["kernel"], 0.02)
    assert_std(blocks["attn"]["out"]["kernel"], residual_std)
    assert_std(blocks["mlp"]["down"]["kernel"], residual_std)
    # Layers are initialised independently, not copies of one another.
    q = np.asarray(blocks["attn"]["query"]["kernel"])
    assert not np.allclose(q[0], q[1])
    biases = [v for path, v in jax.tree_util.tree_leaves_with_path(params)
              if jax.tree_util.keystr(path).endswith("['bias']")]
    assert biases and all(float(jnp.max(jnp.abs(b))) == 0.0 for b in biases)
    for ln in [blocks["ln1"], blocks["ln2"], params["ln_f"]]:
        np.testing.assert_array_equal(ln["scale"], 1.0)
