"""Typed configs and the one run arithmetic: defaults declared once, keys and types checked at the
boundary, and the run name's hash equal to the config_hash the trainer records."""

import dataclasses
import json
import pathlib

import pytest

from configs import gpt
from experiments import cli
from experiments.sweeplib import layout, plan
from common import files
from research import flops, optim, run_dir, run_math
from research.config import ModelConfig, RunConfig, TrainConfig
from research.errors import ConfigError


def test_defaults_are_declared_once():
    # configs/gpt.py builds its ConfigDict from the dataclass defaults: the two cannot disagree.
    assert gpt.base_config().to_dict() == RunConfig().to_dict()
    assert ModelConfig().n_layers == gpt.base_config().model.n_layers == 8
    typed = RunConfig.from_configdict(gpt.base_config())
    assert typed == RunConfig()


@pytest.mark.parametrize("variant", ["tiny", *gpt.LADDER])
def test_every_variant_converts_and_survives_config_json(variant):
    cfg = RunConfig.from_configdict(gpt.get_config(variant))
    back = RunConfig.from_configdict(json.loads(json.dumps(cfg.to_dict())))  # lists -> tuples
    assert back == cfg and hash(back.model) == hash(cfg.model)
    assert isinstance(cfg.mesh.rules[0][1], tuple)


def test_misspelt_key_and_wrong_type_are_one_line_config_errors():
    c = gpt.get_config("100k")
    c.train.tokenz = 5
    with pytest.raises(ConfigError, match=r"unknown config key train.tokenz; did you mean train.tokens\?"):
        RunConfig.from_configdict(c)
    d = gpt.get_config("100k").to_dict()
    d["train"]["batch_size"] = 2.5
    with pytest.raises(ConfigError, match="train.batch_size=2.5 must be a whole number"):
        RunConfig.from_configdict(d)
    d = gpt.get_config("100k").to_dict()
    d["model"]["tie_embeddings"] = "yes"
    with pytest.raises(ConfigError, match="model.tie_embeddings='yes' must be True or False"):
        RunConfig.from_configdict(d)


def test_unknown_variant_suggests_the_closest_name():
    with pytest.raises(ConfigError, match=r"unknown variant '100K'; did you mean '100k'\?"):
        gpt.get_config("100K")
    with pytest.raises(ConfigError, match=r"did you mean 'tiny'\?"):
        gpt.get_config("tyni")


def test_variant_resolution_is_shared_by_configs_and_planner():
    for name in gpt.LADDER:
        m = gpt.get_config(name).model
        assert tuple(gpt.variant_dims(name)) == (name, m.n_layers, m.d_model, m.n_heads)
    # A shape on the ladder is that variant, whatever it is called; off the ladder, L<n>d<d>.
    assert tuple(gpt.variant_dims((3, 96))) == ("300k", 3, 96, 2)
    assert tuple(gpt.variant_dims((3, 96, 4))) == ("L3d96", 3, 96, 4)
    assert tuple(gpt.variant_dims((2, 48))) == ("L2d48", 2, 48, 2)
    assert gpt.variant_dims((2, 256, 8)).n_heads == 8
    with pytest.raises(ConfigError, match="not divisible by n_heads"):
        gpt.variant_dims((2, 100, 3))


def _sweep_of(variants, **base_changes):
    s = cli.build_config("configs/sweeps/smoke.py")
    s.variants = variants
    s.learning_rates = ()  # the variant rule's LR, not the smoke sweep's shared one
    s.tokens = (262_144,)
    s.seeds = (0,)
    for key, value in base_changes.items():
        section, name = key.split("__")
        s.base[section][name] = value
    return s


@pytest.mark.parametrize("parametrization", ["sp", "mup"])
def test_a_sweep_variant_trains_with_the_config_of_the_same_gpt_variant(parametrization):
    """One rule for a variant's dimensions and LR: the sweep's run of "100k" is
    configs/gpt.py:100k with the sweep's base and budget (under SP the ladder's tuned LR, 6e-3
    here and not the base's; under µP the base's transferable LR)."""
    sweep = _sweep_of(("100k",), model__parametrization=parametrization)
    runs = plan.expand(sweep)
    typed_base = RunConfig.from_configdict(sweep.base)
    expected_lr = gpt.LEARNING_RATES["100k"] if parametrization == "sp" else \
        typed_base.train.learning_rate
    assert gpt.LEARNING_RATES["100k"] != typed_base.train.learning_rate  # the rules differ
    for run in runs:
        assert run.variant == "100k" and run.config.train.learning_rate == expected_lr
        same = gpt.variant_config(typed_base, "100k")
        t = run.config.train  # what the sweep sets per run: budget, seed, cadence, W&B group
        same = dataclasses.replace(
            same, log=run.config.log,
            train=dataclasses.replace(same.train, tokens=t.tokens, seed=t.seed,
                                      eval_every=t.eval_every,
                                      checkpoint_every=t.checkpoint_every))
        assert run.config == same
    # Equal shapes, equal names and hashes: the tuple and the name are one run.
    by_shape = plan.expand(_sweep_of(((2, 64),), model__parametrization=parametrization))
    assert [r.name for r in by_shape] == [r.name for r in runs]
    with pytest.raises(plan.SweepError, match="two runs of the sweep have the same config"):
        plan.expand(_sweep_of(("100k", (2, 64)), model__parametrization=parametrization))


