"""Parameter counts and analytic training FLOPs, defined once for run budgets, sweeps and MFU.

Conventions (Kaplan et al. 2020, with attention counted as Hoffmann et al. 2022 do):
- non-embedding parameters exclude token and position embeddings (and the output projection
  when it is tied), but include LayerNorms and biases;
- training FLOPs per token = 3 x forward (backward is twice the forward), where the forward is
  2 x non-embedding matmul weights + attention scores and mixing over the full context
  (2 x 2 x context x d_model per layer, masked scores included, as is the convention) + the
  vocabulary projection (2 x d_model x vocab). The model skips most masked scores (query
  blocks, research/model.py), so at context >= 128 it computes a little less than this.
"""

from __future__ import annotations


def _dims(m):
    d, n_layers, vocab = int(m.d_model), int(m.n_layers), int(m.vocab_size)
    d_mlp = int(m.mlp_ratio) * d
    return d, n_layers, vocab, d_mlp


def param_counts(m) -> dict:
    """Exact parameter counts of research.model.GPT for the model config `m`."""
    d, n_layers, vocab, d_mlp = _dims(m)
    attn = 4 * d * d + 4 * d  # q, k, v, out projections with biases
    mlp = 2 * d * d_mlp + d_mlp + d
    norms = 2 * 2 * d
    per_layer = attn + mlp + norms
    nonembedding = n_layers * per_layer + 2 * d  # + final LayerNorm
    token_embedding = vocab * d
    position_embedding = int(m.context_length) * d if m.position == "learned" else 0
    output = 0 if m.tie_embeddings else vocab * d + vocab
    embedding = token_embedding + position_embedding + output
    return {
        "params": nonembedding + embedding,
        "nonembedding_params": nonembedding,
        "embedding_params": embedding,
    }


def matmul_params(m) -> int:
    """Weights that take part in a matmul per token, excluding embeddings (no biases, norms)."""
    d, n_layers, _, d_mlp = _dims(m)
    return n_layers * (4 * d * d + 2 * d * d_mlp)


def attention_flops_per_token(m) -> float:
    """Forward attention scores and mixing over the full context, every layer."""
    d, n_layers, _, _ = _dims(m)
    return float(n_layers * 2 * 2 * int(m.context_length) * d)


def forward_flops_per_token(m) -> float:
    d, _, vocab, _ = _dims(m)
    dense = 2 * matmul_params(m)
    logits = 2 * d * vocab
    return float(dense + attention_flops_per_token(m) + logits)


def train_flops_per_token(m) -> float:
    """Analytic training FLOPs per token: 3 x forward (6N + attention + vocabulary)."""
    return 3.0 * forward_flops_per_token(m)


def run_flops(m, tokens: int) -> float:
    """Training compute C of a run that sees `tokens` tokens."""
    return train_flops_per_token(m) * float(tokens)
