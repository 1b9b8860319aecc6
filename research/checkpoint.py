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


def load_for_inference(workdir: str):
    """(config, params) of a run's latest checkpoint, on the first local device.

    The config comes from the run's config.json; the state is restored with a one-device mesh,
    whatever mesh it was trained on."""
    import ml_collections

    from research import sharding, train_state
    from research.run_dir import read_json
    from research.train import steps_of

    config = ml_collections.ConfigDict(read_json(os.path.join(workdir, "config.json")))
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 1, 1
    manager = make_manager(workdir, read_only=True)
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{workdir} has no checkpoint yet; train the run first")
    mesh = sharding.make_mesh(config.mesh, jax.local_devices()[:1])
    trainer = train_state.build_trainer(config, mesh, max(steps_of(config), 1))
    state = restore(manager, step,
                    abstract_like(trainer.state_shapes, trainer.state_shardings))
    manager.close()
    return config, state["params"]
