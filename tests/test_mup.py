"""µP (research/mup.py): equal to SP at the base width, the table's init and LR rules, the two
forward constants, training on every mesh layout and ladder variant, and exact resume."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import gpt
from research import mup, sharding, train as train_lib, train_state
from research.config import ModelConfig
from research.model import GPT
from research.config import RunConfig

from flax.linen import meta as nn_meta

nn_unbox = nn_meta.unbox

LAYOUTS = {"one device": None, "data": dict(data=8), "fsdp": dict(fsdp=8),
           "tensor": dict(data=4, tensor=2), "data x fsdp x tensor": dict(data=2, fsdp=2, tensor=2)}


def config(parametrization="mup", base_width=32, base_head_dim=8, *, d_model=64, n_heads=4,
           mesh=None, steps=4, multipliers=1.0):
    """2 layers, context 32, batch 16. With the defaults µP runs at width multiplier 2, and the
    base multipliers are 1 (the width rules alone; tests below cover the multipliers)."""
    c = gpt.get_config("tiny")
    c.model.mup_output_mult = c.model.mup_attn_mult = c.model.mup_init_mult = multipliers
    c.model.n_layers, c.model.d_model, c.model.n_heads = 2, d_model, n_heads
    c.model.context_length = 32
    c.model.parametrization = parametrization
    c.model.mup_base_width, c.model.mup_base_head_dim = base_width, base_head_dim
    c.train.batch_size = 16
    c.train.learning_rate = 1e-3
    c.train.tokens = 16 * 32 * steps
    c.train.eval_every = c.train.checkpoint_every = c.train.log_every = 2
    c.train.eval_batches = 2
    mesh = mesh or {}
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = (mesh.get(a, 1) for a in ("data", "fsdp", "tensor"))
    return c


def batches(n, ctx=32, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (batch, ctx + 1)).astype(np.int32) for _ in range(n)]


def run(c, data, devices=None, total_steps=20):
    mesh = sharding.make_mesh(c.mesh, devices)
    trainer = train_state.build_trainer(RunConfig.from_configdict(c), mesh, total_steps=total_steps)
    state = trainer.init(jax.random.key(0))
    init_params = jax.device_get(state["params"])
    losses = []
    for b in data:
        state, m = trainer.train_step(state, train_state.put_batch(trainer, b))
        losses.append(float(m["loss"]))
    return np.array(losses), init_params, jax.device_get(state["params"])


def leaves(tree):
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def test_mup_equals_sp_at_base_width():
    """At d_model = mup_base_width and head width = mup_base_head_dim every µP factor is 1.0:
    the same init and the same loss trajectory, bit for bit."""
    data = batches(4)
    one = jax.devices()[:1]
    sp = run(config("sp", d_model=64, n_heads=4), data, one)
    mu = run(config("mup", base_width=64, base_head_dim=16, d_model=64, n_heads=4), data, one)
    np.testing.assert_array_equal(mu[0], sp[0])
    for name, (a, b) in enumerate(zip(jax.tree.leaves(sp[1:]), jax.tree.leaves(mu[1:]))):
        np.testing.assert_array_equal(a, b, err_msg=str(name))
    # Not vacuous: away from the base width the same seed trains differently.
    other = run(config("mup", base_width=32, base_head_dim=16, d_model=64, n_heads=4), data, one)
    assert np.abs(other[0] - sp[0]).max() > 1e-4


def test_init_and_learning_rate_follow_the_table():
    """Width multiplier m = 4: hidden kernels start at SP std / 2 and their first Adam step is
    lr / 4; embeddings, the readout, biases and LayerNorms keep SP's init and step lr.
    Adam's first step is lr * g / (|g| + eps) (bias-corrected): |update| <= lr x multiplier,
    reached where |g| >> eps = 1e-8 (weight decay off)."""
    lr = 1e-3
    cfgs = {}
    for p in ("sp", "mup"):
        c = config(p, base_width=16, base_head_dim=4, d_model=64, n_heads=4)
        c.model.tie_embeddings, c.model.position = False, "learned"
        c.train.weight_decay, c.train.schedule, c.train.warmup_steps = 0.0, "constant", 1
        c.train.learning_rate = lr
        cfgs[p] = c
    data = batches(1)
    one = jax.devices()[:1]
    _, sp_init, _ = run(cfgs["sp"], data, one)
    _, mu_init, mu_after = run(cfgs["mup"], data, one)
    sp_init, mu_init, mu_after = leaves(sp_init), leaves(mu_init), leaves(mu_after)
    expected_role = {"['wte']['embedding']": "embedding", "['wpe']": "embedding",
                     "['lm_head']['kernel']": "readout", "['lm_head']['bias']": "vector",
                     "['ln_f']['scale']": "vector",
                     "['blocks']['attn']['query']['kernel']": "hidden",
                     "['blocks']['mlp']['down']['kernel']": "hidden",
                     "['blocks']['mlp']['up']['bias']": "vector"}
    for name in mu_init:
        if name.endswith("['key']['bias']"):
            continue  # softmax ignores it: its gradient is zero up to rounding noise
        role = "hidden" if name.endswith("['kernel']") and "lm_head" not in name else None
        if name in expected_role:
            role = expected_role[name]
        init_ratio = mu_init[name].std() / sp_init[name].std() if sp_init[name].std() else 1.0
        step = np.abs(mu_after[name] - mu_init[name])
        moved = step[step > 0]
        assert moved.size > 0.5 * step.size, name
        step_size = lr / 4 if role == "hidden" else lr
        assert abs(init_ratio - (0.5 if role == "hidden" else 1.0)) < 0.02, (name, init_ratio)
        # 5% below: the key kernel's gradients at init are ~1e-6, where eps shows.
        assert 0.95 * step_size < moved.max() <= step_size * (1 + 1e-5), name


def test_forward_constants():
    """Readout: µP logits are SP logits computed on the ln_f output divided by m (same params,
    tied embeddings, attention made equal by K0 = K). Attention: sqrt(K0)/K vs 1/sqrt(K)."""
    base = dict(vocab_size=61, context_length=16, d_model=64, n_layers=2, n_heads=2)
    sp = ModelConfig(**base)
    mu = ModelConfig(**base, parametrization="mup", mup_base_width=16, mup_base_head_dim=32,
                     mup_output_mult=1.0, mup_attn_mult=1.0, mup_init_mult=1.0)
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 61)
    params = jax.jit(GPT(sp).init)(jax.random.key(0), tokens)["params"]

    def final_hidden(cfg):
        _, state = GPT(cfg).apply({"params": params}, tokens, capture_intermediates=True,
                                  mutable=["intermediates"])
        return state["intermediates"]["ln_f"]["__call__"][0]

    h = final_hidden(sp)
    np.testing.assert_allclose(final_hidden(mu), h, rtol=1e-6)  # blocks unchanged at K = K0
    logits_mu, _ = GPT(mu).apply({"params": params}, tokens)
    expected = (h / 4.0) @ params["wte"]["embedding"].value.T
    np.testing.assert_allclose(logits_mu, expected, rtol=1e-4, atol=1e-6)
    assert mup.attention_scale(sp) == 32 ** -0.5
    wide = ModelConfig(**{**base, "d_model": 256}, parametrization="mup", mup_base_width=64,
                       mup_base_head_dim=32, mup_attn_mult=1.0)  # K = 128
    assert mup.attention_scale(wide) == pytest.approx(32 ** 0.5 / 128)


def test_every_parameter_has_a_role():
    for overrides in (dict(), dict(tie_embeddings=False, position="rope"), dict(scan_layers=False)):
        cfg = ModelConfig(vocab_size=61, context_length=16, d_model=32, n_layers=2, n_heads=2,
                          parametrization="mup", mup_base_width=16, mup_base_head_dim=8,
                          **overrides)
        shapes = jax.eval_shape(GPT(cfg).init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
        multipliers = [mup.lr_factor(cfg, path) for path, _ in
                       jax.tree_util.tree_leaves_with_path(nn_meta.unbox(shapes["params"]))]
        assert sorted(set(multipliers)) == [0.5, 1.0]
    with pytest.raises(ValueError, match="no µP role"):
        mup.role_of((jax.tree_util.DictKey("blocks"), jax.tree_util.DictKey("gate")))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.slow
def test_mup_trains_on_every_mesh_layout(layout):
    """Every layout the sharding tests cover reproduces one device under µP too (tolerances
    as in tests/test_train.py), and the loss on a repeated batch goes down."""
    data = batches(1) * 4
    ref_loss, _, ref_params = run(config("mup"), data, jax.devices()[:1])
    assert ref_loss[-1] < ref_loss[0]
    if LAYOUTS[layout] is None:
        return
    loss, _, params = run(config("mup", mesh=LAYOUTS[layout]), data)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    diff = max(float(np.abs(a - b).max())
               for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)))
    assert diff < 1e-4


SMALL_LADDER = ("100k", "300k", "800k")


@pytest.mark.parametrize("variant", gpt.LADDER)
@pytest.mark.slow
def test_mup_compiles_every_ladder_variant_on_the_mixed_mesh(variant):
    """Every ladder variant's µP train step lowers under data x fsdp x tensor (shapes and
    shardings only, so even the 1.4B model costs seconds); the small ones train for real."""
    c = gpt.get_config(variant)
    c.model.parametrization = "mup"
    c.model.context_length, c.train.batch_size = 16, 8
    # Tensor parallelism splits whole heads: 2.7m's 3 heads take data x fsdp instead.
    tensor = 2 if c.model.n_heads % 2 == 0 else 1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 8 // (2 * tensor), 2, tensor
    train_lib.validate(RunConfig.from_configdict(c))
    mesh = sharding.make_mesh(c.mesh)
    trainer = train_state.build_trainer(RunConfig.from_configdict(c), mesh, total_steps=4)
    if variant not in SMALL_LADDER:
        state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                             trainer.state_shapes, trainer.state_shardings)
        batch = jax.ShapeDtypeStruct((8, 17), jnp.int32, sharding=trainer.batch_sharding)
        with trainer.activate():
            trainer.train_step.jitted.lower(state, batch, trainer.schedule)
        return
    state = trainer.init(jax.random.key(0))
    losses = []
    for b in batches(1, ctx=16, batch=8) * 3:  # one batch, so the loss must fall
        state, m = trainer.train_step(state, train_state.put_batch(trainer, b))
        losses.append(float(m["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


@pytest.mark.slow
def test_mup_resume_equals_uninterrupted(tmp_path, monkeypatch):
    c = config("mup", mesh=dict(data=8), steps=6)
    c.data.data_dir = str(tmp_path / "datasets")
    full = train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "full"), progress=False)
    real_batch = train_lib.data_lib.train_batch

    def crash_at_step_5(data, *, step, **kw):
        if step == 5:
            raise RuntimeError("simulated crash")
        return real_batch(data, step=step, **kw)

    monkeypatch.setattr(train_lib.data_lib, "train_batch", crash_at_step_5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "resumed"), progress=False)
    monkeypatch.setattr(train_lib.data_lib, "train_batch", real_batch)
    resumed = train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "resumed"), progress=False)
    assert resumed["status"] == full["status"] == "done"
    assert resumed["loss"] == pytest.approx(full["loss"], rel=1e-6)
    logged = [json.loads(line)["step"] for line in open(tmp_path / "resumed" / "metrics.jsonl")
              if "train/loss" in line]
    assert 6 in logged and 2 not in logged[logged.index(4) + 1:]  # resumed from step 4
    assert json.load(open(tmp_path / "full" / "config.json"))["model"]["parametrization"] == "mup"


def test_every_ladder_variant_has_a_learning_rate():
    assert set(gpt.LEARNING_RATES) == set(gpt.LADDER)
    for variant, lr in gpt.LEARNING_RATES.items():
        assert gpt.get_config(variant).train.learning_rate == lr
    sizes = sorted(gpt.LADDER, key=lambda v: gpt.LADDER[v][1])
    assert [gpt.LEARNING_RATES[v] for v in sizes] == sorted(gpt.LEARNING_RATES.values(), reverse=True)


def test_mup_kv_cache_decoding_equals_full_forward():
    """Sampling reads the same ModelConfig: µP's forward constants hold in cached decoding."""
    from research.model import init_cache
    cfg = ModelConfig(vocab_size=61, context_length=16, d_model=64, n_layers=2, n_heads=2,
                      position="rope", parametrization="mup", mup_base_width=16,
                      mup_base_head_dim=8)
    tokens = jax.random.randint(jax.random.key(4), (2, 10), 0, 61)
    params = jax.jit(GPT(cfg).init)(jax.random.key(0), tokens)["params"]
    apply = jax.jit(lambda p, t, c, i: GPT(cfg).apply({"params": p}, t, c, i))
    full, _ = GPT(cfg).apply({"params": params}, tokens)
    prefill, cache = apply(params, tokens[:, :4], init_cache(cfg, 2, 16), 0)
    steps = [prefill]
    for i in range(4, 10):
        logits, cache = apply(params, tokens[:, i:i + 1], cache, i)
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, rtol=0, atol=1e-5)


