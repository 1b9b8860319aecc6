"""Autoregressive sampling from a GPT with its KV cache: temperature, top-k and top-p.

How one call runs:
- the prompt is prefilled in one forward pass that fills the cache, then one token per step is
  decoded inside a jitted `lax.fori_loop` (no Python loop per token);
- the cache always spans the model's whole context, and the prompt is right-padded to a power
  of two (capped at the context). One compilation then serves every prompt length in a bucket;
  compilations are keyed by (model config, batch, bucket, max_new_tokens) only, because
  temperature, top-k, top-p, the seed and the true prompt length are traced values. Padding is
  harmless: causal attention never lets a real position see a later one, and each decode step
  writes its own key/value over the padding's before it reads the cache;
- learned positions cannot go past the context, so one window holds prompt + new tokens: the
  prompt is cut from the left to make room. Asking for more new tokens than one window leaves
  room for slides the window: each further window keeps the last half-context of text as its
  prompt and adds the other half, so any length can be generated.

Order of the transformations, as in common practice: logits / temperature, then top-k, then
top-p on the probabilities left after top-k. Temperature 0 is greedy (argmax of the raw logits).
"""

from __future__ import annotations

from research.errors import UserError

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np

from research.config import ModelConfig
from research.model import GPT, init_cache


class SamplingError(UserError):
    """Bad sampling arguments; the message names the fix."""


def filter_logits(logits_BV, top_k, top_p):
    """Logits with everything outside the top-k / nucleus set to -inf.

    top_k: keep the k largest logits (0 = off); ties are broken by the lower token id, so
    exactly min(k, V) survive. top_p: then keep the smallest set of most-probable tokens whose
    probability (renormalised over the top-k survivors) reaches top_p (1.0 = off). The most
    probable token is always kept. Both may be traced scalars.
    """
    logits_BV = jnp.asarray(logits_BV, jnp.float32)
    vocab = logits_BV.shape[-1]
    order_BV = jnp.argsort(-logits_BV, axis=-1, stable=True)  # descending, lower id first on ties
    sorted_BV = jnp.take_along_axis(logits_BV, order_BV, axis=-1)
    rank_V = jnp.arange(vocab)

    k = jnp.where(top_k > 0, jnp.minimum(top_k, vocab), vocab)
    keep_sorted_BV = rank_V < k
    probs_BV = jax.nn.softmax(jnp.where(keep_sorted_BV, sorted_BV, -jnp.inf), axis=-1)
    mass_before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV  # probability of higher ranks
    # Rounding can make the mass before the tail reach exactly 1.0, so 1.0 is "off" explicitly.
    keep_sorted_BV &= (mass_before_BV < top_p) | (top_p >= 1.0)

    inverse_BV = jnp.argsort(order_BV, axis=-1)
    keep_BV = jnp.take_along_axis(keep_sorted_BV, inverse_BV, axis=-1)
    return jnp.where(keep_BV, logits_BV, -jnp.inf)


def sample_token(key, logits_BV, temperature, top_k, top_p):
    """Next token ids [B]: greedy when temperature == 0, else a filtered, tempered draw."""
    greedy_B = jnp.argmax(logits_BV, axis=-1)
    safe_temperature = jnp.where(temperature > 0, temperature, 1.0)
    filtered_BV = filter_logits(logits_BV / safe_temperature, top_k, top_p)
    drawn_B = jax.random.categorical(key, filtered_BV, axis=-1)
    return jnp.where(temperature > 0, drawn_B, greedy_B).astype(jnp.int32)


def prompt_bucket(prompt_len: int, context_length: int) -> int:
    """Padded prompt length: the next power of two, at most the context."""
    return min(1 << max(prompt_len - 1, 0).bit_length(), context_length)


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens"))
def _generate(cfg: ModelConfig, params, prompt_BP, prompt_len, key, temperature, top_k, top_p,
              *, max_new_tokens: int):
    """New tokens [B, max_new_tokens] after the first `prompt_len` columns of `prompt_BP`."""
    model = GPT(cfg)
    batch = prompt_BP.shape[0]
    cache = init_cache(cfg, batch, cfg.context_length)

    def step_logits(tokens_BT, cache, index):
        return model.apply({"params": params}, tokens_BT, cache, index)

    logits_BPV, cache = step_logits(prompt_BP, cache, 0)
    last_BV = jax.lax.dynamic_index_in_dim(logits_BPV, prompt_len - 1, axis=1, keepdims=False)
    first_B = sample_token(jax.random.fold_in(key, 0), last_BV, temperature, top_k, top_p)
    out_BM = jnp.zeros((batch, max_new_tokens), jnp.int32).at[:, 0].set(first_B)

    def body(i, carry):
        out_BM, cache = carry
        previous_B1 = jax.lax.dynamic_slice_in_dim(out_BM, i - 1, 1, axis=1)
        logits_B1V, cache = step_logits(previous_B1, cache, prompt_len + i - 1)
        token_B = sample_token(jax.random.fold_in(key, i), logits_B1V[:, 0], temperature,
                               top_k, top_p)
        return jax.lax.dynamic_update_slice_in_dim(out_BM, token_B[:, None], i, axis=1), cache

    out_BM, _ = jax.lax.fori_loop(1, max_new_tokens, body, (out_BM, cache))
    return out_BM


