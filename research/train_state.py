"""The sharded train state and the jitted train and eval steps.

State is a plain pytree {"step", "params", "opt_state"}, created already sharded: its shapes
and logical axes come from `jax.eval_shape`, then a jitted init with `out_shardings` builds
each shard on its own device (no full copy on one device first).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from research import mup, optim, sharding
from research.config import ModelConfig, RunConfig
from research.model import GPT, cross_entropy


@dataclasses.dataclass
class Trainer:
    model_cfg: ModelConfig
    model: GPT
    tx: optax.GradientTransformation
    mesh: Any
    rules: Any
    total_steps: int
    state_shapes: Any  # abstract, unboxed
    state_shardings: Any
    batch_sharding: Any
    init: Callable  # rng -> state
    train_step: Callable  # (state, batch) -> (state, metrics)
    eval_step: Callable  # (params, batch) -> loss

    def activate(self):
        return sharding.activate(self.mesh, self.rules)


def _split_microbatches(batch, n):
    """[B, T] -> [n, B/n, T] with microbatch m = rows m, m+n, ...: each microbatch stays
    spread over every data-parallel device."""
    b, t = batch.shape
    micro = batch.reshape(b // n, n, t).swapaxes(0, 1)
    return nn.with_logical_constraint(micro, (None, "batch", None))


def build_trainer(config, mesh, total_steps: int) -> Trainer:
    cfg = RunConfig.from_configdict(config)
    model_cfg = cfg.model
    model = GPT(model_cfg)
    t = cfg.train
    tx = mup.with_lr_multipliers(optim.make_optimizer(t, total_steps), model_cfg)
    rules = sharding.rules_of(cfg.mesh)
    n_micro = t.microbatches

    def boxed_state(rng):
        dummy = jnp.zeros((1, model_cfg.context_length), jnp.int32)
        params = mup.rescale_init(model.init(rng, dummy)["params"], model_cfg)
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    with sharding.activate(mesh, rules):
        boxed_shapes = jax.eval_shape(boxed_state, jax.random.key(0))
        state_shardings = sharding.logical_shardings(boxed_shapes, mesh, rules)
    state_shapes = nn.meta.unbox(boxed_shapes)
    batch_sharding = sharding.batch_sharding(mesh, rules)
    replicated = sharding.replicated(mesh)

    def init(rng):
        return nn.meta.unbox(boxed_state(rng))

    def loss_fn(params, batch):
        logits, _ = model.apply({"params": params}, batch[:, :-1])
        return cross_entropy(logits, batch[:, 1:])

    grad_fn = jax.value_and_grad(loss_fn)

    def train_step(state, batch):
        params = state["params"]
        if n_micro == 1:
            loss, grads = grad_fn(params, batch)
        else:
            def accumulate(carry, micro):
                loss_sum, grad_sum = carry
                loss, grads = grad_fn(params, micro)
                return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None
            zeros = jax.tree.map(jnp.zeros_like, params)
            (loss, grads), _ = jax.lax.scan(
                accumulate, (jnp.zeros((), jnp.float32), zeros),
                _split_microbatches(batch, n_micro))
            loss, grads = loss / n_micro, jax.tree.map(lambda g: g / n_micro, grads)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates),
                     "opt_state": opt_state}
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
                   "lr": optim.learning_rate_schedule(t, total_steps)(state["step"])}
        return new_state, metrics

    with sharding.activate(mesh, rules):
        jit_init = jax.jit(init, out_shardings=state_shardings)
        jit_train = jax.jit(train_step, in_shardings=(state_shardings, batch_sharding),
                            out_shardings=(state_shardings, replicated), donate_argnums=0)
        jit_eval = jax.jit(loss_fn, in_shardings=(state_shardings["params"], batch_sharding),
                           out_shardings=replicated)

    def wrap(fn):
        def call(*args):
            with sharding.activate(mesh, rules):
                return fn(*args)
        call.jitted = fn
        return call

    return Trainer(model_cfg, model, tx, mesh, rules, total_steps, state_shapes, state_shardings,
                   batch_sharding, wrap(jit_init), wrap(jit_train), wrap(jit_eval))


def put_batch(trainer: Trainer, local_batch):
    """This process's rows of the global batch -> one global array sharded over the mesh."""
    return jax.make_array_from_process_local_data(trainer.batch_sharding, local_batch)
