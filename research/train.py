"""Train (or resume) one run in a workdir: the loop, evaluation, checkpoints and result.json."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import sys
import time

import jax
import numpy as np

from common import files
from research import checkpoint, compile_cache, config_checks, evals
from research.data import batches as data_lib
from research import flops, lr_areas, provenance, run_dir, run_math, sharding, storage, timing
from research.data import tokenizer as tokenizer_lib
from research.config import RunConfig
from research.errors import CheckpointError, ConfigError
from research.metrics import MetricsWriter, progress as progress_output, wandb_settings
from research.train_state import build_trainer, put_batch

log = logging.getLogger(__name__)


def validate(cfg: RunConfig, n_devices: int | None = None):
    """All config errors, before any data loading, compilation or write. Returns the mesh
    (over the first `n_devices` devices: a sweep checks the share one run will get)."""
    mesh = sharding.make_mesh(cfg.mesh, None if n_devices is None else jax.devices()[:n_devices])
    rules = sharding.rules_of(cfg.mesh)
    config_checks.check_parallelism(cfg, dict(mesh.shape), sharding.data_parallel_size(mesh, rules))
    config_checks.check_paths(cfg, checkpoint.checkpoint_dir)
    data_lib.check_sources(cfg.data)  # a missing file, folder or glob fails before any write
    return mesh


def window_losses(trainer, params, batches) -> np.ndarray:
    """The loss of every window of the fixed evaluation batches (already on the devices, see
    `_eval_batches`), [batches, batch_size]. Every batch is dispatched before any result is
    read, so the device never waits for the host."""
    return np.asarray(jax.device_get(
        [trainer.eval_compiled.get(b.shape, trainer.eval_loss)(params, b) for b in batches]),
        np.float64)


def batch_statistics(window_losses_NB) -> tuple[float, float]:
    """Mean loss and its standard error over the batch means."""
    means = window_losses_NB.mean(axis=1)
    stderr = float(means.std(ddof=1) / math.sqrt(len(means))) if len(means) > 1 else float("nan")
    return float(means.mean()), stderr


def evaluate(trainer, params, batches) -> tuple[float, float]:
    """Mean validation loss over the fixed evaluation batches and its standard error."""
    return batch_statistics(window_losses(trainer, params, batches))


def _initial_state(trainer, cfg: RunConfig, manager, *, resuming: bool, writer: bool, say):
    """Newest readable checkpoint of this run (damaged newer ones moved aside), else the branch
    point of its parent, else fresh init. Returns (state, start step, what happened)."""
    abstract = checkpoint.abstract_like(trainer.state_shapes, trainer.state_shardings)
    restored, skipped = checkpoint.restore_newest(
        manager, abstract, move_damaged=writer, warn=say)
    skipped = [step for step, _ in skipped]
    if restored is not None:
        say(f"resumed from step {restored.step} (checkpoint of {restored.saved_at})")
        return restored.state, restored.step, {
            "from_step": restored.step, "checkpoint_time": restored.saved_at, "skipped": skipped}
    t = cfg.train
    if t.init_from:
        state, step = _branch_point(t, abstract)
        if resuming:
            say(f"no usable checkpoint; starting from step {step} of {t.init_from}")
        return state, step, {"from_step": step, "branched_from": t.init_from, "skipped": skipped}
    if resuming:
        say("no usable checkpoint; starting from step 0")
    return trainer.init(jax.random.key(t.seed)), 0, {"from_step": 0, "skipped": skipped}


def _branch_point(t, abstract):
    """The parent's checkpoint at init_step: a branch has no other step to fall back to."""
    parent = checkpoint.make_manager(t.init_from, read_only=True)
    try:
        if t.init_step not in parent.all_steps():
            raise ConfigError(f"{t.init_from} has no checkpoint at step {t.init_step} (has "
                              f"{sorted(parent.all_steps())}); add it to the parent's keep_steps")
        path = checkpoint.step_path(parent, t.init_step)
        damage = checkpoint.damage_of(path)
        if damage is None:
            try:
                return checkpoint.restore(parent, t.init_step, abstract), t.init_step
            except Exception as e:  # noqa: BLE001 - only damage is reported as such
                if not checkpoint.is_damage(e):
                    raise
                damage = checkpoint.one_line(e)
        raise CheckpointError(
            f"the branch point of this run, checkpoint step {t.init_step} of {t.init_from}, is "
            f"unreadable ({damage}); train the parent run again to rewrite it")
    finally:
        parent.close()


