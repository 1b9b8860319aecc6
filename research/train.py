"""Train (or resume) one run in a workdir: the loop, evaluation, checkpoints and result.json."""

from __future__ import annotations

import logging
import math
import os
import time

import jax
import numpy as np

from research import checkpoint, config_checks, data as data_lib, flops, run_dir, sharding
from research.config_checks import ConfigError
from research.metrics import MetricsWriter
from research.train_state import build_trainer, put_batch

log = logging.getLogger(__name__)


def steps_of(config) -> int:
    per_step = int(config.train.batch_size) * int(config.model.context_length)
    return int(config.train.tokens) // per_step


def validate(config, n_devices: int | None = None):
    """All config errors, before any data loading, compilation or write. Returns the mesh
    (over the first `n_devices` devices: a sweep checks the share one run will get)."""
    config_checks.check_model(config.model)
    mesh = sharding.make_mesh(config.mesh, None if n_devices is None else jax.devices()[:n_devices])
    rules = sharding.rules_of(config.mesh)
    tensor = mesh.shape["tensor"]
    if config.model.n_heads % tensor or (config.model.mlp_ratio * config.model.d_model) % tensor:
        raise ConfigError(
            f"mesh.tensor={tensor} must divide model.n_heads={config.model.n_heads} and the MLP "
            "width; choose a tensor-parallel size that divides the heads")
    config_checks.check_train(config.train, config.model.context_length,
                              sharding.data_parallel_size(mesh, rules))
    corpus = config.data.corpus
    if corpus != "shakespeare" and not corpus.startswith("tfds:") and not os.path.isdir(corpus):
        raise ConfigError(f"data.corpus={corpus!r} is neither 'shakespeare', 'tfds:NAME' nor a "
                          "folder of .txt files; fix the path")
    if config.train.init_from and not os.path.isdir(checkpoint.checkpoint_dir(config.train.init_from)):
        raise ConfigError(f"train.init_from={config.train.init_from!r} has no checkpoints/ folder; "
                          "train the parent run first")
    return mesh


def evaluate(trainer, params, batches) -> tuple[float, float]:
    """Mean validation loss over the fixed evaluation batches and its standard error."""
    losses = np.array([float(trainer.eval_step(params, put_batch(trainer, b))) for b in batches])
    stderr = float(losses.std(ddof=1) / math.sqrt(len(losses))) if len(losses) > 1 else float("nan")
    return float(losses.mean()), stderr


def _initial_state(trainer, config, manager):
    """Latest checkpoint of this run, else the branch point of its parent, else fresh init."""
    abstract = checkpoint.abstract_like(trainer.state_shapes, trainer.state_shardings)
    latest = manager.latest_step()
    if latest is not None:
        log.info("resuming from step %d", latest)
        return checkpoint.restore(manager, latest, abstract), latest
    t = config.train
    if t.init_from:
        parent = checkpoint.make_manager(t.init_from, read_only=True)
        if t.init_step not in parent.all_steps():
            raise ConfigError(f"{t.init_from} has no checkpoint at step {t.init_step} "
                              f"(has {sorted(parent.all_steps())}); add it to the parent's keep_steps")
        state = checkpoint.restore(parent, t.init_step, abstract)
        parent.close()
        return state, int(t.init_step)
    return trainer.init(jax.random.key(int(t.seed))), 0


