"""Responses sampled from a policy for many prompts, in fixed-size jitted batches.

Each prompt is preceded by the end-of-document token (as in records.encode) and continued for
exactly `max_new_tokens` tokens by plain ancestral sampling (temperature 1, no top-k/top-p), so
the samples are draws from the policy itself, which a KL estimate needs. The decoding loop is
the model's own KV-cache path (research.model); unlike research.sample it skips the sorting
that top-k/top-p filtering needs on every step. Prompts of equal token length share a batch;
batches are padded to `batch_rows` rows so one compilation serves every batch.
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np

from research.model import GPT, init_cache


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens"))
def _ancestral(cfg, params, prompt_BP, key, *, max_new_tokens: int):
    """[B, max_new_tokens] tokens drawn after the whole prompt `prompt_BP`."""
    model = GPT(cfg)
    batch, length = prompt_BP.shape
    cache = init_cache(cfg, batch, length + max_new_tokens)
    logits_BPV, cache = model.apply({"params": params}, prompt_BP, cache, 0)
    first_B = jax.random.categorical(jax.random.fold_in(key, 0), logits_BPV[:, -1])
    out_BM = jnp.zeros((batch, max_new_tokens), jnp.int32).at[:, 0].set(first_B)

    def body(i, carry):
        out_BM, cache = carry
        previous_B1 = jax.lax.dynamic_slice_in_dim(out_BM, i - 1, 1, axis=1)
        logits_B1V, cache = model.apply({"params": params}, previous_B1, cache, length + i - 1)
        token_B = jax.random.categorical(jax.random.fold_in(key, i), logits_B1V[:, 0])
        return jax.lax.dynamic_update_slice_in_dim(out_BM, token_B[:, None].astype(jnp.int32),
                                                   i, axis=1), cache

    out_BM, _ = jax.lax.fori_loop(1, max_new_tokens, body, (out_BM, cache))
    return out_BM


def sample_responses(model_cfg, params, eod_id: int, prompt_ids: list, per_prompt: int,
                     max_new_tokens: int, seed: int, batch_rows: int = 512) -> np.ndarray:
    """Token ids [prompts, per_prompt, max_new_tokens] of independent samples."""
    width = max((len(p) for p in prompt_ids), default=0) + 1 + max_new_tokens
    if width > model_cfg.context_length:
        raise ValueError(f"prompt + {max_new_tokens} new tokens exceed the context "
                         f"{model_cfg.context_length}; shorten the prompts")
    host_params = jax.device_get(params)
    out = np.zeros((len(prompt_ids), per_prompt, max_new_tokens), np.int32)
    by_length = collections.defaultdict(list)
    for i, ids in enumerate(prompt_ids):
        by_length[len(ids)].append(i)
    key = jax.random.key(seed)
    for length, members in sorted(by_length.items()):
        rows = [(i, k) for i in members for k in range(per_prompt)]
        for start in range(0, len(rows), batch_rows):
            chunk = rows[start:start + batch_rows]
            prompt_BP = np.full((min(batch_rows, len(rows)), length + 1), eod_id, np.int32)
            for r, (i, _) in enumerate(chunk):
                prompt_BP[r, 1:] = prompt_ids[i]
            new_BM = np.asarray(_ancestral(model_cfg, host_params, prompt_BP,
                                           jax.random.fold_in(key, length * 1_000_003 + start),
                                           max_new_tokens=max_new_tokens))
            for r, (i, k) in enumerate(chunk):
                out[i, k] = new_BM[r]
    return out