def train(cfg: RunConfig, workdir: str, *, progress: bool = True, on_start=None) -> dict:
    """Train the run `cfg` in `workdir`,
    resuming if it holds one; returns result.json.

    `on_start(info)`, if given, learns where training starts before the first step:
    {"from_step", "checkpoint_time" (when resumed), "skipped" (damaged steps moved aside),
    "branched_from" (a WSD branch)}. A full, read-only or forbidden disk raises StorageError;
    whatever was written before it stays whole (config and result are written atomically,
    checkpoints are only listed once orbax has finished them)."""
    with storage.storage_errors(workdir), contextlib.ExitStack() as cleanup:
        return _train(cfg, workdir, progress, on_start, cleanup)


def _say(message: str) -> None:
    """Where training starts from is printed (on stderr, like the progress bar), not only
    logged: it decides what the run's numbers mean."""
    log.info(message)
    print(message, file=sys.stderr, flush=True)


def _load_data(cfg: RunConfig, workdir: str, progress: bool):
    """Corpus and tokenizer, checked before anything is written to the workdir: the run's own
    copy of its tokenizer is read if there is one, and otherwise saved only by `_save_tokenizer`."""
    own_copy = tokenizer_lib.run_copy(workdir, cfg.data.tokenizer).is_file()
    return data_lib.load_token_data(cfg.data, workdir if own_copy else None,
                                    vocab_size=cfg.model.vocab_size, progress=progress)


def _save_tokenizer(cfg: RunConfig, data, workdir: str) -> None:
    """Sampling reads the run's tokenizer (trained BPE, or a copy of its file) from the workdir."""
    if cfg.data.tokenizer == "byte":
        return
    copy = tokenizer_lib.run_copy(workdir, cfg.data.tokenizer)
    if not copy.is_file():
        data.tokenizer.save(copy)


def _close_manager(manager, exc_type, exc, tb) -> None:
    """Let in-flight saves finish (a crash keeps its newest checkpoint); while another error
    is already on its way up, a second one from orbax adds nothing and is dropped."""
    try:
        manager.wait_until_finished()
        manager.close()
    except Exception:  # noqa: BLE001
        if exc_type is None:
            raise


@dataclasses.dataclass
class _Run:
    """What the training loop and the final evaluation share, once the run is set up."""
    cfg: RunConfig
    data: object
    trainer: object
    manager: object
    writer: MetricsWriter
    bar: object
    timer: timing.PhaseTimer
    eval_sets: dict
    total_steps: int
    start: int
    tokens_per_step: int
    eval_row: object  # (losses, step, curve=None) -> a metrics row of eval/ values


def _train(cfg: RunConfig, workdir: str, progress: bool, on_start, cleanup) -> dict:
    t, m = cfg.train, cfg.model
    timer = timing.PhaseTimer()
    mesh = validate(cfg)
    compile_cache.enable()
    total_steps = run_math.steps(cfg)
    is_writer = jax.process_index() == 0
    # Reads only, until the config, corpus and tokenizer are known to be good; a finished run
    # (even on read-only storage) is returned as it is.
    run_dir.check_workdir(workdir, cfg)
    done = run_dir.finished_result(workdir)
    if done is not None:
        return done
    with timer.phase("data_s"):
        data = _load_data(cfg, workdir, progress and is_writer)
    trainer, manager, state, start = _open_run(cfg, workdir, data, mesh, total_steps, timer,
                                               cleanup, on_start)
    with timer.phase("data_s"):
        # The same fixed windows at every evaluation along the run (points of one curve are
        # comparable); built and put on the devices once.
        eval_sets = _eval_batches(data, t, m, t.eval_batches, trainer)
        final_n, capacity, final_units = _final_eval_units(data, t, m)
    with timer.phase("compile_s"):
        _compile_evals(trainer, state["params"], t, m)
    writer = MetricsWriter(workdir, is_writer, config=cfg, wandb=wandb_settings(cfg))
    cleanup.callback(writer.close)
    tokens_per_step = run_math.tokens_per_step(t, m)
    # Each eval row carries tokens, FLOPs, and the LR and its areas at its step.
    eval_row = functools.partial(_eval_metrics, tokens_per_step=tokens_per_step,
                                 flops_per_token=flops.train_flops_per_token(m),
                                 trace=lr_areas.ScheduleTrace(t, total_steps))
    bar = _progress_bar(progress and is_writer, start, total_steps)
    cleanup.callback(bar.close)  # an error then starts on a line of its own
    run = _Run(cfg, data, trainer, manager, writer, bar, timer, eval_sets, total_steps, start,
               tokens_per_step, eval_row)
    started_wall = time.time()
    state, status, prev = _loop(run, state, started_wall)
    bar.close()

    if status == "done":
        losses = _final_evaluation(run, state, final_n, final_units)
    else:
        losses = {name: (float("nan"), float("nan")) for name in eval_sets}
        log.error("loss is NaN/Inf at step %d: run diverged (lower train.learning_rate)", prev[0] + 1)
    with timer.phase("checkpoint_s"):
        manager.wait_until_finished()

    result = _result(cfg, workdir, data, status, losses, time.time() - started_wall,
                     steps_done=total_steps if status == "done" else prev[0] + 1)
    result.update(evals.result_fields(final_units, final_n, t.batch_size, m.context_length,
                                      len(data.train), capacity))
    result["timing"] = timer.summary()
    if is_writer:
        files.write_json(os.path.join(workdir, "result.json"), result)
    return result


