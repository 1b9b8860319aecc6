"""A GPT-style decoder-only transformer in Flax Linen, used functionally.

Shapes are named in variables: B batch, T sequence (query) length, S key length, D d_model,
H heads, K head width, F MLP width, V vocabulary, L layers.

Parameters carry logical axis names (`embed`, `mlp`, `heads`, `vocab`, `length`, `layers`); the
rules table in the config maps them to mesh axes. Layers are stacked with `nn.scan`: compile
time stays flat in depth and XLA keeps each layer's backward separate (faster on CPU).

The same forward serves training (no cache) and decoding (a KV cache per layer, written at
`cache_index`), so KV-cache decoding is the training forward pass by construction.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.config import ModelConfig
from research import mup
from research.matmul import add_over_batch, dense_dot_general



# "save_dots" keeps the weight-matmul outputs (dots without batch dimensions) and recomputes
# the attention scores and element-wise ops; "full" keeps only each layer's input.
REMAT_POLICIES = {"none": None, "full": jax.checkpoint_policies.nothing_saveable,
                  "save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}


def attention_impl(cfg: ModelConfig) -> str:
    """The attention implementation `cfg.attention` means on this platform."""
    if cfg.attention != "auto":
        return cfg.attention
    backend = jax.default_backend()
    if backend == "gpu" and jnp.dtype(cfg.compute_dtype) in (jnp.bfloat16, jnp.float16):
        return "cudnn"
    # Plain einsum beats jax.nn.dot_product_attention on CPU (GUIDE.md); XLA's fused one on TPU.
    return "dot_product" if backend == "tpu" else "einsum"


# Output-layer matmul: bf16 inputs, float32 accumulation and result (logits never pass bf16).
_f32_dot = functools.partial(jax.lax.dot_general, preferred_element_type=jnp.float32)


def _dense_init(std):
    return nn.initializers.normal(stddev=std)


def _constrain(x, names):
    return nn.with_logical_constraint(x, names)


def positions(cfg: ModelConfig, T: int, cache_index):
    """The chunk's positions [T] and, with rotary positions, their sin and cos [T, K/2]:
    computed once per forward pass and shared by every layer. When the offset is a Python int
    (training, evaluation) they are constants of the program. Computed inside the layers,
    XLA's CPU backend fused sin and cos into every rotated element of q and k, about a sixth
    of a small model's forward pass."""
    def tables():
        positions_T = cache_index + jnp.arange(T)
        if cfg.position != "rope":
            return {"T": positions_T}
        half = cfg.head_dim // 2
        freqs = cfg.rope_base ** (-jnp.arange(half, dtype=jnp.float32) / half)
        angles_TK = positions_T[:, None].astype(jnp.float32) * freqs[None, :]
        return {"T": positions_T, "sin": jnp.sin(angles_TK), "cos": jnp.cos(angles_TK)}

    if isinstance(cache_index, int):
        with jax.ensure_compile_time_eval():
            return tables()
    return tables()


def rope(x_BTHK, pos):
    """Rotary position embedding on the two halves of each head (tables from `positions`)."""
    half = x_BTHK.shape[-1] // 2
    sin, cos = pos["sin"][None, :, None, :], pos["cos"][None, :, None, :]
    x1, x2 = x_BTHK[..., :half].astype(jnp.float32), x_BTHK[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BTHK.dtype)


# Without a cache, the einsum attention runs in query blocks of about this many positions (at
# most MAX_QUERY_BLOCKS), each against only the keys up to its end: the scores above the
# diagonal, all masked, are mostly never computed (3/4 of the full work at 2 blocks, 5/8 at 4).
# Losses equal up to float rounding. Interleaved on 2 CPU cores: training steps 0.94x at d256
# ctx256 (4 blocks) and d16-d64 ctx128 (2 blocks); 32-position blocks were slower at d64 ctx128.
QUERY_BLOCK = 64
MAX_QUERY_BLOCKS = 8


