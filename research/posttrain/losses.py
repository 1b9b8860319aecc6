"""The losses of post-training, as pure functions of logits, rewards and masks.

Shapes: B rows, T positions, V vocabulary. `mask_BT` is 1 where the target token belongs to
the response (prompt and padding carry no loss).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_logprobs(logits_BTV, targets_BT):
    """log p(target) at every position, float32 [B, T]."""
    logits_BTV = logits_BTV.astype(jnp.float32)
    # A one-hot sum rather than a gather: its gradient is elementwise (no scatter on CPU).
    onehot_BTV = targets_BT[..., None] == jnp.arange(logits_BTV.shape[-1], dtype=targets_BT.dtype)
    target_BT = jnp.sum(jnp.where(onehot_BTV, logits_BTV, 0.0), axis=-1)
    return target_BT - jax.nn.logsumexp(logits_BTV, axis=-1)


def masked_nll(logits_BTV, targets_BT, mask_BT):
    """Mean negative log-likelihood over the response tokens of the batch (nats per token)."""
    mask_BT = mask_BT.astype(jnp.float32)
    nll_BT = -token_logprobs(logits_BTV, targets_BT)
    return jnp.sum(nll_BT * mask_BT) / jnp.maximum(jnp.sum(mask_BT), 1.0)


def sequence_logprob(logits_BTV, targets_BT, mask_BT):
    """log p(response | prompt) of each row: the sum over its response tokens [B]."""
    return jnp.sum(token_logprobs(logits_BTV, targets_BT) * mask_BT.astype(jnp.float32), axis=-1)


def bradley_terry_loss(reward_chosen_B, reward_rejected_B):
    """-log sigmoid(r_chosen - r_rejected), averaged: the reward model's loss."""
    return -jnp.mean(jax.nn.log_sigmoid(reward_chosen_B - reward_rejected_B))


def dpo_implicit_rewards(policy_chosen_B, policy_rejected_B, ref_chosen_B, ref_rejected_B, beta):
    """beta * log(pi / pi_ref) of the chosen and of the rejected responses."""
    return beta * (policy_chosen_B - ref_chosen_B), beta * (policy_rejected_B - ref_rejected_B)


def dpo_loss(policy_chosen_B, policy_rejected_B, ref_chosen_B, ref_rejected_B, beta):
    """Rafailov et al.'s loss: -log sigmoid(beta * [log-ratio(chosen) - log-ratio(rejected)]),
    averaged over the batch; inputs are sequence log-probabilities (sequence_logprob)."""
    chosen_B, rejected_B = dpo_implicit_rewards(policy_chosen_B, policy_rejected_B,
                                                ref_chosen_B, ref_rejected_B, beta)
    return -jnp.mean(jax.nn.log_sigmoid(chosen_B - rejected_B))