def _open_run(cfg: RunConfig, workdir: str, data, mesh, total_steps, timer, cleanup, on_start):
    """Claim the workdir, build the trainer and restore (or initialise) the state.
    Returns (trainer, checkpoint manager, state, start step)."""
    is_writer = jax.process_index() == 0
    resuming = os.path.exists(os.path.join(workdir, "config.json"))  # an earlier attempt
    os.makedirs(workdir, exist_ok=True)
    if is_writer:
        run_dir.claim_workdir(workdir, cfg)
        _save_tokenizer(cfg, data, workdir)
    with timer.phase("compile_s"):
        trainer = build_trainer(cfg, mesh, total_steps)
    with timer.phase("checkpoint_s"):
        manager = checkpoint.make_manager(workdir, cfg.train)
        cleanup.push(lambda *exc: _close_manager(manager, *exc))
        state, start, info = _initial_state(trainer, cfg, manager, resuming=resuming,
                                            writer=is_writer, say=_say)
    if is_writer:
        run_dir.cut_metrics(workdir, start)  # rows of an aborted attempt past the resumed step
    if on_start is not None:
        on_start(info)
    return trainer, manager, state, start


def _final_eval_units(data, t, m):
    """The end-of-run evaluation (result.json's losses) may be larger than the curve's; checked
    now, built at the end so its batches are not held in memory through training.
    Returns (batches asked for, capacity per set, batches used per set)."""
    final_n = evals.final_batches(t)
    capacity = {name: data_lib.eval_capacity(data, t.batch_size, m.context_length, name)
                for name in data.eval_sets}
    final_units = {name: min(final_n, c) for name, c in capacity.items()}
    for name, c in capacity.items():
        if c < final_n:
            _say(f"the {name} eval set holds {c} batches of {t.batch_size} disjoint windows of "
                 f"{m.context_length + 1} tokens; the final evaluation uses {c}, not "
                 f"{final_n} (train.final_eval_batches), and result.json says so")
    return final_n, capacity, final_units


