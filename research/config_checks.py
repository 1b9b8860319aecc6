"""Refuse configs that cannot work, before anything compiles or is written."""

from __future__ import annotations

from research.errors import UserError


class ConfigError(UserError):
    """A config that cannot work; the message names the problem and the fix."""


def check_model(m) -> None:
    if m.d_model % m.n_heads:
        raise ConfigError(
            f"model.n_heads={m.n_heads} does not divide model.d_model={m.d_model}; "
            "choose heads that divide the width")
    if m.position == "rope" and (m.d_model // m.n_heads) % 2:
        raise ConfigError("rotary positions need an even head width (d_model / n_heads)")
    if m.position not in ("learned", "rope"):
        raise ConfigError(f"model.position={m.position!r}; use 'learned' or 'rope'")
    if m.get("attention", "auto") not in ("auto", "einsum", "dot_product", "cudnn"):
        raise ConfigError(f"model.attention={m.attention!r}; use auto, einsum, dot_product or cudnn")
    if m.get("remat", "none") not in ("none", "full", "save_dots"):
        raise ConfigError(f"model.remat={m.remat!r}; use none, full or save_dots")
    if m.get("attention") == "cudnn":
        import jax
        if jax.default_backend() != "gpu" or m.compute_dtype not in ("bfloat16", "float16"):
            raise ConfigError("model.attention='cudnn' needs a GPU and model.compute_dtype "
                              "bfloat16 or float16; use auto")
    for key in ("d_model", "n_layers", "n_heads", "context_length", "vocab_size", "mlp_ratio"):
        if int(m[key]) < 1:
            raise ConfigError(f"model.{key} must be positive, got {m[key]}")


def check_train(t, context_length: int, dp_size: int) -> None:
    if t.schedule not in ("cosine", "constant", "wsd"):
        raise ConfigError(f"train.schedule={t.schedule!r}; use cosine, constant or wsd")
    if t.batch_size % (dp_size * t.microbatches):
        raise ConfigError(
            f"train.batch_size={t.batch_size} is not divisible by data-parallel size {dp_size} "
            f"x train.microbatches={t.microbatches}; use a multiple of {dp_size * t.microbatches}")
    per_step = t.batch_size * context_length
    if t.tokens < per_step:
        raise ConfigError(
            f"train.tokens={t.tokens} is less than one optimizer step ({per_step} tokens = "
            "batch_size x context_length); raise the budget or shrink the batch")
    if not t.learning_rate > 0:
        raise ConfigError(f"train.learning_rate must be positive, got {t.learning_rate}")
    if t.init_from and t.init_step < 0:
        raise ConfigError("train.init_from needs train.init_step (the parent's step to branch at)")
