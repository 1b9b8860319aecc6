"""Refuse configs that cannot work, before anything compiles or is written.

Checks of a config on its own live with the typed configs (research/config.py, run once when a
ConfigDict is converted); what is left here needs the device mesh or the file system.
"""

from __future__ import annotations

import os

from research.errors import ConfigError


def check_parallelism(cfg, mesh_shape: dict, dp_size: int) -> None:
    """The model and batch split evenly over the mesh (cfg: a research.config.RunConfig)."""
    m, t = cfg.model, cfg.train
    tensor = mesh_shape["tensor"]
    if m.n_heads % tensor or (m.mlp_ratio * m.d_model) % tensor:
        raise ConfigError(
            f"mesh.tensor={tensor} must divide model.n_heads={m.n_heads} and the MLP "
            "width; choose a tensor-parallel size that divides the heads")
    if m.attention == "cudnn":
        import jax
        if jax.default_backend() != "gpu" or m.compute_dtype not in ("bfloat16", "float16"):
            raise ConfigError("model.attention='cudnn' needs a GPU and model.compute_dtype "
                              "bfloat16 or float16; use auto")
    if t.batch_size % (dp_size * t.microbatches):
        raise ConfigError(
            f"train.batch_size={t.batch_size} is not divisible by data-parallel size {dp_size} "
            f"x train.microbatches={t.microbatches}; use a multiple of {dp_size * t.microbatches}")


def check_paths(cfg, checkpoint_dir) -> None:
    """A branch's parent exists (checkpoint_dir: workdir -> its checkpoints/). Corpus and
    eval-set paths are research.data.batches.check_sources's."""
    init_from = cfg.train.init_from
    if init_from and not os.path.isdir(checkpoint_dir(init_from)):
        raise ConfigError(f"train.init_from={init_from!r} has no checkpoints/ folder; "
                          "train the parent run first")