def _check_arguments(cfg, prompt, max_new_tokens, temperature, top_k, top_p):
    if prompt.ndim not in (1, 2) or prompt.shape[-1] == 0 or prompt.size == 0:
        raise SamplingError(
            f"prompt_ids must be a non-empty 1-D or [batch, length] array, got shape "
            f"{prompt.shape}; start an empty prompt with the tokenizer's end-of-document id")
    if not np.issubdtype(prompt.dtype, np.integer):
        raise SamplingError(f"prompt_ids must be integers, got dtype {prompt.dtype}")
    if prompt.min() < 0 or prompt.max() >= cfg.vocab_size:
        raise SamplingError(
            f"prompt ids must lie in [0, {cfg.vocab_size}), got [{prompt.min()}, "
            f"{prompt.max()}]; encode the prompt with the run's own tokenizer")
    if max_new_tokens < 0:
        raise SamplingError(f"max_new_tokens={max_new_tokens} is negative; use 0 or more")
    if not temperature >= 0:
        raise SamplingError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise SamplingError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not 0 < top_p <= 1:
        raise SamplingError(f"top_p must lie in (0, 1] (1 = off), got {top_p}")


def generate(model_cfg: ModelConfig, params, prompt_ids, *, max_new_tokens: int,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             seed: int = 0) -> np.ndarray:
    """New token ids continuing `prompt_ids` ([P] -> [M], or [B, P] -> [B, M]).

    The prompt keeps its last `context_length - max_new_tokens` tokens when longer. The same
    arguments and seed give the same tokens; temperature 0 ignores the seed.
    """
    prompt = np.asarray(prompt_ids)
    _check_arguments(model_cfg, prompt, max_new_tokens, temperature, top_k, top_p)
    prompt_BP = prompt.reshape(-1, prompt.shape[-1]).astype(np.int32)
    ctx = model_cfg.context_length
    window_new = max_new_tokens if max_new_tokens <= ctx - 1 else ctx // 2
    key = jax.random.key(seed)
    pieces, text_BT = [], prompt_BP
    for window in range(-(-max_new_tokens // window_new) if max_new_tokens else 0):
        n = min(window_new, max_new_tokens - window * window_new)
        new_BN = _one_window(model_cfg, params, text_BT, n, jax.random.fold_in(key, window),
                             temperature, top_k, top_p)
        pieces.append(new_BN)
        text_BT = np.concatenate([text_BT, new_BN], axis=1)
    out_BM = np.concatenate(pieces, axis=1) if pieces else np.zeros((len(prompt_BP), 0), np.int32)
    return out_BM[0] if prompt.ndim == 1 else out_BM


def _one_window(model_cfg, params, prompt_BP, max_new_tokens, key, temperature, top_k, top_p):
    room = model_cfg.context_length - max_new_tokens
    if prompt_BP.shape[1] > room:
        logging.info("prompt of %d tokens cut to its last %d to leave room for %d new tokens",
                     prompt_BP.shape[1], room, max_new_tokens)
        prompt_BP = prompt_BP[:, -room:]
    batch, prompt_len = prompt_BP.shape
    bucket = prompt_bucket(prompt_len, model_cfg.context_length)
    padded_BP = np.zeros((batch, bucket), np.int32)
    padded_BP[:, :prompt_len] = prompt_BP
    return np.asarray(_generate(
        model_cfg, params, padded_BP, np.int32(prompt_len), key, np.float32(temperature),
        np.int32(min(top_k, model_cfg.vocab_size)), np.float32(top_p),
        max_new_tokens=max_new_tokens))