def test_base_multipliers_at_the_base_width():
    """At the base width µP is SP times the three base multipliers, computed here by hand on SP:
    hidden kernels start c_init times larger, the attention logits are c_attn times SP's (the same
    as scaling the query projection by c_attn), and the logits c_out times SP's."""
    c_out, c_attn, c_init = 8.0, 2.0, 3.0
    base = dict(vocab_size=61, context_length=16, d_model=32, n_layers=2, n_heads=2)
    sp = ModelConfig(**base)
    mu = ModelConfig(**base, parametrization="mup", mup_base_width=32, mup_base_head_dim=16,
                     mup_output_mult=c_out, mup_attn_mult=c_attn, mup_init_mult=c_init)
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 61)
    params = jax.jit(GPT(sp).init)(jax.random.key(0), tokens)["params"]
    sp_init, mu_init = leaves(nn_unbox(params)), leaves(nn_unbox(mup.rescale_init(params, mu)))
    for name, x in sp_init.items():
        hidden = name.endswith("['kernel']") and "['blocks']" in name
        np.testing.assert_array_equal(mu_init[name], x * c_init if hidden else x, err_msg=name)
    plain = nn_unbox(params)
    logits_mu, _ = GPT(mu).apply({"params": plain}, tokens)
    query = plain["blocks"]["attn"]["query"]
    by_hand = jax.tree.map(lambda x: x, plain)
    by_hand["blocks"]["attn"]["query"] = {k: v * c_attn for k, v in query.items()}
    logits_sp, _ = GPT(sp).apply({"params": by_hand}, tokens)
    np.testing.assert_allclose(logits_mu, c_out * logits_sp, rtol=1e-4, atol=1e-5)
    # Not vacuous: the multipliers change the model.
    assert np.abs(logits_mu - GPT(sp).apply({"params": plain}, tokens)[0]).max() > 0.1


