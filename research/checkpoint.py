"""Orbax checkpoints of the train state: async saves, keep-last-k plus pinned steps, restore
onto any mesh (the target shardings travel in the abstract state)."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, t=None, *, read_only: bool = False) -> ocp.CheckpointManager:
    """Saves every `checkpoint_every` steps and at the pinned `keep_steps`; keeps the last
    `keep_checkpoints` plus the pinned steps (warmup-stable-decay branch points) forever."""
    if t is None or read_only:
        options = ocp.CheckpointManagerOptions(read_only=read_only, create=not read_only)
    else:
        keep = sorted(int(s) for s in t.keep_steps)
        save = [policies.FixedIntervalPolicy(int(t.checkpoint_every))]
        preserve = [policies.LatestN(int(t.keep_checkpoints))]
        if keep:
            save.append(policies.SpecificStepsPolicy(keep))
            preserve.append(policies.CustomSteps(keep))
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=policies.AnySavePolicy(save),
            preservation_policy=policies.AnyPreservationPolicy(preserve),
            enable_async_checkpointing=True,
        )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(manager: ocp.CheckpointManager, step: int, state, *, force: bool = False) -> bool:
    return manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                        force=force)


def abstract_like(state_shapes, shardings):
    """ShapeDtypeStructs carrying the target shardings: restore lands directly on the mesh."""
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state_shapes, shardings)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state):
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"]


def restore_params(manager: ocp.CheckpointManager, step: int, abstract_params):
    """Only the parameters of a saved train state (no optimizer state is read or built)."""
    target = {"params": abstract_params}
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)))
    return restored["state"]["params"]


def load_for_inference(workdir: str):
    """(config, params) of a run's latest checkpoint, on the first local device.

    The config (a research.config.RunConfig) comes from the run's config.json; the parameters
    alone are restored, onto a one-device mesh whatever mesh the run was trained on."""
    import dataclasses

    from research import run_dir, sharding
    from research.params import abstract_params

    cfg = run_dir.load_config(workdir)
    cfg = cfg.replace(mesh=dataclasses.replace(cfg.mesh, data=1, fsdp=1, tensor=1))
    manager = make_manager(workdir, read_only=True)
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{workdir} has no checkpoint yet; train the run first")
    mesh = sharding.make_mesh(cfg.mesh, jax.local_devices()[:1])
    shapes, shardings = abstract_params(cfg.model, mesh, sharding.rules_of(cfg.mesh))
    params = restore_params(manager, step, abstract_like(shapes, shardings))
    manager.close()
    return cfg, params
