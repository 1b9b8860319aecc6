"""Maximal update parametrization (µP) for Adam: every width rule, in one table.

Yang et al. 2022 ("Tensor Programs V", Tables 3 and 8, Adam column). With µP the best learning
rate found at a small (base) width holds at every width. `model.parametrization` picks "sp"
(standard: today's GPT-2 initialisation, one learning rate) or "mup"; `model.mup_base_width`
names the width at which µP *is* SP, and `model.mup_base_head_dim` the head width at which the
two attention scales agree. With m = d_model / mup_base_width (the width multiplier):

  role       parameters                             init std         Adam LR   forward
  ---------  -------------------------------------  ---------------  --------  ------------------
  hidden     every matmul kernel inside the blocks  SP std x c_init  η / m     -
             (attn query/key/value/out, mlp up/down)   / sqrt(m)
  embedding  wte.embedding, wpe                     SP std           η         -
  vector     biases, LayerNorm scale and bias       SP (0 or 1)      η         -
  readout    lm_head.kernel (or wte when tied)      SP std           η         logits input
                                                                               x c_out / m
  attention  (no parameter)                         -                -         q.k x c_attn
                                                                               x sqrt(K0) / K

c_out, c_attn and c_init are the base multipliers (`model.mup_output_mult`, `mup_attn_mult`,
`mup_init_mult`): width-independent constants, the same at every width, tuned at the base width
where µP is SP times them (configs/sweeps/mup_base.py). They matter because µP copies the base
model's behaviour to every width, its slowness included: with all three at 1 the 32-wide base's
logits start at std ~0.1 and one Adam step moves them by at most ~η·32, so every width sits on
the unigram plateau as long as the base does.

K is the head width and K0 = mup_base_head_dim: the logits are scaled by 1/K (µP) instead of
1/sqrt(K) (SP), with the constant chosen so that both agree at K = K0. The readout multiplier
1/m is the paper's Table 8 form of "readout init variance 1/width^2, LR η/width": it works for a
tied embedding too, whose input use keeps init and LR as an embedding should. Weight decay is
decoupled and, as in microsoft/mup's MuAdamW, a hidden matrix's λ is multiplied by m while its LR
is divided by m: the decay per step, η·λ, is the same at every width (decayed: kernels only,
research/optim.py:decay_mask).

Everything is applied here and nowhere else: `rescale_init` multiplies the freshly initialised
parameters, `scale_learning_rates` multiplies Adam's updates per parameter, `attention_scale` and
`readout_scale` are the two forward constants the model reads (`branch_scale` under depth-µP).
At m = 1 and K = K0 every width factor is exactly 1.0, so µP is SP times the base multipliers
(SP bit for bit with them at 1). Parameter count, shapes, shardings, checkpoint layout of the
params and the analytic FLOPs are the same under both; µP's optimizer state differs in layout
(its AdamW is built from optax's parts, with a per-parameter decay).

Depth (`model.depth_parametrization`, CompleteP: Dey et al. 2025): "sqrt" or "complete" scales
each residual branch by (L0/L)^alpha, alpha = 1/2 or 1 (L0 = `model.mup_base_depth`), keeps the
residual projections' init at the base depth, and multiplies the Adam LR of everything inside the
blocks by (L/L0)^(alpha-1). It combines with either parametrization and is exactly off at L = L0.

µP transfers across *width*. Scale heads either way: with n_heads fixed (K grows with the width,
set mup_base_head_dim = mup_base_width / n_heads) or with K fixed (heads grow; then the attention
factor is a constant). Without depth-µP it says nothing about depth: the ladder also grows in
depth, so a base LR is a good start there, not a guarantee.
"""

from __future__ import annotations

import jax
from flax.core import meta

HIDDEN, EMBEDDING, VECTOR, READOUT = "hidden", "embedding", "vector", "readout"


def is_mup(cfg) -> bool:
    return cfg.parametrization == "mup"


def width_multiplier(cfg) -> float:
    return cfg.d_model / cfg.mup_base_width if is_mup(cfg) else 1.0


def attention_scale(cfg) -> float:
    """Multiplier of q.k: 1/sqrt(K) under SP, sqrt(K0)/K under µP (equal at K = K0)."""
    k = cfg.d_model // cfg.n_heads
    if not is_mup(cfg):
        return k ** -0.5
    return cfg.mup_attn_mult * k ** -0.5 * (cfg.mup_base_head_dim / k) ** 0.5


def readout_scale(cfg) -> float:
    """Multiplier of the readout's input (so of the logits): c_out / m under µP."""
    if not is_mup(cfg):
        return 1.0
    return cfg.mup_output_mult / width_multiplier(cfg)


DEPTH_ALPHAS = {"sqrt": 0.5, "complete": 1.0}


