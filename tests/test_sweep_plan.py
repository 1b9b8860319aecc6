"""Plan expansion: grid, iso-FLOP budgets matched within the stated tolerance, WSD branches from
the right checkpoints, seeds, deterministic names; bad input refused before anything runs."""

import copy
import functools
import json
import math

import pytest
from submitit.slurm.slurm import _make_sbatch_string  # at import: submitit binds logging to stdout

from configs import gpt, sweep_base
from experiments import sweep as sweep_cli
from experiments.sweeplib import executors, plan, spec
from experiments.sweeplib.errors import SweepError
from research import flops, run_dir, run_math


def small_sweep(**changes):
    s = sweep_base.default_sweep()
    s.base.model.context_length = 32
    s.base.train.batch_size = 8
    s.variants = ("100k", (3, 80), "800k")
    s.tokens = (30_000, 100_000)
    for k, v in changes.items():
        *parents, leaf = k.split(".")
        functools.reduce(getattr, parents, s)[leaf] = v
    spec.check(s)
    return s


def test_grid_is_variants_by_budgets_by_seeds_in_whole_steps():
    s = small_sweep(seeds=(0, 1))
    runs = plan.expand(s)
    assert len(runs) == 3 * 2 * 2
    per_step = 8 * 32
    for run in runs:
        t = run.config.train
        assert t.tokens % per_step == 0 and t.tokens == run.tokens == run.steps * per_step
        assert min(abs(t.tokens - b) for b in s.tokens) < per_step  # D rounded down to a step
        assert run.flops == pytest.approx(flops.train_flops_per_token(run.config.model) * t.tokens)
        # Evaluation and checkpoints follow from the run's own length.
        assert t.eval_every == math.ceil(run.steps / s.runner.evals_per_run)
        assert t.checkpoint_every == math.ceil(run.steps / s.runner.checkpoints_per_run)
    dims = {(r.config.model.n_layers, r.config.model.d_model, r.config.model.n_heads) for r in runs}
    assert dims == {(2, 64, 2), (3, 80, 2), (4, 128, 2)}
    assert {r.seed for r in runs} == {0, 1} and {r.config.train.seed for r in runs} == {0, 1}


def test_names_are_readable_unique_and_deterministic():
    runs = plan.expand(small_sweep())
    again = plan.expand(small_sweep())
    assert [r.name for r in runs] == [r.name for r in again]
    assert len({r.name for r in runs}) == len(runs)
    assert runs[0].name.startswith("100k-D30k-s0-")
    assert next(r for r in runs if r.variant == "L3d80").name.startswith("L3d80-D")
    changed = plan.expand(small_sweep(**{"base.train.weight_decay": 0.0}))
    assert not {r.name for r in runs} & {r.name for r in changed}  # any config change: new hash
    # A run survives a trip through sweep.json unchanged (tuples restored for the trainer).
    run = runs[0]
    back = plan.Run.from_json(json.loads(json.dumps(run.to_json())))
    assert back.config == run.config and run_dir.config_hash(back.config) == run_dir.config_hash(run.config)


def test_tokens_per_param_grid_scales_with_each_model():
    runs = plan.expand(small_sweep(tokens=(), tokens_per_param=(2.0, 8.0)))
    for run in runs:
        ratio = run.tokens / run.params
        assert min(abs(ratio - 2.0), abs(ratio - 8.0)) * run.params < 8 * 32


def test_isoflop_runs_match_their_budget_within_the_stated_tolerance():
    s = small_sweep(kind="isoflop", tokens=(), flops=(3e11, 1e12), **{"base.model.context_length": 256})
    runs = plan.expand(s)
    assert len(runs) == 3 * 2
    for run in runs:
        c = flops.run_flops(run.config.model, run.config.train.tokens)  # the trainer's own count
        mismatch = abs(c - run.compute_budget) / run.compute_budget
        assert mismatch <= 1 / (2 * run.steps) + 1e-12  # at most half a step off
        assert mismatch <= plan.ISOFLOP_TOLERANCE
    # D follows each model's own FLOPs per token, which differ from 6N here (attention, logits).
    for budget in s.flops:
        group = [r for r in runs if r.compute_budget == budget]
        assert len({r.tokens for r in group}) == len(group)
        off_6n = [abs(6 * r.nonembedding_params * r.tokens - budget) / budget for r in group]
        assert max(off_6n) > 2 * plan.ISOFLOP_TOLERANCE


def test_isoflop_budget_too_coarse_for_whole_steps_is_refused():
    s = small_sweep(kind="isoflop", tokens=(), flops=(1e12,), variants=("800k",))
    per_step = flops.train_flops_per_token(plan.expand(s)[0].config.model) * 8 * 32
    with pytest.raises(SweepError, match="miss the budget"):  # 2.5 steps: 20% off either way
        plan.expand(small_sweep(kind="isoflop", tokens=(), flops=(2.5 * per_step,), variants=("800k",)))


