"""A small sharded training loop shared by SFT, the reward model and DPO.

Parameters are placed with the model's logical shardings on the stage's mesh (the same rules
table as pretraining), batches are split over the data-parallel axes, and the step is one jit
with explicit in/out shardings. A batch is a pure function of (seed, step), and the state
{"step", "params", "opt_state"} is checkpointed with orbax, so a stage resumes exactly where it
stopped. A frozen tree (DPO's reference policy) rides along, never updated.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from research import checkpoint, sharding
from research.params import abstract_params


@dataclasses.dataclass(frozen=True)
class StageConfig:
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10

    @classmethod
    def from_config(cls, c) -> "StageConfig":
        """From a config section holding these keys (others, such as a data path, are ignored)."""
        return cls(**{f.name: c[f.name] for f in dataclasses.fields(cls) if f.name in c})


def batch_axes_sharding(mesh, rules) -> NamedSharding:
    """Leading (row) dimension over the data-parallel axes, the rest replicated."""
    spec = sharding.batch_sharding(mesh, rules).spec
    return NamedSharding(mesh, P(spec[0]))


def gpt_shardings(model_cfg, mesh, rules):
    """NamedShardings of GPT(model_cfg)'s parameters on `mesh` (the pretraining rules)."""
    return abstract_params(model_cfg, mesh, rules)[1]


def place(tree, shardings):
    """A fresh copy of `tree` on `shardings` (a copy: the train step donates its state, and the
    caller's arrays, e.g. the SFT policy that DPO starts from, must survive it)."""
    return jax.tree.map(lambda x, s: jax.device_put(np.array(jax.device_get(x)), s),
                        tree, shardings)


