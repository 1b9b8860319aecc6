"""Typed run configs: frozen dataclasses for the model, data, training and mesh sections.

Every key and its default is declared here, once. configs/gpt.py builds a variant's RunConfig
and hands the command line its ConfigDict (so `--config.a.b=v` overrides and lock_config work);
`RunConfig.from_configdict` converts it back, checking every key and value, in two places only:
the command-line boundary (experiments/cli.py `run_config`) and reading a stored config
(research/run_dir.py `read_config`). research/ takes only RunConfig (`cfg.train.batch_size` is
an int) and builds changed configs with `dataclasses.replace`.

Why the defaults live here and not in configs/: research/ must stay usable without configs/
(a notebook or a test builds `ModelConfig(d_model=64)`), and research must not import
configs/, so the one place both can read is this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Mapping

from research.errors import ConfigError

SCHEDULES = ("cosine", "constant", "wsd")
POSITIONS = ("learned", "rope")
MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axes. One table for parameters and activations.
DEFAULT_RULES = (
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


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 256  # must match the tokenizer; the trainer checks it
    context_length: int = 256
    d_model: int = 256
    n_layers: int = 8
    n_heads: int = 4
    mlp_ratio: int = 4
    tie_embeddings: bool = True
    position: str = "learned"  # "learned" (absolute) or "rope"
    rope_base: float = 10000.0
    param_dtype: str = "float32"
    compute_dtype: str = "float32"  # bfloat16 on accelerators; f32 is fastest on CPU
    scan_layers: bool = True
    # Layers per iteration of the layer scan (capped at n_layers; 1 = a rolled loop). Same math;
    # on XLA's CPU backend a rolled scan runs 30-40% slower (measured at d256 L4: each iteration
    # writes its saved activations into stacked buffers), and a fully unrolled scan is faster
    # than a Python loop of layers. Compile time grows with it, hence the cap for deep models.
    scan_unroll: int = 12
    # "auto": einsum on CPU, jax.nn.dot_product_attention with cuDNN on GPU (bf16/f16), XLA's on
    # TPU; or "einsum", "dot_product" (XLA) or "cudnn" (GPU only). Decoding always uses einsum.
    attention: str = "auto"
    remat: str = "none"  # "none", "full" (recompute each layer) or "save_dots" (keep matmul outputs)
    # "sp" (GPT-2 initialisation, one LR) or "mup" (µP: the best LR transfers across width).
    # µP equals SP (times the base multipliers below) at d_model = mup_base_width with head width
    # mup_base_head_dim. The default base, 32 wide with heads of 16, is the one the multipliers
    # and the transferred LR (6e-3) were tuned at (docs/mup.md). Rules: research/mup.py.
    parametrization: str = "sp"
    mup_base_width: int = 32
    mup_base_head_dim: int = 16
    # µP's base multipliers: constants tuned at the base width (where µP is SP times them) and
    # applied identically at every width, as Tensor Programs V tunes them. Under SP they are
    # ignored (SP stays GPT-2). output: logits (the readout's input); attn: the attention
    # logits; init: the init std of every hidden matrix. The defaults are the best point of
    # configs/sweeps/mup_base.py (3 seeds, base 32 wide, 2 layers; docs/mup.md).
    mup_output_mult: float = 8.0
    mup_attn_mult: float = 2.83
    mup_init_mult: float = 2.83
    # Depth-µP (CompleteP, Dey et al. 2025), under SP or µP: "none", "sqrt" (each residual branch
    # x (L0/L)^(1/2)) or "complete" (x L0/L), with the in-block Adam LR x (L/L0)^(alpha - 1) and
    # the residual projections' init at the base depth L0 = mup_base_depth. research/mup.py.
    depth_parametrization: str = "none"
    mup_base_depth: int = 2

    def __post_init__(self):
        for key in ("d_model", "n_layers", "n_heads", "context_length", "vocab_size", "mlp_ratio"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be positive, got {getattr(self, key)}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"model.n_heads={self.n_heads} does not divide model.d_model={self.d_model}; "
                "choose heads that divide the width")
        if self.position not in POSITIONS:
            raise ConfigError(f"model.position={self.position!r}; use 'learned' or 'rope'")
        if self.position == "rope" and self.head_dim % 2:
            raise ConfigError("rotary positions need an even head width (d_model / n_heads)")
        if self.attention not in ("auto", "einsum", "dot_product", "cudnn"):
            raise ConfigError(
                f"model.attention={self.attention!r}; use auto, einsum, dot_product or cudnn")
        if self.scan_unroll < 1:
            raise ConfigError(f"model.scan_unroll={self.scan_unroll}; use a layer count >= 1 "
                              "(1 = a rolled scan)")
        if self.remat not in ("none", "full", "save_dots"):
            raise ConfigError(f"model.remat={self.remat!r}; use none, full or save_dots")
        if self.parametrization not in ("sp", "mup"):
            raise ConfigError(f"model.parametrization={self.parametrization!r}; use 'sp' or 'mup'")
        if self.parametrization == "mup" and min(self.mup_base_width, self.mup_base_head_dim) < 1:
            raise ConfigError("µP needs model.mup_base_width and model.mup_base_head_dim >= 1 "
                              "(the width and head width at which it equals SP)")
        if self.depth_parametrization not in ("none", "sqrt", "complete"):
            raise ConfigError(f"model.depth_parametrization={self.depth_parametrization!r}; use "
                              "'none', 'sqrt' (branches x 1/sqrt(L)) or 'complete' (x 1/L)")
        if self.mup_base_depth < 1:
            raise ConfigError(f"model.mup_base_depth={self.mup_base_depth} must be >= 1")
        for key in ("mup_output_mult", "mup_attn_mult", "mup_init_mult"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be positive "
                                  "(a multiplier; 1 = SP's value at the base width)")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclasses.dataclass(frozen=True)
class DataConfig:
    # "shakespeare" (the embedded default), a folder of .txt files, a .jsonl / .jsonl.gz /
    # .jsonl.zst / .parquet file or a glob of them, or "tfds:NAME" (already prepared in
    # array_record under data.data_dir). README "Your own data" has the details.
    corpus: str = "shakespeare"
    data_dir: str = ""  # prepared datasets and token stores; "" = ~/.cache/scaling_lab/datasets
    text_feature: str = "text"  # JSONL field, Parquet column or TFDS feature holding the text
    bad_records: str = "fail"  # "fail" (error naming file and line) or "skip" (counted)
    validation_fraction: float = 0.1  # of documents, held out whole
    # "byte" (vocab 256), "bpe" (SentencePiece trained on the train split), or a path to an
    # existing SentencePiece .model or Hugging Face tokenizer.json
    tokenizer: str = "byte"
    bpe_vocab_size: int = 2048
    eod_token: str = ""  # end-of-document token of a tokenizer file; "" = its eos / endoftext
    store_workers: int = 0  # processes tokenizing into the token store; 0 = all cores
    # Evaluation sets, each "NAME=SOURCE" or "SOURCE"; SOURCE "validation" is the held-out
    # documents of data.corpus, anything else a corpus spec used whole. () = ("validation",).
    # The first is result.json's `loss`; every set gets eval_<NAME>_loss(_stderr).
    eval_sets: tuple = ()

    def __post_init__(self):
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(
                f"data.validation_fraction={self.validation_fraction} must lie in (0, 1)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    tokens: int = 2_000_000  # the token budget D
    batch_size: int = 32  # sequences per optimizer step (global)
    microbatches: int = 1  # gradient accumulation
    seed: int = 0
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of the peak
    schedule: str = "cosine"  # "cosine", "constant" or "wsd" (warmup-stable-decay)
    warmup_fraction: float = 0.05  # of the run's own steps
    warmup_steps: int = -1  # > 0 overrides warmup_fraction (WSD families share one warmup)
    decay_fraction: float = 0.2  # wsd: final fraction of steps spent decaying
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 200  # steps; evaluation also runs at the end
    eval_points: int = 8  # plus this many log-spaced evaluations (a loss curve; 0: none)
    eval_batches: int = 8  # batches of batch_size windows per evaluation during the run
    # Batches of the evaluation at the end of the run (the loss in result.json), for every eval
    # set; 0 = eval_batches. A larger final sample keeps the curve's evaluations cheap while
    # loss_stderr stays small. Capped at the set's disjoint windows (no window is repeated).
    final_eval_batches: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    # Warmup-stable-decay branches: extra steps checkpointed and kept forever (a parent run),
    # or the run/step a branch starts from (a child run).
    keep_steps: tuple[int, ...] = ()
    init_from: str = ""
    init_step: int = -1
    allow_config_change: bool = False  # resume a workdir whose config.json differs

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule={self.schedule!r}; use cosine, constant or wsd")
        if not self.learning_rate > 0:
            raise ConfigError(f"train.learning_rate must be positive, got {self.learning_rate}")
        for key in ("batch_size", "microbatches", "eval_batches", "log_every",
                    "checkpoint_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be positive, got {getattr(self, key)}")
        if self.final_eval_batches < 0:
            raise ConfigError(f"train.final_eval_batches={self.final_eval_batches} must be >= 0 "
                              "(0: the same as train.eval_batches)")
        if self.eval_every < 0 or self.eval_points < 0:  # 0: none of that kind (the end still is)
            raise ConfigError("train.eval_every and train.eval_points must be >= 0")
        if self.seed < 0:
            raise ConfigError(f"train.seed={self.seed} must be >= 0")
        if not 0.0 < self.decay_fraction < 1.0:
            raise ConfigError(f"train.decay_fraction={self.decay_fraction} must lie in (0, 1)")
        if self.init_from and self.init_step < 0:
            raise ConfigError(
                "train.init_from needs train.init_step (the parent's step to branch at)")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    data: int = -1  # -1 = all remaining devices
    fsdp: int = 1
    tensor: int = 1
    rules: tuple = DEFAULT_RULES

    def __post_init__(self):
        sizes = {a: getattr(self, a) for a in MESH_AXES}
        if sum(s == -1 for s in sizes.values()) > 1:
            raise ConfigError("at most one mesh axis may be -1; set the others explicitly")
        if any(s == 0 or s < -1 for s in sizes.values()):
            raise ConfigError(f"mesh sizes must be positive or -1, got {sizes}")
        # JSON turns ("data", "fsdp") into a list; the rules table wants tuples.
        object.__setattr__(self, "rules", tuple(
            (str(name), tuple(ax) if isinstance(ax, (list, tuple)) else ax)
            for name, ax in self.rules))


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """Optional tracking beside metrics.jsonl and tb/ (never part of the config hash)."""

    wandb: bool = False  # also log to Weights & Biases (pip install wandb; WANDB_MODE=offline works)
    wandb_project: str = "scaling-lab"
    wandb_entity: str = ""  # W&B team or user; "" = your default
    wandb_group: str = ""  # W&B group of the run; a sweep sets its own name when this is ""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run: what `python -m experiments.train` and each sweep child train."""

    variant: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)

    def __post_init__(self):
        per_step = self.train.batch_size * self.model.context_length
        if self.train.tokens < per_step:
            raise ConfigError(
                f"train.tokens={self.train.tokens} is less than one optimizer step ({per_step} "
                "tokens = batch_size x context_length); raise the budget or shrink the batch")

    @classmethod
    def from_configdict(cls, config) -> "RunConfig":
        """A ConfigDict (or the dict of a config.json) -> a checked RunConfig.

        Every key must be a declared field (a misspelt key fails with a suggestion); keys it
        lacks take their defaults; values are converted to the declared types."""
        if isinstance(config, cls):
            return config
        return _build(cls, config, "")

    def to_dict(self) -> dict:
        """Nested plain dict with the ConfigDict's layout (tuples stay tuples)."""
        return dataclasses.asdict(self)

    def replace(self, **sections) -> "RunConfig":
        return dataclasses.replace(self, **sections)


# ---------------------------------------------------------------- conversion with checks


def _as_dict(section, where: str) -> dict:
    if hasattr(section, "to_dict"):  # ml_collections.ConfigDict (resolves field references)
        return section.to_dict()
    if isinstance(section, Mapping):
        return dict(section)
    raise ConfigError(f"config section {where or 'root'} is a {type(section).__name__}, "
                      "not a mapping; check the config file")


def _build(cls, section, where: str):
    values = _as_dict(section, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f"did you mean {_join(where, close[0])}?" if close else \
            f"known keys: {', '.join(fields)}"
        raise ConfigError(f"unknown config key {_join(where, key)}; {hint}")
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _convert(value, hints[name], _join(where, name))
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(value: Any, hint, where: str):
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else _build(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}={value!r} must be True or False")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"{where}={value!r} must be a whole number")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}={value!r} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}={value!r} must be a string")
        return value
    if typing.get_origin(hint) is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={value!r} must be a tuple")
        args = typing.get_args(hint)
        if args and args[-1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(_tuples(v) for v in value)
    return value


def _tuples(x):
    """JSON turns nested tuples into lists; turn them back (configs must stay hashable)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x