def query_blocks(T: int) -> list[tuple[int, int]]:
    """[(start, end)] of the query blocks for a causal pass over T positions."""
    n = min(MAX_QUERY_BLOCKS, T // QUERY_BLOCK)
    if n < 2 or T % n:
        return [(0, T)]
    size = T // n
    return [(i * size, (i + 1) * size) for i in range(n)]


class Attention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BTD, pos, cache, cache_index):
        cfg = self.cfg
        dtype, pdtype = jnp.dtype(cfg.compute_dtype), jnp.dtype(cfg.param_dtype)
        std = 0.02
        # GPT-2: residual projections scaled by depth (the base depth under depth-µP)
        out_std = 0.02 / (2 * mup.residual_init_depth(cfg)) ** 0.5

        # Fused head dimension (H*K, heads outermost) so tensor parallelism splits whole heads.
        def proj(name):
            return nn.Dense(
                cfg.d_model, dtype=dtype, param_dtype=pdtype, dot_general=dense_dot_general,
                kernel_init=nn.with_logical_partitioning(_dense_init(std), ("embed", "heads")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("heads",)),
                name=name)

        B, T, _ = x_BTD.shape
        q_BTHK, k_BTHK, v_BTHK = (
            _constrain(proj(n)(x_BTD).reshape(B, T, cfg.n_heads, cfg.head_dim),
                       ("batch", "length", "act_heads", None))
            for n in ("query", "key", "value"))
        if cfg.position == "rope":
            q_BTHK, k_BTHK = rope(q_BTHK, pos), rope(k_BTHK, pos)

        if cache is None:
            k_BSHK, v_BSHK, new_cache = k_BTHK, v_BTHK, None
        else:
            k_BSHK = jax.lax.dynamic_update_slice(cache["k"], k_BTHK.astype(cache["k"].dtype),
                                                  (0, cache_index, 0, 0))
            v_BSHK = jax.lax.dynamic_update_slice(cache["v"], v_BTHK.astype(cache["v"].dtype),
                                                  (0, cache_index, 0, 0))
            new_cache = {"k": k_BSHK, "v": v_BSHK}

        scale = mup.attention_scale(cfg)  # 1/sqrt(d_head) under SP (research/mup.py)
        impl = attention_impl(cfg)
        if cache is None and impl in ("dot_product", "cudnn"):
            mixed_BTHK = jax.nn.dot_product_attention(
                q_BTHK, k_BSHK.astype(dtype), v_BSHK.astype(dtype), scale=scale, is_causal=True,
                implementation="cudnn" if impl == "cudnn" else None)
            return self._out(mixed_BTHK.reshape(B, T, cfg.d_model), dtype, pdtype, out_std), new_cache
        # Einsum attention (faster on CPU); decoding with a cache always takes this path.
        # Heads are moved ahead of positions first, so both products are plain batched GEMMs
        # over (batch, head): left to fold the transposes into the dots, XLA's CPU backend picks
        # slower kernels. On the attention alone (batch 16, 128 positions, head sizes 8 and 32)
        # this made forward+backward 1.2-1.6x faster; whole training steps of the main job's
        # sizes showed no change beyond their run-to-run noise.
        q_BHTK, k_BHSK, v_BHSK = (x.astype(dtype).transpose(0, 2, 1, 3)
                                  for x in (q_BTHK * scale, k_BSHK, v_BSHK))
        # The causal mask as an additive bias (0 or -1e30): the same probabilities as a select
        # (exp underflows to exactly 0), and one fused add instead of a select and its gradient.
        if cache is None:  # a constant of the program, which XLA fuses into the attention
            with jax.ensure_compile_time_eval():
                causal_bias_TS = jnp.where(jnp.tril(jnp.ones((T, T), bool)), 0.0, -1e30)
            # The coord check reads the whole score matrix, so it gets one block.
            blocks = [(0, T)] if self.is_mutable_collection("intermediates") else query_blocks(T)
        else:  # cache slot s holds position s
            key_pos_S = jnp.arange(k_BSHK.shape[1])
            causal_bias_TS = jnp.where(key_pos_S[None, :] <= pos["T"][:, None], 0.0, -1e30)
            blocks = [(0, T)]

        def attend(start, end):
            """Queries start..end against the keys they can see: the whole cache, or (training,
            evaluation) the positions before `end`."""
            S = k_BHSK.shape[2] if cache is not None else end
            logits_BHTS = jnp.einsum("bhtk,bhsk->bhts", q_BHTK[:, :, start:end], k_BHSK[:, :, :S])
            logits_BHTS = _constrain(logits_BHTS, ("batch", "act_heads", "length", None))
            self.sow("intermediates", "logits", logits_BHTS)  # a no-op unless asked (coord check)
            logits_BHTS = logits_BHTS.astype(jnp.float32) + causal_bias_TS[start:end, :S]
            probs_BHTS = jax.nn.softmax(logits_BHTS, axis=-1).astype(dtype)
            return jnp.einsum("bhts,bhsk->bhtk", probs_BHTS, v_BHSK[:, :, :S])

        mixed_BHTK = jnp.concatenate([attend(a, b) for a, b in blocks], axis=2)
        mixed_BTHK = mixed_BHTK.transpose(0, 2, 1, 3)
        return self._out(mixed_BTHK.reshape(B, T, cfg.d_model), dtype, pdtype, out_std), new_cache

    def _out(self, mixed_BTD, dtype, pdtype, out_std):
        return nn.Dense(
            self.cfg.d_model, dtype=dtype, param_dtype=pdtype, dot_general=dense_dot_general,
            kernel_init=nn.with_logical_partitioning(_dense_init(out_std), ("heads", "embed")),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            name="out")(mixed_BTD)