def pick_rows(n_rows: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The rows of one batch: a pure function of (seed, step), without replacement."""
    rng = np.random.default_rng([seed, step])
    return rng.choice(n_rows, batch_size, replace=n_rows < batch_size)


def optimizer(c: StageConfig, lr_multipliers=None):
    """AdamW with linear warmup to a constant LR; `lr_multipliers` (a pytree of floats shaped
    like the parameters, or None) scales each parameter's update, e.g. a fresh head's."""
    schedule = optax.linear_schedule(0.0, c.learning_rate, max(c.warmup_steps, 1))
    parts = [optax.clip_by_global_norm(c.grad_clip),
             optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=c.weight_decay)]
    if lr_multipliers is not None:
        parts.append(_scale_each(lr_multipliers))
    return optax.chain(*parts)


def _scale_each(multipliers) -> optax.GradientTransformation:
    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, m: u * m, updates, multipliers), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def train(workdir: str, c: StageConfig, params, param_shardings, loss_fn, rows: dict, mesh,
          rules, *, frozen=None, frozen_shardings=None, lr_multipliers=None, say=print):
    """Run `c.steps` steps of `loss_fn(params, frozen, batch) -> (loss, metrics)` over `rows`
    (dict of arrays with one leading row dimension); resumes from the newest checkpoint in
    `workdir`. Returns the trained parameters; metrics go to workdir/metrics.jsonl."""
    os.makedirs(workdir, exist_ok=True)
    tx = optimizer(c, lr_multipliers)
    rep = sharding.replicated(mesh)
    row_sharding = batch_axes_sharding(mesh, rules)
    n_rows = len(next(iter(rows.values())))
    with sharding.activate(mesh, rules):
        params = place(params, param_shardings)
        opt_state = jax.jit(tx.init)(params)
    state = {"step": jax.device_put(jnp.zeros((), jnp.int32), rep), "params": params,
             "opt_state": opt_state}
    state_shardings = jax.tree.map(lambda x: x.sharding, state)
    manager = checkpoint.make_manager(workdir, types.SimpleNamespace(
        checkpoint_every=c.checkpoint_every, keep_steps=(), keep_checkpoints=1))
    abstract = checkpoint.abstract_like(jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        x.shape, x.dtype), state), state_shardings)
    restored, _ = checkpoint.restore_newest(manager, abstract, move_damaged=True, warn=say)
    start = 0
    if restored is not None:
        state, start = restored.state, restored.step
        say(f"{os.path.basename(workdir)}: resumed from step {start}")
    if frozen is not None:
        frozen = place(frozen, frozen_shardings)

    batch_shardings = {k: row_sharding for k in rows}
    jitted = _train_step(loss_fn, _optimizer_key(c), _leaves_key(lr_multipliers), lr_multipliers,
                         mesh, rules, _leaves_key(state_shardings, True),
                         _leaves_key(frozen_shardings, True), _leaves_key(batch_shardings, True),
                         (state_shardings, frozen_shardings, batch_shardings))
    log_path = os.path.join(workdir, "metrics.jsonl")
    try:
        for step in range(start, c.steps):
            index = pick_rows(n_rows, c.batch_size, c.seed, step)
            batch = {k: jax.device_put(v[index], row_sharding) for k, v in rows.items()}
            with sharding.activate(mesh, rules):
                state, metrics = jitted(state, frozen, batch)
            done = step + 1
            if done % c.log_every == 0 or done == c.steps:
                row = {"step": done, **{k: float(v) for k, v in jax.device_get(metrics).items()}}
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            checkpoint.save(manager, done, state, force=done == c.steps)
        manager.wait_until_finished()
    finally:
        manager.close()
    return state["params"]


_STEPS = {}


def _optimizer_key(c: StageConfig):
    return (c.learning_rate, c.warmup_steps, c.weight_decay, c.grad_clip)


def _leaves_key(tree, with_structure=False):
    if tree is None:
        return None
    leaves, structure = jax.tree.flatten(tree)
    return (tuple(leaves), structure) if with_structure else (tuple(leaves), str(structure))


def _train_step(loss_fn, opt_key, mult_key, lr_multipliers, mesh, rules, *key_and_shardings):
    """The jitted train step of (loss, optimizer, shardings), built once per process: stages
    that differ only in data or in the values in `frozen` (DPO's beta, say) share its
    compilations."""
    *shape_key, (state_shardings, frozen_shardings, batch_shardings) = key_and_shardings
    key = (loss_fn, opt_key, mult_key, mesh, rules, *shape_key)
    if key in _STEPS:
        return _STEPS[key]
    lr, warmup, weight_decay, grad_clip = opt_key
    tx = optimizer(StageConfig(steps=1, batch_size=1, learning_rate=lr, warmup_steps=warmup,
                               weight_decay=weight_decay, grad_clip=grad_clip), lr_multipliers)

    def step_fn(state, frozen, batch):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], frozen, batch)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
               "opt_state": opt_state}
        return new, {"loss": loss, **metrics}

    with sharding.activate(mesh, rules):
        _STEPS[key] = jax.jit(step_fn, in_shardings=(state_shardings, frozen_shardings,
                                                     batch_shardings),
                              out_shardings=(state_shardings, sharding.replicated(mesh)),
                              donate_argnums=0)
    return _STEPS[key]


def load_final(workdir: str, params_like, param_shardings):
    """The parameters of a finished stage (its newest checkpoint), on `param_shardings`."""
    manager = checkpoint.make_manager(workdir, read_only=True)
    try:
        abstract = checkpoint.abstract_like(jax.tree.map(lambda x: jax.ShapeDtypeStruct(
            np.shape(x), np.asarray(x).dtype if not isinstance(x, jax.Array) else x.dtype),
            params_like), param_shardings)
        return checkpoint.restore_params(manager, manager.latest_step(), abstract)
    finally:
        manager.close()


_JITTED = {}


def _jitted(fn):
    """One jit per function object, so repeated calls reuse its compilations."""
    if fn not in _JITTED:
        _JITTED[fn] = jax.jit(fn)
    return _JITTED[fn]


def _dp(mesh, rules) -> int:
    return sharding.data_parallel_size(mesh, rules)


def apply_in_chunks(fn, params, rows: dict, chunk: int, mesh, rules, frozen=None):
    """fn(params, frozen, batch) -> [rows] arrays, over all rows in chunks of `chunk` (the last
    padded by repeating row 0, so one compilation serves all); outputs concatenated, on host."""
    n = len(next(iter(rows.values())))
    chunk = min(chunk, -(-n // _dp(mesh, rules)) * _dp(mesh, rules))  # no padding past one chunk
    row_sharding = batch_axes_sharding(mesh, rules)
    jitted = _jitted(fn)
    outs = []
    for start in range(0, n, chunk):
        index = np.arange(start, start + chunk)
        index[index >= n] = 0
        batch = {k: jax.device_put(v[index], row_sharding) for k, v in rows.items()}
        with sharding.activate(mesh, rules):
            outs.append(jax.device_get(jitted(params, frozen, batch)))
    out = jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outs)
    return out