def _loop(run: _Run, state, t0: float):
    """The training steps from run.start, with the curve's evaluations and the checkpoints.
    Returns (state, "done" or "diverged", (last step checked, its metrics))."""
    t, m, timer, total_steps = run.cfg.train, run.cfg.model, run.timer, run.total_steps
    # Log-spaced evaluations besides the regular ones.
    eval_at = evals.eval_steps(total_steps, t.eval_points, t.eval_every)
    status, prev = "done", None
    loop_t0, before_loop = time.perf_counter(), sum(timer.seconds.values())

    def check(prev_step, metrics):
        """Metrics of the previous step, read one step late so the device never waits."""
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            return False
        if (prev_step + 1) % t.log_every == 0 or prev_step + 1 == total_steps:
            rate = run.tokens_per_step * (prev_step + 1 - run.start) / max(time.time() - t0, 1e-9)
            run.writer.write(prev_step + 1, {
                "train/loss": loss, "train/grad_norm": metrics["grad_norm"],
                "train/lr": metrics["lr"], "train/tokens_per_s": rate})
            run.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}")
        return True

    for step in range(run.start, total_steps):
        batch = data_lib.train_batch(
            run.data, step=step, batch_size=t.batch_size, context_length=m.context_length,
            seed=t.seed, process_index=jax.process_index(), process_count=jax.process_count())
        if step == run.start:  # the first step compiles (or loads from the cache): a fixed cost
            with timer.phase("compile_s"):
                state, metrics = run.trainer.train_step(state, put_batch(run.trainer, batch))
                jax.block_until_ready(metrics)
        else:
            state, metrics = run.trainer.train_step(state, put_batch(run.trainer, batch))
        if prev is not None and not check(*prev):
            status = "diverged"
            break
        prev = (step, metrics)
        run.bar.update(1)
        done_steps = step + 1
        if done_steps in eval_at and done_steps < total_steps:
            jax.block_until_ready(state)  # the pending step is training time, not eval time
            with timer.phase("eval_s"):
                losses = evaluate_sets(run.trainer, state["params"], run.eval_sets)
            run.writer.write(done_steps, run.eval_row(losses, done_steps))
        if run.manager.should_save(done_steps):
            jax.block_until_ready(state)
        with timer.phase("checkpoint_s"):
            checkpoint.save(run.manager, done_steps, state)
    jax.block_until_ready(state)
    timer.add("train_s", time.perf_counter() - loop_t0 - (sum(timer.seconds.values()) - before_loop))
    if status == "done" and prev is not None and not check(*prev):
        status = "diverged"
    return state, status, prev


def _final_evaluation(run: _Run, state, final_n, final_units) -> dict:
    """The last checkpoint and the end-of-run evaluation (result.json's losses), written as
    the curve's last row. Returns {name: (loss, stderr)}."""
    t, m, timer, total_steps = run.cfg.train, run.cfg.model, run.timer, run.total_steps
    with timer.phase("checkpoint_s"):
        checkpoint.save(run.manager, total_steps, state,
                        force=total_steps not in run.manager.all_steps())
        # Written before the evaluation starts: the save's background writes would otherwise
        # share the cores with it.
        run.manager.wait_until_finished()
    with timer.phase("data_s"):
        final_sets = run.eval_sets if final_n == t.eval_batches else \
            _eval_batches(run.data, t, m, final_units, run.trainer)
    with timer.phase("final_eval_s"):
        losses, curve = _final_losses(run.trainer, state["params"], run.eval_sets, final_sets)
    run.writer.write(total_steps, run.eval_row(losses, total_steps, curve=curve))
    return losses


def _final_losses(trainer, params, eval_sets, final_sets) -> tuple[dict, tuple | None]:
    """{name: (loss, stderr)} on the final evaluation's windows, and the first set's loss on
    the curve's own windows (None when they are the same). The curve's windows are usually
    among the final ones (data_lib.window_subset), so they cost no forward pass of their own."""
    if final_sets is eval_sets:
        return evaluate_sets(trainer, params, final_sets), None
    rows = {name: window_losses(trainer, params, batches) for name, batches in final_sets.items()}
    name, curve_batches = next(iter(eval_sets.items()))
    batch_size = rows[name].shape[1]
    subset = data_lib.window_subset(len(curve_batches) * batch_size, rows[name].size)
    curve = evaluate(trainer, params, curve_batches) if subset is None else \
        batch_statistics(rows[name].reshape(-1)[subset].reshape(-1, batch_size))
    return {name: batch_statistics(r) for name, r in rows.items()}, curve


def _compile_evals(trainer, params, t, m) -> None:
    """Compile the evaluation ahead of time: the compilation is then a fixed cost (compile_s),
    not part of the evaluations."""
    shape = (t.batch_size, m.context_length + 1)
    if shape not in trainer.eval_compiled:
        with trainer.activate():
            batch = jax.ShapeDtypeStruct(shape, np.int32, sharding=trainer.batch_sharding)
            trainer.eval_compiled[shape] = trainer.eval_loss.jitted.lower(params, batch).compile()


