"""Training: sharding equivalence on 8 fake devices, gradient accumulation, overfitting,
resume, WSD branching, restore onto another mesh, divergence, and analytic vs XLA FLOPs."""

import json
import os

import jax
import numpy as np
import pytest

from configs import gpt
from research import checkpoint, flops, run_math, sharding, train as train_lib, train_state
from research.config import RunConfig


def small_config(**mesh):
    c = gpt.get_config("tiny")
    c.model.n_layers, c.model.d_model, c.model.n_heads, c.model.context_length = 2, 64, 4, 32
    c.train.batch_size = 16
    c.train.learning_rate = 1e-3
    c.train.tokens = 16 * 32 * 12  # 12 steps
    c.train.eval_every, c.train.eval_batches, c.train.checkpoint_every = 6, 2, 4
    c.train.log_every = 2
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh.get("data", 1), mesh.get("fsdp", 1), mesh.get("tensor", 1)
    return c


def random_batches(n, batch=16, ctx=32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (batch, ctx + 1)).astype(np.int32) for _ in range(n)]


def run_steps(config, batches, devices=None):
    mesh = sharding.make_mesh(config.mesh, devices)
    trainer = train_state.build_trainer(RunConfig.from_configdict(config), mesh, total_steps=20)
    state = trainer.init(jax.random.key(0))
    losses = []
    for b in batches:
        state, m = trainer.train_step(state, train_state.put_batch(trainer, b))
        losses.append(float(m["loss"]))
    return np.array(losses), jax.device_get(state["params"])


def max_param_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
def test_sharded_steps_equal_single_device():
    """Data parallel, FSDP, tensor parallel and all three combined reproduce one device.
    Tolerance: losses to 1e-5 relative; parameters to 1e-4 absolute (a tenth of one
    learning-rate step) after 4 AdamW steps. float32 reductions run in a different order on
    each layout, and the attention key bias has an exactly-zero gradient whose rounding noise
    AdamW normalises into steps of up to a few 1e-5."""
    batches = random_batches(4)
    ref_loss, ref_params = run_steps(RunConfig.from_configdict(small_config()), batches, jax.devices()[:1])
    layouts = {"data": dict(data=8), "fsdp": dict(fsdp=8), "tensor": dict(data=4, tensor=2),
               "data x fsdp x tensor": dict(data=2, fsdp=2, tensor=2)}
    for name, mesh in layouts.items():
        loss, params = run_steps(RunConfig.from_configdict(small_config(**mesh)), batches)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, err_msg=name)
        assert max_param_diff(params, ref_params) < 1e-4, name


def test_state_is_created_sharded():
    c = small_config(fsdp=4, tensor=2)
    mesh = sharding.make_mesh(c.mesh)
    trainer = train_state.build_trainer(RunConfig.from_configdict(c), mesh, total_steps=10)
    state = trainer.init(jax.random.key(0))
    kernel = state["params"]["blocks"]["mlp"]["up"]["kernel"]  # [layers, embed, mlp]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    shard = kernel.addressable_shards[0].data
    assert shard.shape == (2, 64 // 4, 256 // 2)
    mu = state["opt_state"][1][0].mu["blocks"]["mlp"]["up"]["kernel"]  # Adam's first moment
    assert mu.sharding.spec == kernel.sharding.spec


@pytest.mark.slow
def test_gradient_accumulation_equals_full_batch():
    batches = random_batches(3)
    full_loss, full = run_steps(RunConfig.from_configdict(small_config(data=8)), batches)
    c = small_config(data=4)
    c.train.microbatches = 4
    acc_loss, acc = run_steps(RunConfig.from_configdict(c), batches, jax.devices()[:4])
    np.testing.assert_allclose(acc_loss, full_loss, rtol=1e-5)
    assert max_param_diff(acc, full) < 1e-4  # see the sharding test for this tolerance


@pytest.mark.slow
def test_overfits_one_batch():
    c = small_config()
    c.train.learning_rate = 3e-3
    c.train.schedule = "constant"
    c.train.warmup_steps = 5
    batch = random_batches(1, batch=4, ctx=32)[0][:4]
    c.train.batch_size = 4
    losses, _ = run_steps(RunConfig.from_configdict(c), [batch] * 80, jax.devices()[:1])
    assert losses[0] > 5.0  # ~ln(256) at init
    assert losses[-1] < 0.5, losses[-1]


def _data_dir(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / "datasets")


@pytest.mark.slow
def test_resume_after_crash_equals_uninterrupted(tmp_path, monkeypatch):
    c = small_config(data=8)
    c.data.data_dir = str(tmp_path / "datasets")
    full = train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "full"), progress=False)

    real_batch = train_lib.data_lib.train_batch

    def crash_at_step_9(data, *, step, **kw):
        if step == 9:
            raise RuntimeError("simulated crash")
        return real_batch(data, step=step, **kw)

    monkeypatch.setattr(train_lib.data_lib, "train_batch", crash_at_step_9)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "resumed"), progress=False)
    assert not os.path.exists(tmp_path / "resumed" / "result.json")
    monkeypatch.setattr(train_lib.data_lib, "train_batch", real_batch)
    resumed = train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "resumed"), progress=False)

    assert resumed["status"] == full["status"] == "done"
    assert resumed["steps"] == full["steps"] == 12
    assert resumed["loss"] == pytest.approx(full["loss"], rel=1e-6)
    steps_logged = [json.loads(l)["step"] for l in open(tmp_path / "resumed" / "metrics.jsonl")
                    if "train/loss" in l]
    assert steps_logged[-1] == 12 and 10 in steps_logged  # resumed from the step-8 checkpoint
    p_full = _final_params(c, tmp_path / "full")
    p_resumed = _final_params(c, tmp_path / "resumed")
    assert max_param_diff(p_full, p_resumed) < 1e-6
    # A finished run is not trained again.
    assert train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "resumed"), progress=False) == resumed


