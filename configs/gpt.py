"""GPT training configs: `--config configs/gpt.py:VARIANT`.

The model-size ladder is a table. Within the family the aspect ratio d_model / n_layers is
constant (32) and heads are 64 wide where the width allows (narrower models use 2 heads).
Every key is declared here so a misspelt command-line override fails instead of being ignored.
"""

import ml_collections

ASPECT_RATIO = 32

# name: (n_layers, d_model). Non-embedding parameters ~ 12 * n_layers * d_model^2.
LADDER = {
    "100k": (2, 64),
    "300k": (3, 96),
    "800k": (4, 128),
    "1.5m": (5, 160),
    "2.7m": (6, 192),
    "6m": (8, 256),
    "20m": (12, 384),
    "50m": (16, 512),
    "170m": (24, 768),
    "400m": (32, 1024),
    "800m": (40, 1280),
    "1.4b": (48, 1536),
}


def heads_for(d_model: int) -> int:
    """Heads of 64 where the width allows; otherwise 2 narrower heads."""
    return d_model // 64 if d_model >= 128 else 2


def default_rules():
    """Logical axis -> mesh axes. One table for parameters and activations."""
    return (
        ("batch", ("data", "fsdp")),
        ("embed", "fsdp"),
        ("vocab", "tensor"),
        ("mlp", "tensor"),
        ("heads", "tensor"),
        ("layers", None),
        ("length", None),
        ("act_embed", None),
        ("act_mlp", "tensor"),
        ("act_heads", "tensor"),
        ("act_vocab", "tensor"),
    )


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.variant = ""

    c.model = m = ml_collections.ConfigDict()
    m.vocab_size = 256  # must match the tokenizer; the trainer checks it
    m.context_length = 256
    m.d_model = 256
    m.n_layers = 8
    m.n_heads = 4
    m.mlp_ratio = 4
    m.tie_embeddings = True
    m.position = "learned"  # "learned" (absolute) or "rope"
    m.rope_base = 10000.0
    m.param_dtype = "float32"
    m.compute_dtype = "float32"  # bfloat16 on accelerators; f32 is fastest on CPU
    m.scan_layers = True
    # "auto": einsum on CPU, jax.nn.dot_product_attention with cuDNN on GPU (bf16/f16), XLA's on
    # TPU; or "einsum", "dot_product" (XLA) or "cudnn" (GPU only). Decoding always uses einsum.
    m.attention = "auto"
    m.remat = "none"  # "none", "full" (recompute each layer) or "save_dots" (keep matmul outputs)

    c.data = d = ml_collections.ConfigDict()
    # "shakespeare" (the embedded default), a folder of .txt files, or "tfds:NAME" (already
    # prepared in array_record under data.data_dir, text in feature data.text_feature).
    d.corpus = "shakespeare"
    d.data_dir = ""  # where prepared datasets live; "" = ~/.cache/scaling_lab/datasets
    d.text_feature = "text"
    d.validation_fraction = 0.1  # of documents, held out whole
    d.tokenizer = "byte"  # "byte" (vocab 256) or "bpe" (SentencePiece, trained on train split)
    d.bpe_vocab_size = 2048

    c.train = t = ml_collections.ConfigDict()
    t.tokens = 2_000_000  # the token budget D
    t.batch_size = 32  # sequences per optimizer step (global)
    t.microbatches = 1  # gradient accumulation
    t.seed = 0
    t.learning_rate = 3e-3
    t.min_lr_ratio = 0.1  # cosine decays to this fraction of the peak
    t.schedule = "cosine"  # "cosine", "constant" or "wsd" (warmup-stable-decay)
    t.warmup_fraction = 0.05  # of the run's own steps
    t.warmup_steps = -1  # > 0 overrides warmup_fraction (WSD families share one warmup)
    t.decay_fraction = 0.2  # wsd: final fraction of steps spent decaying
    t.weight_decay = 0.1
    t.b1 = 0.9
    t.b2 = 0.95
    t.grad_clip = 1.0
    t.eval_every = 200  # steps; evaluation also runs at the end
    t.eval_batches = 8
    t.log_every = 10
    t.checkpoint_every = 200
    t.keep_checkpoints = 2
    # Warmup-stable-decay branches: extra steps checkpointed and kept forever (a parent run),
    # or the run/step a branch starts from (a child run).
    t.keep_steps = ()
    t.init_from = ""
    t.init_step = -1
    t.allow_config_change = False  # resume a workdir whose config.json differs

    c.mesh = ms = ml_collections.ConfigDict()
    ms.data = -1  # -1 = all remaining devices
    ms.fsdp = 1
    ms.tensor = 1
    ms.rules = default_rules()
    return c


def _apply_ladder(c, n_layers, d_model):
    c.model.n_layers = n_layers
    c.model.d_model = d_model
    c.model.n_heads = heads_for(d_model)


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    c = base_config()
    c.variant = arg
    if arg == "tiny":
        # About 1.5 minutes on 2 CPU cores to Shakespeare-shaped text. Rotary positions: with
        # learned ones this model sits near 2.5 nats for its first ~400 steps (1.84 vs 2.11
        # nats after 1M tokens).
        _apply_ladder(c, 4, 128)
        c.model.n_heads = 4
        c.model.position = "rope"
        c.model.context_length = 128
        c.train.batch_size = 16
        c.train.tokens = 1_000_000
        c.train.eval_every = 100
        c.train.checkpoint_every = 100
    elif arg in LADDER:
        _apply_ladder(c, *LADDER[arg])
    else:
        known = ", ".join(["tiny", *LADDER])
        raise ValueError(f"unknown variant {arg!r}; choose one of: {known}")
    return c