def test_gpt_variant_hashes_are_unchanged():
    """configs/gpt.py:VARIANT names the same run as before the variant rule was shared, so old
    run directories still resume (the hashes recorded before the change)."""
    before = {"tiny": "577219cc2e6d", "100k": "73dbd4e489bb", "300k": "36eb68c583e6",
              "800k": "b579a3a8ba29", "1.5m": "e6ab982bc1c1", "1.4b": "e384ee56d83b"}
    now = {v: run_dir.config_hash(RunConfig.from_configdict(gpt.get_config(v))) for v in before}
    assert now == before


def test_hash_ignores_volatile_keys_and_the_parents_location_only():
    c = RunConfig.from_configdict(gpt.get_config("100k"))
    h = run_dir.config_hash(c)
    assert len(h) == run_dir.HASH_HEX and int(h, 16) >= 0
    def train(cfg, **changes):
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))
    # allow_config_change does not change what the run computes
    assert run_dir.config_hash(train(c, allow_config_change=True)) == h
    assert run_dir.config_hash(train(c, learning_rate=1e-3)) != h
    a = train(c, init_from="parent-run", init_step=4)
    b = train(c, init_from="/some/sweep/runs/parent-run/", init_step=4)
    assert run_dir.config_hash(a) == run_dir.config_hash(b)


@pytest.mark.parametrize("sweep_file", ["configs/sweeps/smoke.py", "configs/sweeps/wsd.py"])
def test_run_names_carry_the_hash_the_trainer_records(tmp_path, sweep_file):
    """Each run goes the way a sweep child's config goes (sweep.json round trip, a branch's
    parent resolved to its directory); the trainer's config.json then hashes to the name's
    suffix, and so does the config_hash train() writes to result.json (run_dir.config_hash of
    the same config). The real smoke sweep checks result.json itself (test_sweep_e2e)."""
    sweep_dir = layout.SweepDir(tmp_path)
    runs = plan.expand(cli.build_config(sweep_file))
    for run in runs:
        child_run = plan.Run.from_json(json.loads(json.dumps(run.to_json(), default=str)))
        config = child_run.config
        if child_run.depends_on:
            config = plan.replace_train(
                config, init_from=str(sweep_dir.run_dir(child_run.depends_on)))
        workdir = sweep_dir.run_dir(run.name)
        run_dir.claim_workdir(str(workdir), config)
        recorded = run_dir.config_hash(run_dir.load_config(str(workdir)))
        assert recorded == run_dir.config_hash(config) == run.name.rsplit("-", 1)[-1]
    assert any(r.depends_on for r in runs) == (sweep_file.endswith("wsd.py"))


def test_one_rounding_rule_for_warmup_and_the_wsd_decay():
    t = TrainConfig(schedule="wsd", warmup_fraction=0.05, decay_fraction=0.2, learning_rate=1.0,
                    min_lr_ratio=0.1)
    total = 37  # 0.05 * 37 = 1.85 -> 2 warmup steps; 37 * 0.8 = 29.6 -> decay starts at 30
    assert run_math.warmup_steps(t, total) == 2 and run_math.decay_start(0.2, total) == 30
    s = optim.schedule_inputs(t, total)

    def lr(step):
        return optim.lr_at(t.schedule, step, s)
    assert float(lr(0)) == pytest.approx(0.5) and float(lr(1)) == pytest.approx(1.0)
    assert float(lr(29)) == pytest.approx(1.0) and float(lr(30)) == pytest.approx(1.0)
    assert float(lr(31)) < 1.0 and float(lr(37)) == pytest.approx(0.1)
    assert run_math.warmup_steps(dataclasses.replace(t, warmup_steps=7), total) == 7


def test_steps_tokens_and_flops_of_a_run():
    cfg = RunConfig.from_configdict(gpt.get_config("tiny"))
    assert run_math.tokens_per_step(cfg.train, cfg.model) == 16 * 128
    assert run_math.steps(cfg) == 1_000_000 // (16 * 128)
    tokens = run_math.tokens_trained(cfg, run_math.steps(cfg))
    assert flops.run_flops(cfg.model, tokens) == pytest.approx(
        run_math.flops_per_step(cfg) * run_math.steps(cfg))


def test_config_json_written_by_an_older_layout_is_refused_with_the_key(tmp_path):
    workdir = pathlib.Path(tmp_path)
    files.write_json(workdir / "config.json", {"model": {"n_layer": 2}})
    with pytest.raises(ConfigError, match="holds a run with a different config"):
        run_dir.claim_workdir(str(workdir), RunConfig.from_configdict(gpt.get_config("100k")))