def _final_params(config, workdir, mesh_cfg=None):
    mesh = sharding.make_mesh(mesh_cfg or config.mesh)
    trainer = train_state.build_trainer(RunConfig.from_configdict(config), mesh,
                                         run_math.steps(RunConfig.from_configdict(config)))
    manager = checkpoint.make_manager(str(workdir), read_only=True)
    abstract = checkpoint.abstract_like(trainer.state_shapes, trainer.state_shardings)
    state = checkpoint.restore(manager, manager.latest_step(), abstract)
    return state["params"]


@pytest.mark.slow
def test_eval_loss_equals_one_device_loss_on_every_layout():
    """The evaluation of each batch, sharded or not, gives each window's mean loss as the model
    applied on one device computes it."""
    batches = np.stack(random_batches(3, seed=1))
    ref_cfg = RunConfig.from_configdict(small_config())
    ref_trainer = train_state.build_trainer(ref_cfg, sharding.make_mesh(
        ref_cfg.mesh, jax.devices()[:1]), total_steps=20)
    params = jax.device_get(ref_trainer.init(jax.random.key(0))["params"])
    want = [np.asarray(train_state.token_losses(ref_trainer.model.apply(
        {"params": params}, b[:, :-1])[0], b[:, 1:])).mean(axis=1) for b in batches]
    for mesh in (dict(data=8), dict(data=2, fsdp=2, tensor=2)):
        c = RunConfig.from_configdict(small_config(**mesh))
        trainer = train_state.build_trainer(c, sharding.make_mesh(c.mesh), total_steps=20)
        on_mesh = jax.device_put(params, trainer.state_shardings["params"])
        got = [np.asarray(trainer.eval_loss(on_mesh, train_state.put_batch(trainer, b)))
               for b in batches]
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=str(mesh))


@pytest.mark.slow
def test_checkpoint_restores_onto_a_different_mesh(tmp_path):
    c = small_config(data=8)
    c.data.data_dir = str(tmp_path / "datasets")
    train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "run"), progress=False)
    on_dp = _final_params(c, tmp_path / "run")
    other = small_config(data=2, fsdp=2, tensor=2).mesh
    on_mixed = _final_params(c, tmp_path / "run", other)
    kernel = on_mixed["blocks"]["mlp"]["up"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert max_param_diff(jax.device_get(on_dp), jax.device_get(on_mixed)) == 0.0


@pytest.mark.slow
def test_wsd_branch_equals_run_from_scratch(tmp_path):
    """A decay branch started from a constant-LR parent's checkpoint is the same run as a
    warmup-stable-decay run trained from scratch with the same budget."""
    def cfg(schedule, steps):
        c = small_config(data=8)
        c.data.data_dir = str(tmp_path / "datasets")
        c.train.schedule, c.train.warmup_steps, c.train.decay_fraction = schedule, 2, 0.5
        c.train.tokens = 16 * 32 * steps
        return c

    parent = cfg("constant", 16)
    parent.train.keep_steps = (4,)
    train_lib.train(RunConfig.from_configdict(parent), str(tmp_path / "parent"), progress=False)
    assert 4 in checkpoint.make_manager(str(tmp_path / "parent"), read_only=True).all_steps()

    scratch = train_lib.train(RunConfig.from_configdict(cfg("wsd", 8)), str(tmp_path / "scratch"), progress=False)
    branch_cfg = cfg("wsd", 8)
    branch_cfg.train.init_from, branch_cfg.train.init_step = str(tmp_path / "parent"), 4
    branch = train_lib.train(RunConfig.from_configdict(branch_cfg), str(tmp_path / "branch"), progress=False)
    assert branch["tokens"] == scratch["tokens"] and branch["branched_from"]["step"] == 4
    assert branch["loss"] == pytest.approx(scratch["loss"], rel=1e-5)


@pytest.mark.slow
def test_divergence_is_recorded(tmp_path):
    c = small_config(data=8)
    c.data.data_dir = str(tmp_path / "datasets")
    c.train.learning_rate = 1e12
    c.train.grad_clip = 1e30
    result = train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "run"), progress=False)
    assert result["status"] == "diverged"
    assert result["loss"] is None
    on_disk = json.load(open(tmp_path / "run" / "result.json"))
    assert on_disk["status"] == "diverged"