class MLP(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BTD):
        cfg = self.cfg
        dtype, pdtype = jnp.dtype(cfg.compute_dtype), jnp.dtype(cfg.param_dtype)
        d_mlp = cfg.mlp_ratio * cfg.d_model
        h_BTF = nn.Dense(
            d_mlp, dtype=dtype, param_dtype=pdtype, dot_general=dense_dot_general,
            kernel_init=nn.with_logical_partitioning(_dense_init(0.02), ("embed", "mlp")),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)),
            name="up")(x_BTD)
        h_BTF = _constrain(nn.gelu(h_BTF), ("batch", "length", "act_mlp"))
        return nn.Dense(
            cfg.d_model, dtype=dtype, param_dtype=pdtype, dot_general=dense_dot_general,
            kernel_init=nn.with_logical_partitioning(
                _dense_init(0.02 / (2 * mup.residual_init_depth(cfg)) ** 0.5), ("mlp", "embed")),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            name="down")(h_BTF)


def _layer_norm(cfg, name):
    return nn.LayerNorm(
        epsilon=1e-5, dtype=jnp.dtype(cfg.compute_dtype), param_dtype=jnp.dtype(cfg.param_dtype),
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        name=name)


class Block(nn.Module):
    """Pre-LayerNorm transformer block. Signature fits nn.scan: (carry, per-layer xs)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BTD, cache, pos, cache_index):
        attn_BTD, new_cache = Attention(self.cfg, name="attn")(
            _layer_norm(self.cfg, "ln1")(x_BTD), pos, cache, cache_index)
        branch = mup.branch_scale(self.cfg)  # 1 unless depth-µP
        if branch != 1.0:
            attn_BTD = attn_BTD * branch
        x_BTD = x_BTD + attn_BTD
        mlp_BTD = MLP(self.cfg, name="mlp")(_layer_norm(self.cfg, "ln2")(x_BTD))
        x_BTD = x_BTD + (mlp_BTD * branch if branch != 1.0 else mlp_BTD)
        x_BTD = _constrain(x_BTD, ("batch", "length", "act_embed"))
        return x_BTD, new_cache


class GPT(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens_BT, cache=None, cache_index=0):
        """Logits [B, T, V] (float32) and the updated cache (None when not decoding).

        cache: None, or {"k", "v"} arrays [L, B, S, H, K] with S the cache length; the chunk
        `tokens_BT` sits at positions cache_index .. cache_index + T - 1.
        """
        cfg = self.cfg
        dtype, pdtype = jnp.dtype(cfg.compute_dtype), jnp.dtype(cfg.param_dtype)
        T = tokens_BT.shape[1]
        pos = positions(cfg, T, cache_index)
        embed = nn.Embed(
            cfg.vocab_size, cfg.d_model, dtype=dtype, param_dtype=pdtype,
            embedding_init=nn.with_logical_partitioning(_dense_init(0.02), ("vocab", "embed")),
            name="wte")
        x_BTD = embed(tokens_BT)
        if cfg.position == "learned":
            wpe_SD = self.param(
                "wpe", nn.with_logical_partitioning(_dense_init(0.01), ("length", "embed")),
                (cfg.context_length, cfg.d_model), pdtype)
            if isinstance(cache_index, int):  # a slice, not a gather: no scatter in the backward
                pos_TD = jax.lax.slice_in_dim(wpe_SD, cache_index, cache_index + T, axis=0)
            else:
                pos_TD = jnp.take(wpe_SD, pos["T"], axis=0)
            x_BTD = add_over_batch(x_BTD, pos_TD.astype(dtype))  # see research/matmul.py
        x_BTD = _constrain(x_BTD, ("batch", "length", "act_embed"))

        x_BTD, new_cache = _blocks(cfg, x_BTD, cache, pos, cache_index)
        x_BTD = _layer_norm(cfg, "ln_f")(x_BTD)
        if (readout := mup.readout_scale(cfg)) != 1.0:
            x_BTD = x_BTD * readout
        if cfg.tie_embeddings:
            logits_BTV = _f32_dot(x_BTD, embed.embedding.astype(dtype),
                                  (((x_BTD.ndim - 1,), (1,)), ((), ())))
        else:
            logits_BTV = nn.Dense(
                cfg.vocab_size, dtype=dtype, param_dtype=pdtype,
                dot_general=dense_dot_general if dtype == jnp.float32 else _f32_dot,
                kernel_init=nn.with_logical_partitioning(_dense_init(0.02), ("embed", "vocab")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                name="lm_head")(x_BTD)
        logits_BTV = _constrain(logits_BTV, ("batch", "length", "act_vocab"))
        return logits_BTV.astype(jnp.float32), new_cache


def _blocks(cfg: ModelConfig, x_BTD, cache, pos, cache_index):
    """The n_layers blocks (scanned over stacked parameters, or a Python loop), each
    rematerialised per cfg.remat; returns the output and the updated cache. Called inside
    GPT.__call__, so the blocks are its submodules."""
    policy = REMAT_POLICIES[cfg.remat]
    block = Block if cfg.remat == "none" else nn.remat(
        Block, policy=policy, prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
        stack = nn.scan(
            block, variable_axes={"params": 0}, split_rngs={"params": True},
            in_axes=(0, nn.broadcast, nn.broadcast), length=cfg.n_layers,
            unroll=min(cfg.scan_unroll, cfg.n_layers),
            metadata_params={nn.PARTITION_NAME: "layers"})
        return stack(cfg, name="blocks")(x_BTD, cache, pos, cache_index)
    new_layers = []
    for i in range(cfg.n_layers):
        layer_cache = None if cache is None else jax.tree.map(lambda c: c[i], cache)
        x_BTD, c = block(cfg, name=f"block_{i}")(x_BTD, layer_cache, pos, cache_index)
        new_layers.append(c)
    new_cache = None if cache is None else jax.tree.map(lambda *cs: jnp.stack(cs), *new_layers)
    return x_BTD, new_cache


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=None):
    """An empty KV cache for decoding up to `length` positions."""
    shape = (cfg.n_layers, batch, length, cfg.n_heads, cfg.head_dim)
    dtype = jnp.dtype(dtype or cfg.compute_dtype)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


def cross_entropy(logits_BTV, targets_BT):
    """Mean next-token cross-entropy in float32, nats per token."""
    return jnp.mean(token_losses(logits_BTV, targets_BT))


def token_losses(logits_BTV, targets_BT):
    """Next-token cross-entropy of every position [B, T], float32 nats."""
    logits_BTV = logits_BTV.astype(jnp.float32)
    logz_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
    # A one-hot mask, not take_along_axis: the same value (one term plus zeros), and its
    # gradient is elementwise instead of a scatter into a [B, T, V] buffer (slow on CPU).
    onehot_BTV = targets_BT[..., None] == jnp.arange(logits_BTV.shape[-1], dtype=targets_BT.dtype)
    target_logit_BT = jnp.sum(jnp.where(onehot_BTV, logits_BTV, 0.0), axis=-1)
    return logz_BT - target_logit_BT
