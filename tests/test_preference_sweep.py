"""The preference sweep's plan and its edges, without training: the points a config expands
to, their names, the best-of-n merge, and the one-line errors of bad input. (That the swept
points give the one command's numbers is tested end to end in test_preference_e2e.py.)"""

import copy

import pytest

from experiments import preference_sweep, sweep as sweep_cli
from experiments.sweeplib import plan, spec
from experiments.sweeplib.errors import SweepError
from research.errors import UserError
from research.posttrain.pipeline import StageError

CONFIG = "configs/sweeps/preference.py:smoke"


def expand(*overrides):
    return plan.expand(spec.load(CONFIG, list(overrides)))


def test_points_are_one_shared_stage_then_one_per_reward_model_and_per_beta():
    runs = expand()
    shared, *rest = runs
    assert shared.point["stage"] == "shared" and shared.depends_on == ""
    rms = [r for r in rest if r.point["stage"] == "reward_model"]
    dpos = [r for r in rest if r.point["stage"] == "dpo"]
    assert [r.point["train_pairs"] for r in rms] == [64, 512]  # configs/preference.py:smoke
    assert [r.point["beta"] for r in dpos] == [0.1, 0.03, 1.0]
    assert all(r.depends_on == shared.name for r in rest)
    # Each point trains only its own setting of the swept section.
    assert [r.point["preference"]["reward_model"]["train_pairs"] for r in rms] == [[64], [512]]
    assert [r.point["preference"]["dpo"]["betas"] for r in dpos] == [[0.1], [0.03], [1.0]]
    # The plan survives sweep.json: a point reads back equal.
    again = plan.Run.from_json(copy.deepcopy(rms[0].to_json()))
    assert again.point == rms[0].point and again.depends_on == shared.name


def test_names_change_only_with_what_the_point_reads():
    base = {r.name for r in expand()}
    more_betas = {r.name for r in expand("--config.preference.dpo.betas=0.1,0.03,1.0,0.3")}
    assert base < more_betas and len(more_betas - base) == 1  # one new DPO point, the rest kept
    new_sft = expand("--config.preference.sft.steps=61")  # the shared stage changed: all points
    assert not base & {r.name for r in new_sft}


def test_best_of_n_merge_sorts_reward_models_and_refuses_different_samples():
    def part(k, gold):
        return {"n": [1, 2], "prompts": 2, "samples": 2, "gold_per_prompt": gold, "kl": [0, 0.19],
                "reward_models": [{"train_pairs": k, "gold": [k]}]}
    merged = preference_sweep.merge_best_of_n([part(512, [0.1, 0.2]), part(64, [0.1, 0.2])])
    assert [rm["train_pairs"] for rm in merged["reward_models"]] == [64, 512]
    assert merged["kl"] == [0, 0.19] and merged["gold_per_prompt"] == [0.1, 0.2]
    with pytest.raises(UserError, match="samples differ"):
        preference_sweep.merge_best_of_n([part(64, [0.1, 0.2]), part(512, [0.1, 0.3])])


def test_a_point_whose_shared_stage_is_missing_is_one_line(tmp_path):
    rm = expand()[1]
    point = {**rm.point, "parent_dir": str(tmp_path / "shared")}
    with pytest.raises(StageError) as e:
        preference_sweep.train_point(rm.config, str(tmp_path / "rm"), point=point)
    message = str(e.value)
    assert "\n" not in message and "shared stages" in message and str(tmp_path) in message
    assert not (tmp_path / "rm").exists()  # refused before writing anything


def test_bad_preference_sweeps_are_one_line(capsys):
    assert sweep_cli.main(["plan", "--config", "configs/sweeps/smoke.py",
                           "--config.kind=preference", "--no-bench"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: a preference sweep needs a preference section (a configs/preference.py config); "
        "start from configs/sweeps/preference.py"]
    with pytest.raises(SweepError, match="runner.train_fn"):
        spec.load(CONFIG, ["--config.runner.train_fn=research.train:train"])
    with pytest.raises(SweepError, match="dpo.betas"):
        expand("--config.preference.dpo.betas=()")


def test_fit_of_a_directory_without_a_preference_sweep_is_one_line(tmp_path, capsys):
    from experiments import cli

    assert cli.guarded(preference_sweep.main, ["fit", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no preference sweep" in err[0]