def test_base_multipliers_are_the_same_at_every_width():
    """Each multiplier multiplies µP's width rule unchanged: at m = 4 (head width K = 4 K0) the
    hidden init factor is c_init / 2, the readout c_out / 4, the attention c_attn sqrt(K0) / K;
    under SP the multipliers are ignored."""
    kw = dict(vocab_size=61, context_length=16, n_layers=2, n_heads=2, mup_base_width=32,
              mup_base_head_dim=16, mup_output_mult=8.0, mup_attn_mult=2.0, mup_init_mult=3.0)
    wide = ModelConfig(d_model=128, parametrization="mup", **kw)
    assert mup.init_multiplier(wide, mup.HIDDEN) == pytest.approx(3.0 / 2)
    assert mup.init_multiplier(wide, mup.EMBEDDING) == mup.init_multiplier(wide, mup.READOUT) == 1.0
    assert mup.readout_scale(wide) == pytest.approx(8.0 / 4)
    assert mup.attention_scale(wide) == pytest.approx(2.0 * 16 ** 0.5 / 64)
    sp = ModelConfig(d_model=128, parametrization="sp", **kw)
    assert (mup.init_multiplier(sp, mup.HIDDEN), mup.readout_scale(sp)) == (1.0, 1.0)
    assert mup.attention_scale(sp) == 64 ** -0.5
    for key in ("mup_output_mult", "mup_attn_mult", "mup_init_mult"):
        with pytest.raises(Exception, match=key):
            ModelConfig(d_model=128, **{**kw, key: 0.0})