def test_analytic_flops_match_xla_cost_analysis():
    """XLA counts every op (LayerNorm, softmax, GELU, AdamW) on top of the matmuls that the
    analytic count covers, so it may exceed the analytic figure, by at most 8%. The analytic
    count takes attention over the full context (the convention); the model computes it in
    query blocks (research/model.py), each against the keys up to its end, so the scores it
    skips are taken off first."""
    from research.model import query_blocks
    for n_layers, d_model, ctx, tie in [(2, 256, 64, True), (2, 128, 256, False)]:
        c = small_config()
        c.model.n_layers, c.model.d_model, c.model.context_length = n_layers, d_model, ctx
        c.model.tie_embeddings = tie
        c.model.scan_layers = False  # XLA's cost analysis counts a loop body once
        c.train.batch_size = 8
        mesh = sharding.make_mesh(c.mesh, jax.devices()[:1])
        trainer = train_state.build_trainer(RunConfig.from_configdict(c), mesh, total_steps=10)
        state = trainer.init(jax.random.key(0))
        batch = train_state.put_batch(trainer, np.zeros((8, ctx + 1), np.int32))
        with trainer.activate():
            cost = trainer.train_step.jitted.lower(state, batch, trainer.schedule).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        skipped = 1 - sum(end * (end - start) for start, end in query_blocks(ctx)) / ctx**2
        attention = 3 * flops.attention_flops_per_token(c.model)  # forward and backward
        analytic = (flops.train_flops_per_token(c.model) - skipped * attention) * 8 * ctx
        assert 1.0 <= cost["flops"] / analytic < 1.08, (n_layers, d_model, cost["flops"] / analytic)


def test_runs_of_one_shape_share_one_compiled_step_with_their_own_schedules():
    """Budget and learning rate are inputs of the step, not constants: two runs of one shape
    use one executable, and each sees its own schedule (checked against the formula in numpy)."""
    batch = random_batches(1)[0]
    seen = []
    for steps, lr in ((10, 1e-3), (40, 3e-3)):
        c = small_config()
        c.train.learning_rate, c.train.warmup_steps = lr, 2
        mesh = sharding.make_mesh(c.mesh, jax.devices()[:1])
        trainer = train_state.build_trainer(RunConfig.from_configdict(c), mesh, total_steps=steps)
        state = trainer.init(jax.random.key(0))
        lrs = []
        for _ in range(3):
            state, m = trainer.train_step(state, train_state.put_batch(trainer, batch))
            lrs.append(float(m["lr"]))
        floor = lr * c.train.min_lr_ratio
        frac = np.clip((np.arange(3) - 2) / (steps - 2), 0, 1)
        cosine = floor + (lr - floor) * 0.5 * (1 + np.cos(np.pi * frac))
        expected = np.where(np.arange(3) < 2, lr * np.minimum(1, (np.arange(3) + 1) / 2), cosine)
        np.testing.assert_allclose(lrs, expected, rtol=1e-6)
        seen.append(trainer.train_step.jitted)
    assert seen[0] is seen[1] and seen[0]._cache_size() == 1


@pytest.mark.slow
def test_result_records_where_the_time_went(tmp_path):
    c = small_config(data=8)
    c.data.data_dir = str(tmp_path / "datasets")
    result = train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "run"), progress=False)
    timing = result["timing"]
    phases = ("setup_s", "data_s", "compile_s", "eval_s", "final_eval_s", "checkpoint_s",
              "train_s")
    assert all(timing[k] >= 0 for k in phases) and timing["compile_s"] > 0 and timing["train_s"] > 0
    assert timing["final_eval_s"] > 0
    assert sum(timing[k] for k in phases) == pytest.approx(timing["total_s"], abs=0.01)