def _eval_batches(data, t, m, n_batches, trainer) -> dict:
    """{name: fixed eval batches on the devices} for every evaluation set (data.eval_sets
    order); `n_batches` is one count for all, or one per set."""
    return {name: [put_batch(trainer, b) for b in data_lib.eval_batches(
                data, n_batches=n_batches[name] if isinstance(n_batches, dict) else n_batches,
                batch_size=t.batch_size, context_length=m.context_length, eval_set=name,
                process_index=jax.process_index(), process_count=jax.process_count())]
            for name in data.eval_sets}


def evaluate_sets(trainer, params, eval_sets) -> dict:
    """{name: (loss, stderr)} for every evaluation set (data.eval_sets order)."""
    return {name: evaluate(trainer, params, batches) for name, batches in eval_sets.items()}


def _eval_metrics(losses, step, tokens_per_step, flops_per_token, trace, curve=None) -> dict:
    """The first set is eval/loss (as before), every other set eval/<name>/loss; the row
    carries the step's tokens, FLOPs, LR and LR areas so a loss curve needs no other file.
    `curve`: the first set's loss on the curve's windows when `losses` used others (the end)."""
    (first_loss, first_err), *_ = losses.values()
    out = evals.eval_row(first_loss, first_err, step, tokens_per_step, flops_per_token,
                         curve=curve, schedule=trace.row(step))
    for name, (loss, err) in list(losses.items())[1:]:
        out.update({f"eval/{name}/loss": loss, f"eval/{name}/loss_stderr": err})
    return out


def _bits_per_byte(loss, bytes_per_token):
    return loss / math.log(2) / bytes_per_token if math.isfinite(loss) else float("nan")


def _result(cfg: RunConfig, workdir, data, status, losses, wall_s, steps_done) -> dict:
    m, t = cfg.model, cfg.train
    tokens = run_math.tokens_trained(cfg, steps_done)
    counts = flops.param_counts(m)
    first = next(iter(losses))
    loss, err = losses[first]
    bpt = data_lib.bytes_per_token(data, first)
    per_set = {}  # eval_<name>_loss, _loss_stderr, _bits_per_byte for every set
    for name, (set_loss, set_err) in losses.items():
        per_set.update({
            f"eval_{name}_loss": set_loss, f"eval_{name}_loss_stderr": set_err,
            f"eval_{name}_bits_per_byte": _bits_per_byte(
                set_loss, data_lib.bytes_per_token(data, name))})
    result = {
        "run": os.path.basename(os.path.abspath(workdir)),
        "variant": cfg.variant,
        **counts,
        "tokens": tokens,
        "flops": flops.run_flops(m, tokens),
        "flops_per_token": flops.train_flops_per_token(m),
        "loss": loss,
        "loss_stderr": err,
        "bits_per_byte": _bits_per_byte(loss, bpt),
        **per_set,
        "eval_sets": {name: data.eval_info[name]["source"] for name in losses},
        "status": status,
        "seed": t.seed,
        "wall_s": round(wall_s, 3),
        "steps": steps_done,
        "epochs": data_lib.epochs_seen(data, tokens, m.context_length),
        "corpus": data.info.get("corpus"),
        "corpus_sha256": data.info.get("corpus_sha256"),
        "tokenizer": data.tokenizer.name,
        "tokenizer_sha256": data.tokenizer.sha256,
        "skipped_records": int((data.info.get("bad_records") or {}).get("skipped", 0)),
        "d_model": m.d_model, "n_layers": m.n_layers, "n_heads": m.n_heads,
        "context_length": m.context_length, "batch_size": t.batch_size,
        "learning_rate": t.learning_rate, "schedule": t.schedule,
        "parametrization": m.parametrization,
        "config_hash": run_dir.config_hash(cfg),
        "provenance": provenance.collect(),
    }
    if t.init_from:
        result["branched_from"] = {"run": os.path.abspath(t.init_from), "step": t.init_step}
    if jax.process_count() > 1:
        result["processes"] = jax.process_count()
    # What the run ran on (a sweep's workers each get their own share of the machine).
    result["devices"] = jax.device_count()
    result["device_kind"] = jax.devices()[0].device_kind
    result["mesh"] = {a: int(s) for a, s in zip(sharding.MESH_AXES,
                                                sharding.mesh_shape(cfg.mesh, jax.device_count()))}
    # JSON has no NaN: a diverged run records null.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in result.items()}


def _progress_bar(enabled, start, total):
    return progress_output(total, start, enabled)  # a bar on a terminal, lines in a log file