def test_wsd_branches_start_from_the_parents_kept_checkpoints():
    s = small_sweep(kind="wsd", tokens=(20_000, 40_000, 80_000), **{"wsd.decay_fraction": 0.25})
    runs = plan.expand(s)
    parents = [r for r in runs if r.role == plan.ROLE_PARENT]
    assert len(parents) == 3
    for parent in parents:
        branches = [r for r in runs if r.depends_on == parent.name]
        assert len(branches) == 3
        assert runs.index(parent) < min(runs.index(b) for b in branches)  # parents first
        assert parent.config.train.schedule == "constant"
        for b in branches:
            t = b.config.train
            assert t.schedule == "wsd" and t.decay_fraction == 0.25
            # The trainer's own decay start for this branch is the step it restores from.
            assert t.init_step == b.start_step == run_math.decay_start(t.decay_fraction, b.steps)
            assert t.init_step in parent.config.train.keep_steps
            # One warmup for the family, inside which no branch starts decaying.
            assert t.warmup_steps == parent.config.train.warmup_steps <= t.init_step
            assert b.tokens == t.tokens == b.steps * 8 * 32  # the branch counts its whole budget
        assert tuple(sorted(b.start_step for b in branches)) == parent.config.train.keep_steps
        assert parent.steps == max(b.start_step for b in branches)
        assert not parent.is_data_point and all(b.is_data_point for b in branches)


def test_wsd_branch_inside_warmup_is_refused():
    with pytest.raises(SweepError, match="inside the family's"):
        plan.expand(small_sweep(kind="wsd", tokens=(2_000, 400_000), **{"base.train.warmup_fraction": 0.2}))


