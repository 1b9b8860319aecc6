"""The model's parameters on a mesh, abstractly: shapes, dtypes and target shardings, computed
with `jax.eval_shape` (nothing is allocated). Restoring parameters needs this and no optimizer."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from research import sharding
from research.config import ModelConfig
from research.model import GPT


def abstract_params(model_cfg: ModelConfig, mesh, rules):
    """(unboxed ShapeDtypeStructs, NamedShardings) of GPT(model_cfg)'s parameters."""
    model = GPT(model_cfg)

    def boxed_params(rng):
        return model.init(rng, jnp.zeros((1, model_cfg.context_length), jnp.int32))["params"]

    with sharding.activate(mesh, rules):
        boxed = jax.eval_shape(boxed_params, jax.random.key(0))
        shardings = sharding.logical_shardings(boxed, mesh, rules)
    return nn.meta.unbox(boxed), shardings
