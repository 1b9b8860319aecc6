"""The two model heads post-training needs, on the pretrained GPT's parameters.

- The policy is the GPT itself: log-probabilities of its response tokens.
- The reward model is the GPT trunk with a scalar head: each response position's final hidden
  state (the output of the last LayerNorm) gives a score w.h + b, and the reward is their mean
  over the response. Parameters: {"trunk": GPT params, "head": {"w": [D], "b": []}}.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from research.model import GPT
from research.posttrain import losses


def policy_logprobs(model_cfg, params, batch, prefix=""):
    """log p(response | prompt) of each row [B]; `prefix` picks batch["<prefix>inputs"] etc."""
    logits_BTV, _ = GPT(model_cfg).apply({"params": params}, batch[prefix + "inputs"])
    return losses.sequence_logprob(logits_BTV, batch[prefix + "targets"],
                                   batch[prefix + "target_mask"])


def policy_token_logprobs(model_cfg, params, batch):
    """log p of every target token [B, T] (masking is the caller's)."""
    logits_BTV, _ = GPT(model_cfg).apply({"params": params}, batch["inputs"])
    return losses.token_logprobs(logits_BTV, batch["targets"])


def last_hidden(model_cfg, params, inputs_BT):
    """The final LayerNorm's output [B, T, D] (the logits are computed and then unused)."""
    _, state = GPT(model_cfg).apply(
        {"params": params}, inputs_BT, mutable=["intermediates"],
        capture_intermediates=lambda module, method: module.name == "ln_f")
    return state["intermediates"]["ln_f"]["__call__"][0]


def reward(model_cfg, rm_params, batch, prefix=""):
    """The reward model's scalar of each row [B]: mean of w.h + b over the response inputs."""
    h_BTD = last_hidden(model_cfg, rm_params["trunk"], batch[prefix + "inputs"])
    score_BT = jnp.einsum("btd,d->bt", h_BTD.astype(jnp.float32), rm_params["head"]["w"])
    mask_BT = batch[prefix + "input_mask"].astype(jnp.float32)
    mean_B = jnp.sum(score_BT * mask_BT, axis=-1) / jnp.maximum(jnp.sum(mask_BT, axis=-1), 1.0)
    return mean_B + rm_params["head"]["b"]


def init_reward_head(model_cfg) -> dict:
    """A zero head: the reward model starts indifferent (every reward 0)."""
    return {"w": np.zeros((model_cfg.d_model,), np.float32), "b": np.zeros((), np.float32)}