@pytest.mark.parametrize("change, message", [
    ({"variants": ("100k", "7b")}, "unknown variant '7b'"),
    ({"tokens": (100,)}, "smaller than one optimizer step"),
    ({"kind": "isoflop", "tokens": (), "flops": (1e6,)}, "smaller than one optimizer step"),
    ({"analysis.holdout_above_flops": 1e12, "analysis.holdout_above_params": 1e5},
     "choose one extrapolation check"),
    ({"variant_learning_rates": {"100k": 6e-3}}, "no LR for variant L3d80, 800k"),
])
def test_bad_input_refused_in_one_line_before_anything_runs(tmp_path, capsys, change, message):
    cfg = tmp_path / "bad.py"
    cfg.write_text("from tests.test_sweep_plan import small_sweep\n"
                   f"def get_config(arg=''):\n    return small_sweep(**{change!r})\n")
    workdir = tmp_path / "w"
    code = sweep_cli.main(["run", "--config", str(cfg), "--workdir", str(workdir)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not workdir.exists()


VARIANT_LRS = {"100k": 6e-3, "L3d80": 3e-3, "800k": 1.5e-3}


def test_variant_learning_rates_give_each_variant_its_own_lr():
    runs = plan.expand(small_sweep(variant_learning_rates=VARIANT_LRS, seeds=(0, 1)))
    assert len(runs) == 3 * 2 * 2
    assert {(r.variant, r.config.train.learning_rate) for r in runs} == set(VARIANT_LRS.items())
    # The resolved LR is part of the run's config, so of its hash and name: against the variant
    # rule's LRs (the ladder's 6e-3 and 3e-3 under SP, the base's 3e-3 off the ladder) only the
    # variant whose LR differs gets new names.
    shared = {r.name: r for r in plan.expand(small_sweep(seeds=(0, 1)))}
    assert {r.variant for r in runs if r.name not in shared} == {"800k"}
    for r in runs:
        assert run_dir.config_hash(r.config) == r.name.rsplit("-", 1)[1]
    # The same table as (name, LR) pairs, the form a name with a dot ("1.5m") needs.
    pairs = plan.expand(small_sweep(variant_learning_rates=tuple(VARIANT_LRS.items()), seeds=(0, 1)))
    assert [r.name for r in pairs] == [r.name for r in runs]
    dotted = plan.expand(small_sweep(variants=("1.5m", (2, 48)),
                                     variant_learning_rates=(("1.5m", 1e-3), ("L2d48", 1.2e-2))))
    assert {(r.variant, r.config.train.learning_rate) for r in dotted} == {("1.5m", 1e-3),
                                                                          ("L2d48", 1.2e-2)}


def test_variant_tokens_give_named_variants_their_own_budgets():
    runs = plan.expand(small_sweep(variant_tokens={"800k": (30_000,)}))
    budgets = {(r.variant, r.tokens) for r in runs}
    per_step = 8 * 32
    assert {t for v, t in budgets if v == "800k"} == {30_000 // per_step * per_step}
    assert len([v for v, _ in budgets if v != "800k"]) == 4  # the others keep both budgets
    # Runs outside the table are the plain grid's runs: same configs, names and hashes.
    plain = {r.name for r in plan.expand(small_sweep())}
    assert {r.name for r in runs} < plain
    pairs = plan.expand(small_sweep(variant_tokens=(("L3d80", (100_000, 30_000)),)))
    assert sorted(r.tokens for r in pairs if r.variant == "L3d80") == sorted(
        t // per_step * per_step for t in (100_000, 30_000))


@pytest.mark.parametrize("change, message", [
    ({"variant_learning_rates": {"100k": 6e-3, "800k": 1.5e-3}}, "no LR for variant L3d80;"),
    ({"variant_learning_rates": {**VARIANT_LRS, "300k": 3e-3}}, "names 300k, not a variant"),
    ({"variant_learning_rates": VARIANT_LRS, "learning_rates": (1e-3, 2e-3)}, "are both set"),
    ({"variant_tokens": {"300k": (30_000,)}}, "variant_tokens names 300k, not a variant"),
    ({"variant_tokens": {"800k": ()}}, "positive whole token budgets"),
    ({"variant_tokens": {"800k": (30_000,)}, "kind": "isoflop", "tokens": (), "flops": (1e12,)},
     "applies to grid sweeps"),
    ({"variant_learning_rates": {**VARIANT_LRS, "800k": -1e-3}}, "['800k']=-0.001; it must be"),
    ({"variant_learning_rates": (("100k", 6e-3), ("100k", 6e-3))}, "appears twice"),
    ({"variant_learning_rates": (6e-3, 3e-3)}, "must map variant names to LRs"),
])
def test_variant_learning_rates_refused(change, message):
    with pytest.raises(SweepError) as e:
        small_sweep(**change)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unavailable_executor_and_misspelt_override_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    cfg = "configs/sweeps/smoke.py"
    assert sweep_cli.main(["run", "--config", cfg, "--workdir", str(tmp_path / "w"), "--executor", "slurm"]) == 2
    assert "executor 'slurm' is not available here" in capsys.readouterr().err
    assert sweep_cli.main(["plan", "--config", cfg, "--workdir", str(tmp_path / "w"),
                           "--no-bench", "--config.runner.retires=3"]) == 2
    assert capsys.readouterr().err == ("error: unknown config key 'runner.retires'; "
                                       "did you mean --config.runner.retries?\n")
    assert not (tmp_path / "w").exists()


def test_slurm_parameters_reach_the_sbatch_script(tmp_path):
    s = small_sweep(**{"executor.kind": "slurm", "executor.slurm.partition": "gpu",
                       "executor.slurm.time_min": 90, "executor.slurm.gpus_per_node": 2})
    params = executors.slurm_parameters(s, "sweep-x")
    script = _make_sbatch_string(command="true", folder=str(tmp_path), **params)
    for line in ("--partition=gpu", "--time=90", "--gpus-per-node=2", "--job-name=sweep-x"):
        assert f"#SBATCH {line}" in script


def test_shipped_sweep_configs_expand():
    for name in ("smoke", "default", "isoflop", "wsd"):
        s = spec.load(f"configs/sweeps/{name}.py")
        runs = plan.expand(s)
        assert runs and all(r.config.model.vocab_size == gpt.base_config().model.vocab_size for r in runs)
    smoke = plan.expand(spec.load("configs/sweeps/smoke.py"))
    assert len({r.variant for r in smoke}) == 2 and len({r.tokens for r in smoke}) == 2
    default = plan.expand(spec.load("configs/sweeps/default.py"))
    assert len({r.variant for r in default}) >= 4 and len({r.tokens for r in default if r.is_data_point}) >= 3


def test_analysis_command_carries_the_extrapolation_check(tmp_path):
    from experiments.sweeplib import finish
    from experiments.sweeplib.layout import SweepDir

    where = SweepDir(tmp_path)
    fit = finish.analysis_commands(where, small_sweep())[0]
    assert not any(a.startswith("--holdout") for a in fit)
    fit = finish.analysis_commands(where, small_sweep(**{"analysis.holdout_above_params": 4e5}))[0]
    assert fit[fit.index("--holdout-above-params") + 1] == "400000.0"


def test_estimate_counts_evaluations_along_the_run_and_the_larger_final_one():
    from configs.sweeps import default
    from experiments.sweeplib import estimate

    runs = {r.steps: r for r in plan.expand(default.get_config()) if r.variant == "100k"}
    # 128 steps: 16 evenly spaced evals (every 8 steps), 15 before the last, 2 batches each,
    # then the final evaluation's 32 and the curve's own 2 at the last step.
    assert estimate.eval_batches(runs[128]) == 15 * 2 + 32 + 2
    # 512 steps: every 32 steps, the same count.
    assert estimate.eval_batches(runs[512]) == 15 * 2 + 32 + 2