def test_weight_decay_per_step_is_width_independent():
    """MuAdamW: a hidden matrix's decay per step, η·λ, is the same at widths 64 and 256 (µP,
    base 32) and equals SP's; the (untied) readout keeps η·λ; embeddings, biases and norms are not
    decayed. With zero gradients Adam's part of the update is 0, so update / param is exactly the
    decay. (The rejected rule, the LR multiplier applied to AdamW's whole update, gives η·λ / m:
    1/2 and 1/8 of it.) A params tree with one parameter of each role keeps this fast."""
    from research import optim
    from research.config import TrainConfig
    lr, wd = 1e-2, 0.1
    t = TrainConfig(learning_rate=lr, weight_decay=wd, schedule="constant", warmup_steps=1)
    rng = np.random.default_rng(0)
    for p, width in (("mup", 64), ("mup", 256), ("sp", 256)):
        cfg = ModelConfig(d_model=width, n_heads=2, parametrization=p, mup_base_width=32,
                          mup_base_head_dim=16, tie_embeddings=False)
        params = {"wte": {"embedding": (61, width)}, "lm_head": {"kernel": (width, 61)},
                  "ln_f": {"scale": (width,)},
                  "blocks": {"mlp": {"up": {"kernel": (width, 4 * width), "bias": (4 * width,)}}}}
        params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), params,
                              is_leaf=lambda x: isinstance(x, tuple))
        tx = train_state.optimizer(
            cfg, t, lambda step: optim.lr_at(t.schedule, step, optim.schedule_inputs(t, 4)))
        # Jitted: eager optax compiles a small program per operation and leaf shape.
        updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params),
                                        jax.jit(tx.init)(params), params)
        for (path, u), x in zip(jax.tree_util.tree_leaves_with_path(updates),
                                jax.tree.leaves(params)):
            name = jax.tree_util.keystr(path)
            expected = -lr * wd * np.asarray(x) if name.endswith("['kernel']") else 0.0
            np.testing.assert_allclose(np.asarray(u), expected, rtol=1e-5, atol=0,
                                       err_msg=f"{p} {width} {name}")
        # Adam's part still follows the table: a unit gradient moves a hidden weight by η / m.
        ones = jax.tree.map(jnp.ones_like, params)
        t0 = TrainConfig(learning_rate=lr, weight_decay=0.0, schedule="constant", warmup_steps=1,
                         grad_clip=1e9)
        no_decay = train_state.optimizer(
            cfg, t0, lambda step: optim.lr_at(t0.schedule, step, optim.schedule_inputs(t0, 4)))
        step, _ = jax.jit(no_decay.update)(ones, jax.jit(no_decay.init)(params), params)
        m = width / 32 if p == "mup" else 1.0
        assert float(step["blocks"]["mlp"]["up"]["kernel"][0, 0]) == pytest.approx(-lr / m, rel=1e-5)