def depth_alpha(cfg) -> float | None:
    """CompleteP's alpha under depth-µP (branches x (L0/L)^alpha), None when off."""
    return DEPTH_ALPHAS.get(cfg.depth_parametrization)


def branch_scale(cfg) -> float:
    """Multiplier of each residual branch (attention, MLP): (L0/L)^alpha, 1 without depth-µP."""
    alpha = depth_alpha(cfg)
    return 1.0 if alpha is None else (cfg.mup_base_depth / cfg.n_layers) ** alpha


def residual_init_depth(cfg) -> int:
    """The depth in GPT-2's residual-projection init std 0.02 / sqrt(2 L): the model's own, or
    the base depth under depth-µP (the branch multiplier then does the depth scaling)."""
    return cfg.n_layers if depth_alpha(cfg) is None else cfg.mup_base_depth


def depth_lr_multiplier(cfg, path) -> float:
    """Adam LR factor of a parameter inside the blocks under depth-µP: (L/L0)^(alpha - 1)
    (CompleteP, Adam; 1 for alpha = 1)."""
    alpha = depth_alpha(cfg)
    if alpha is None or not _in_blocks(path):
        return 1.0
    return (cfg.n_layers / cfg.mup_base_depth) ** (alpha - 1.0)


def _in_blocks(path) -> bool:
    names = [str(getattr(k, "key", getattr(k, "name", ""))) for k in path]
    return any(n == "blocks" or n.startswith("block_") for n in names)


def role_of(path) -> str:
    """A parameter's µP role from its path in the params tree (see the table)."""
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    leaf = names[-1]
    if leaf in ("embedding", "wpe"):
        return EMBEDDING
    if leaf in ("bias", "scale"):
        return VECTOR
    if leaf == "kernel":
        return READOUT if "lm_head" in names else HIDDEN
    raise ValueError(f"parameter {'/'.join(map(str, names))} has no µP role; add it to "
                     "research/mup.py:role_of")


def init_multiplier(cfg, role: str) -> float:
    if not is_mup(cfg) or role != HIDDEN:
        return 1.0
    return cfg.mup_init_mult * width_multiplier(cfg) ** -0.5


def lr_multiplier(cfg, role: str) -> float:
    return 1.0 / width_multiplier(cfg) if role == HIDDEN else 1.0


def decay_multiplier(cfg, role: str) -> float:
    """λ's factor: m for hidden matrices (MuAdamW: η/m x λ·m = η·λ at every width)."""
    return width_multiplier(cfg) if role == HIDDEN else 1.0


def weight_decay_scale(cfg):
    """path -> decay factor for research/optim.py under µP or depth-µP (the inverse of the LR
    factors, so the decay per step stays η·λ); None (plain AdamW) under SP."""
    if not is_mup(cfg) and depth_alpha(cfg) is None:
        return None
    return lambda path: decay_multiplier(cfg, role_of(path)) / depth_lr_multiplier(cfg, path)


def _is_box(x) -> bool:
    return isinstance(x, meta.AxisMetadata)


def rescale_init(params, cfg):
    """Freshly initialised (SP) params -> µP init. Works on boxed (logically partitioned) or
    plain trees; an identity under SP."""
    if not is_mup(cfg):
        return params

    def rescale(path, x):
        factor = init_multiplier(cfg, role_of(path))
        if factor == 1.0:
            return x
        if _is_box(x):
            return x.replace_boxed(x.unbox() * factor)
        return x * factor

    return jax.tree_util.tree_map_with_path(rescale, params, is_leaf=_is_box)


def lr_factor(cfg, path) -> float:
    """The learning-rate multiplier of the parameter at `path`: µP's width rule for its role
    times the depth rule (both 1 under plain SP)."""
    return lr_multiplier(cfg, role_of(path)) * depth_lr_multiplier(cfg, path)


def scale_learning_rates(cfg) -> optax.GradientTransformation:
    """Chained after AdamW: multiplies each parameter's update (hence its LR, and its decoupled
    weight decay, which weight_decay_scale has multiplied by the inverse) by its µP multiplier."""
    import optax  # here, not at the top: the model (and sampling) must not load the optimizer

    def update(updates, state, params=None):
        del params

        def scale(path, u):
            factor = lr_factor(cfg, path)
            return u if factor == 1.0 else u * factor

        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def with_lr_multipliers(tx: optax.GradientTransformation, cfg) -> optax.GradientTransformation:
    """The optimizer `tx` with µP's per-parameter learning rates; `tx` itself under SP (so an SP
    run's optimizer state keeps its layout)."""
    import optax

    on = is_mup(cfg) or depth_alpha(cfg) is not None
    return optax.chain(tx, scale_learning_rates(cfg)) if on else tx
