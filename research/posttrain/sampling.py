"""Responses sampled from a policy for many prompts, in fixed-size jitted batches.

Each prompt is preceded by the end-of-document token (as in records.encode) and continued for
exactly `max_new_tokens` tokens at temperature 1 with no top-k/top-p, so the samples are draws
from the policy itself (what a KL estimate needs). Prompts of equal token length share a batch;
batches are padded to `batch_rows` rows so one compilation serves every batch.
"""

from __future__ import annotations

import collections

import jax
import numpy as np

from research import sample


def sample_responses(model_cfg, params, eod_id: int, prompt_ids: list, per_prompt: int,
                     max_new_tokens: int, seed: int, batch_rows: int = 512) -> np.ndarray:
    """Token ids [prompts, per_prompt, max_new_tokens] of independent samples."""
    host_params = jax.device_get(params)
    out = np.zeros((len(prompt_ids), per_prompt, max_new_tokens), np.int32)
    by_length = collections.defaultdict(list)
    for i, ids in enumerate(prompt_ids):
        by_length[len(ids)].append(i)
    for length, members in sorted(by_length.items()):
        rows = [(i, k) for i in members for k in range(per_prompt)]
        for start in range(0, len(rows), batch_rows):
            chunk = rows[start:start + batch_rows]
            prompt_BP = np.full((batch_rows, length + 1), eod_id, np.int32)
            for r, (i, _) in enumerate(chunk):
                prompt_BP[r, 1:] = prompt_ids[i]
            new_BM = sample.generate(model_cfg, host_params, prompt_BP,
                                     max_new_tokens=max_new_tokens, temperature=1.0,
                                     seed=hash((seed, length, start)) % (2 ** 31))
            for r, (i, k) in enumerate(chunk):
                out[i, k] = new_BM[r]
    return out