def train(config, workdir: str, *, progress: bool = True) -> dict:
    """Train the run `config` in `workdir` (resuming if it holds one); returns result.json."""
    t = config.train
    mesh = validate(config)
    total_steps = steps_of(config)
    is_writer = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    if is_writer:
        run_dir.claim_workdir(workdir, config)
    done = run_dir.finished_result(workdir)
    if done is not None:
        return done

    data = data_lib.load_token_data(config.data, workdir)
    if data.tokenizer.vocab_size != config.model.vocab_size:
        raise ConfigError(
            f"model.vocab_size={config.model.vocab_size} but the {data.tokenizer.name} tokenizer "
            f"has {data.tokenizer.vocab_size} tokens; set --config.model.vocab_size="
            f"{data.tokenizer.vocab_size}")
    trainer = build_trainer(config, mesh, total_steps)
    manager = checkpoint.make_manager(workdir, t)
    state, start = _initial_state(trainer, config, manager)
    eval_set = data_lib.eval_batches(
        data, n_batches=int(t.eval_batches), batch_size=int(t.batch_size),
        context_length=int(config.model.context_length),
        process_index=jax.process_index(), process_count=jax.process_count())
    writer = MetricsWriter(workdir, is_writer)
    tokens_per_step = int(t.batch_size) * int(config.model.context_length)
    bar = _progress_bar(progress and is_writer, start, total_steps)
    started_wall = t0 = time.time()
    status, prev = "done", None

    def check(prev_step, metrics):
        """Metrics of the previous step, read one step late so the device never waits."""
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            return False
        if (prev_step + 1) % int(t.log_every) == 0 or prev_step + 1 == total_steps:
            rate = tokens_per_step * (prev_step + 1 - start) / max(time.time() - t0, 1e-9)
            writer.write(prev_step + 1, {"train/loss": loss, "train/grad_norm": metrics["grad_norm"],
                                         "train/lr": metrics["lr"], "train/tokens_per_s": rate})
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}")
        return True

    for step in range(start, total_steps):
        batch = data_lib.train_batch(
            data, step=step, batch_size=int(t.batch_size),
            context_length=int(config.model.context_length), seed=int(t.seed),
            process_index=jax.process_index(), process_count=jax.process_count())
        state, metrics = trainer.train_step(state, put_batch(trainer, batch))
        if prev is not None and not check(*prev):
            status = "diverged"
            break
        prev = (step, metrics)
        bar.update(1)
        done_steps = step + 1
        if done_steps % int(t.eval_every) == 0 and done_steps < total_steps:
            loss, err = evaluate(trainer, state["params"], eval_set)
            writer.write(done_steps, {"eval/loss": loss, "eval/loss_stderr": err})
        checkpoint.save(manager, done_steps, state)
    if status == "done" and prev is not None and not check(*prev):
        status = "diverged"
    bar.close()

    if status == "done":
        checkpoint.save(manager, total_steps, state, force=total_steps not in manager.all_steps())
        loss, err = evaluate(trainer, state["params"], eval_set)
        writer.write(total_steps, {"eval/loss": loss, "eval/loss_stderr": err})
    else:
        loss, err = float("nan"), float("nan")
        log.error("loss is NaN/Inf at step %d: run diverged (lower train.learning_rate)", prev[0] + 1)
    manager.wait_until_finished()
    manager.close()
    writer.close()

    result = _result(config, workdir, data, status, loss, err, time.time() - started_wall,
                     steps_done=total_steps if status == "done" else prev[0] + 1)
    if is_writer:
        run_dir.write_json_atomic(os.path.join(workdir, "result.json"), result)
    return result


def _result(config, workdir, data, status, loss, err, wall_s, steps_done) -> dict:
    m, t = config.model, config.train
    tokens = steps_done * int(t.batch_size) * int(m.context_length)
    counts = flops.param_counts(m)
    bpt = data_lib.bytes_per_token(data)
    result = {
        "run": os.path.basename(os.path.abspath(workdir)),
        "variant": config.variant,
        **counts,
        "tokens": tokens,
        "flops": flops.run_flops(m, tokens),
        "flops_per_token": flops.train_flops_per_token(m),
        "loss": loss,
        "loss_stderr": err,
        "bits_per_byte": loss / math.log(2) / bpt if math.isfinite(loss) else float("nan"),
        "status": status,
        "seed": int(t.seed),
        "wall_s": round(wall_s, 3),
        "steps": steps_done,
        "epochs": data_lib.epochs_seen(data, tokens, int(m.context_length)),
        "unique_train_tokens": int(len(data.train)),
        "corpus": data.info.get("corpus"),
        "corpus_sha256": data.info.get("corpus_sha256"),
        "tokenizer": data.tokenizer.name,
        "d_model": int(m.d_model), "n_layers": int(m.n_layers), "n_heads": int(m.n_heads),
        "context_length": int(m.context_length), "batch_size": int(t.batch_size),
        "learning_rate": float(t.learning_rate), "schedule": t.schedule,
        "config_hash": run_dir.config_hash(config),
    }
    if t.init_from:
        result["branched_from"] = {"run": os.path.abspath(t.init_from), "step": int(t.init_step)}
    if jax.process_count() > 1:
        result["processes"] = jax.process_count()
    # What the run ran on (a sweep's workers each get their own share of the machine).
    result["devices"] = jax.device_count()
    result["device_kind"] = jax.devices()[0].device_kind
    result["mesh"] = {a: int(s) for a, s in zip(sharding.MESH_AXES,
                                                sharding.mesh_shape(config.mesh, jax.device_count()))}
    # JSON has no NaN: a diverged run records null.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in result.items()}


def _progress_bar(enabled, start, total):
    from tqdm import tqdm
    return tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True,
                mininterval=1.0)
