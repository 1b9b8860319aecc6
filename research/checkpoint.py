"""Orbax checkpoints of the train state: async saves, keep-last-k plus pinned steps, restore
onto any mesh (the target shardings travel in the abstract state), and restore of the newest
readable step when later ones are damaged (they are moved aside as `<step>.corrupt`, never
deleted; orbax only lists directories named by a bare step number, so it ignores them)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import re
import sys

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from research import storage
from research.errors import CheckpointError

log = logging.getLogger(__name__)


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
    _quiet_orbax()
    with storage.storage_errors(checkpoint_dir(workdir)):
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


# ---------------------------------------------------------------- damaged checkpoints

# Messages of tensorstore/orbax read failures that mean "these bytes are damaged or missing";
# any other failure (a model of another shape, say) is not a damaged step and is not moved.
_DAMAGE_MARKERS = ("OUT_OF_RANGE", "DATA_LOSS", "NOT_FOUND", "Error reading", "Error decoding",
                   "error while reading")
# Without these an orbax step cannot be read (checked before restoring: a missing _METADATA
# otherwise surfaces as an unrelated "pytree structure error").
_REQUIRED_FILES = ("state/_METADATA", "state/manifest.ocdbt")


@dataclasses.dataclass
class Restored:
    state: object
    step: int
    saved_at: str  # when the step was written, "YYYY-MM-DD HH:MM:SS UTC"


def step_path(manager: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(manager.directory), str(step))


def damage_of(path: str) -> str | None:
    """Why the step directory `path` cannot be read, from its files alone; None if it looks whole."""
    for name in _REQUIRED_FILES:
        if not os.path.isfile(os.path.join(path, name)):
            return f"{name} is missing"
    try:
        with open(os.path.join(path, "state/_METADATA")) as f:
            json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        return f"state/_METADATA is not valid JSON ({e})"
    return None


_TS_STATUS = re.compile(r"^[A-Z_]{4,}: ")  # tensorstore's "OUT_OF_RANGE: ..." and the like
_TS_WHERE = re.compile(r' in OCDBT database at local file "[^"]*"')


def one_line(e: BaseException, limit: int = 200) -> str:
    """The most telling message in `e`'s chain (tensorstore's own status line, where there is
    one, rather than orbax's wrapper), on one line and cut to `limit` characters."""
    chain = list(storage.exception_chain(e))
    best = next((x for x in chain if _TS_STATUS.match(str(x))), chain[0])
    text = _TS_WHERE.sub("", " ".join(str(best).split())) or type(best).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def saved_at(path: str) -> str:
    try:
        with open(os.path.join(path, "_CHECKPOINT_METADATA")) as f:
            seconds = int(json.load(f)["commit_timestamp_nsecs"]) / 1e9
    except (OSError, ValueError, KeyError, TypeError):
        seconds = os.path.getmtime(path)
    when = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def move_aside(path: str) -> str:
    """Rename a damaged step directory to `<step>.corrupt` (or `.corrupt.N` if taken)."""
    target, n = f"{path}.corrupt", 1
    while os.path.exists(target):
        target, n = f"{path}.corrupt.{n}", n + 1
    with storage.storage_errors(path):
        os.rename(path, target)
    return target


def restore_newest(manager: ocp.CheckpointManager, abstract_state, *, move_damaged: bool,
                   warn=log.warning, read=None) -> tuple[Restored | None, list[tuple[int, str]]]:
    """Restore the newest readable step (None if there is none), and the (step, reason) of the
    damaged newer steps.

    Each damaged newer step costs one `warn` line naming the step and the reason; it is moved
    aside (`move_damaged`, for a run's own checkpoints) or just skipped (read-only use). A step
    that fails for a reason other than damage raises CheckpointError rather than being skipped.
    `read(manager, step, abstract)` restores one step (default: the whole train state)."""
    read = read or restore
    skipped = []
    for step in sorted(manager.all_steps(), reverse=True):
        path = step_path(manager, step)
        reason = damage_of(path)
        if reason is None:
            try:
                state = read(manager, step, abstract_state)
                return Restored(state, step, saved_at(path)), skipped
            except Exception as e:  # noqa: BLE001 - classified just below
                if (err := storage.as_storage_error(e, path)) is not None:
                    raise err from e
                if is_damage(e):
                    reason = one_line(e)
                else:
                    raise CheckpointError(
                        f"checkpoint step {step} in {path} does not fit this run "
                        f"({one_line(e)}); resume it with the config it was trained with") from e
        skipped.append((step, reason))
        if move_damaged:
            moved = move_aside(path)
            warn(f"warning: checkpoint step {step} is unreadable ({reason}); moved it to "
                 f"{os.path.basename(moved)}")
            manager.reload()
        else:
            warn(f"warning: checkpoint step {step} is unreadable ({reason}); skipping it")
    return None, skipped


def is_damage(e: BaseException) -> bool:
    if isinstance(e, (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError)):
        return True
    chain = storage.exception_chain(e)
    return any(marker in str(x) for x in chain for marker in _DAMAGE_MARKERS)


_QUIETED = False


def _quiet_orbax() -> None:
    """Keep orbax's own reports off the terminal; its failures reach us as exceptions, which
    become one-line errors. Dropped: orbax's absl log lines, asyncio's "Future exception was
    never retrieved" for its abandoned reads, and the "Event loop is closed" errors tensorstore
    raises when it completes a write or read for an event loop orbax already closed (they arrive
    at any later time, so the filter stays installed)."""
    global _QUIETED
    if _QUIETED:
        return
    _QUIETED = True
    logging.getLogger("absl").addFilter(
        lambda r: f"{os.sep}orbax{os.sep}" not in (r.pathname or ""))
    logging.getLogger("asyncio").addFilter(
        lambda r: not (r.getMessage().startswith("Future exception was never retrieved")
                       and "OCDBT" in r.getMessage() + str(r.exc_info and r.exc_info[1])))
    previous = sys.unraisablehook

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    sys.unraisablehook = hook


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_for_inference(workdir: str, warn=_stderr):
    """(config, params) of a run's latest checkpoint, on the first local device.

    The config (a research.config.RunConfig) comes from the run's config.json; the parameters
    alone are restored, onto a one-device mesh whatever mesh the run was trained on."""
    from research import run_dir, sharding
    from research.params import abstract_params

    cfg = run_dir.load_config(workdir)
    cfg = cfg.replace(mesh=dataclasses.replace(cfg.mesh, data=1, fsdp=1, tensor=1))
    manager = make_manager(workdir, read_only=True)
    if manager.latest_step() is None:
        raise FileNotFoundError(f"{workdir} has no checkpoint yet; train the run first")
    mesh = sharding.make_mesh(cfg.mesh, jax.local_devices()[:1])
    shapes, shardings = abstract_params(cfg.model, mesh, sharding.rules_of(cfg.mesh))
    # Read-only: a damaged newest step is skipped (with a warning), not moved aside.
    restored, _ = restore_newest(manager, abstract_like(shapes, shardings), move_damaged=False,
                                 warn=warn, read=restore_params)
    manager.close()
    if restored is None:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir(workdir)} can be read; "
                              "resume training the run to write a new one")
    return cfg, restored.state
