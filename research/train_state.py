"""The sharded train state and the jitted train and eval steps.

State is a plain pytree {"step", "params", "opt_state"}, created already sharded: its shapes
and logical axes come from `jax.eval_shape`, then a jitted init with `out_shardings` builds
each shard on its own device (no full copy on one device first).

The learning-rate schedule's numbers are traced inputs of the train step (optim.schedule_inputs),
so the jitted functions depend only on the run's shape (`StepKey`): they are built once per
shape in a process and reused by every later run of that shape (a long-lived sweep worker
compiles each shape once), and across processes their HLO is identical, so JAX's persistent
compilation cache serves them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from research import mup, optim, sharding
from research.config import ModelConfig, RunConfig
from research.model import GPT, cross_entropy, token_losses


@dataclasses.dataclass
class Trainer:
    model_cfg: ModelConfig
    model: GPT
    mesh: Any
    rules: Any
    total_steps: int
    state_shapes: Any  # abstract, unboxed
    state_shardings: Any
    batch_sharding: Any
    init: Callable  # rng -> state
    train_step: Callable  # (state, batch) -> (state, metrics); this run's schedule supplied
    # (params, batch [B, T+1] sharded as batch_sharding) -> the batch's mean loss
    eval_loss: Callable
    schedule: dict = dataclasses.field(default_factory=dict)  # optim.schedule_inputs of this run
    # Batch shape (B, T+1) -> eval_loss compiled ahead of time for it (research/train.py);
    # shared by every run of this shape in the process.
    eval_compiled: dict = dataclasses.field(default_factory=dict)

    def activate(self):
        return sharding.activate(self.mesh, self.rules)


@dataclasses.dataclass(frozen=True)
class StepKey:
    """Everything the compiled functions depend on; runs with equal keys share them."""
    model_cfg: ModelConfig
    mesh: Any
    rules: Any
    microbatches: int
    schedule: str
    grad_clip: float
    b1: float
    b2: float
    weight_decay: float


@dataclasses.dataclass(frozen=True)
class _Steps:
    model: GPT
    state_shapes: Any
    state_shardings: Any
    batch_sharding: Any
    init: Callable
    train_step: Callable  # (state, batch, schedule_inputs)
    eval_loss: Callable
    eval_compiled: dict = dataclasses.field(default_factory=dict)


def _split_microbatches(batch, n):
    """[B, T] -> [n, B/n, T] with microbatch m = rows m, m+n, ...: each microbatch stays
    spread over every data-parallel device."""
    b, t = batch.shape
    micro = batch.reshape(b // n, n, t).swapaxes(0, 1)
    return nn.with_logical_constraint(micro, (None, "batch", None))


def optimizer(model_cfg: ModelConfig, hparams, schedule) -> optax.GradientTransformation:
    """The run's optimizer: AdamW with clipping (`hparams`: grad_clip, b1, b2, weight_decay),
    the learning rate `schedule`, and µP's per-parameter LR and decay (1 under SP)."""
    return mup.with_lr_multipliers(optim.optimizer_with_schedule(
        hparams, schedule, mup.weight_decay_scale(model_cfg)), model_cfg)


def step_key(cfg: RunConfig, mesh) -> StepKey:
    t = cfg.train
    return StepKey(cfg.model, mesh, sharding.rules_of(cfg.mesh), t.microbatches, t.schedule,
                   t.grad_clip, t.b1, t.b2, t.weight_decay)


def _loss_and_grads(grad_fn, params, batch, n_micro: int):
    """Mean loss and gradients over the batch; with n_micro > 1, accumulated over that many
    microbatches in a scan (one microbatch's activations in memory at a time)."""
    if n_micro == 1:
        return grad_fn(params, batch)

    def accumulate(carry, micro):
        loss_sum, grad_sum = carry
        loss, grads = grad_fn(params, micro)
        return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None
    zeros = jax.tree.map(jnp.zeros_like, params)
    (loss, grads), _ = jax.lax.scan(
        accumulate, (jnp.zeros((), jnp.float32), zeros), _split_microbatches(batch, n_micro))
    return loss / n_micro, jax.tree.map(lambda g: g / n_micro, grads)


@functools.lru_cache(maxsize=16)
def _build_steps(key: StepKey) -> _Steps:
    """The jitted init, train and eval functions of one shape (built from `key` alone)."""
    model_cfg, mesh, rules, n_micro = key.model_cfg, key.mesh, key.rules, key.microbatches
    model = GPT(model_cfg)

    def make_tx(schedule):
        return optimizer(model_cfg, key, schedule)

    tx = make_tx(lambda step: 0.0)  # the state's structure only; no schedule is baked in

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

    # One batch per call, the training batch's shape: on CPU a forward pass over many batches
    # at once was slower per token (its activations leave the caches), not faster. The loss of
    # each window [B]: the final evaluation reads the curve's windows among its own.
    def eval_loss(params, batch):
        logits, _ = model.apply({"params": params}, batch[:, :-1])
        return jnp.mean(token_losses(logits, batch[:, 1:]), axis=1)

    def train_step(state, batch, sched):
        params = state["params"]
        loss, grads = _loss_and_grads(grad_fn, params, batch, n_micro)
        schedule = functools.partial(optim.lr_at, key.schedule, s=sched)
        updates, opt_state = make_tx(schedule).update(grads, state["opt_state"], params)
        new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates),
                     "opt_state": opt_state}
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
                   "lr": schedule(state["step"])}
        return new_state, metrics

    with sharding.activate(mesh, rules):
        jit_init = jax.jit(init, out_shardings=state_shardings)
        jit_train = jax.jit(train_step, in_shardings=(state_shardings, batch_sharding, replicated),
                            out_shardings=(state_shardings, replicated), donate_argnums=0)
        jit_eval = jax.jit(eval_loss, in_shardings=(state_shardings["params"], batch_sharding),
                           out_shardings=replicated)
    return _Steps(model, state_shapes, state_shardings, batch_sharding, jit_init, jit_train,
                  jit_eval)


def build_trainer(cfg: RunConfig, mesh, total_steps: int) -> Trainer:
    key = step_key(cfg, mesh)
    steps = _build_steps(key)
    schedule = optim.schedule_inputs(cfg.train, total_steps)

    def wrap(fn, *bound):
        def call(*args):
            with sharding.activate(mesh, key.rules):
                return fn(*args, *bound)
        call.jitted = fn
        return call

    return Trainer(key.model_cfg, steps.model, mesh, key.rules, total_steps, steps.state_shapes, steps.state_shardings,
                   steps.batch_sharding, wrap(steps.init), wrap(steps.train_step, schedule),
                   wrap(steps.eval_loss), schedule, steps.eval_compiled)


def put_batch(trainer: Trainer, local_batch):
    """This process's rows of the global batch -> one global array sharded over the mesh."""
    return jax.make_array_from_process_local_data(trainer.batch_sharding, local_batch)
