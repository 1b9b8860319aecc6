"""Configs that cannot work are refused with one clear line, before compiling or writing."""

import json
import os
import subprocess
import sys

import pytest

from configs import gpt
from research import flops, train as train_lib
from research.errors import ConfigError
from research.config import RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny():
    c = gpt.get_config("tiny")
    c.model.n_layers, c.model.d_model, c.model.n_heads, c.model.context_length = 1, 32, 2, 16
    c.train.batch_size, c.train.tokens = 8, 8 * 16 * 2
    return c


@pytest.mark.parametrize("mutate, message", [
    (lambda c: setattr(c.model, "n_heads", 3), "does not divide model.d_model"),
    (lambda c: (setattr(c.mesh, "data", -1), setattr(c.mesh, "fsdp", 3)), "cannot fill 8 devices"),
    (lambda c: (setattr(c.mesh, "data", 2), setattr(c.mesh, "fsdp", 2)), "there are 8 devices"),
    (lambda c: setattr(c.train, "batch_size", 12), "not divisible by data-parallel size 8"),
    (lambda c: setattr(c.train, "microbatches", 3), "x train.microbatches=3"),
    (lambda c: setattr(c.train, "tokens", 100), "less than one optimizer step"),
    (lambda c: setattr(c.data, "corpus", "/no/such/folder"), "fix the path"),
    (lambda c: (setattr(c.mesh, "tensor", 4), setattr(c.mesh, "data", 2)), "must divide model.n_heads"),
])
def test_bad_configs_are_refused(mutate, message):
    c = tiny()
    mutate(c)
    with pytest.raises(ConfigError, match=message):
        train_lib.validate(RunConfig.from_configdict(c))


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant 'huge'.*tiny"):
        gpt.get_config("huge")


def test_every_variant_loads_and_the_ladder_spans_100k_to_1b():
    sizes = []
    for name, (n_layers, d_model) in gpt.LADDER.items():
        c = gpt.get_config(name)
        assert d_model / n_layers == gpt.ASPECT_RATIO
        assert c.model.d_model % c.model.n_heads == 0
        sizes.append(flops.param_counts(c.model)["nonembedding_params"])
    assert sizes == sorted(sizes)
    assert sizes[0] < 150_000 and sizes[-1] > 1_000_000_000


@pytest.mark.slow
def test_cli_error_is_one_line_and_nothing_is_written_over(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps({"other": "run"}))
    base = [sys.executable, "-m", "experiments.train", "--config", "configs/gpt.py:tiny",
            "--workdir", str(workdir), "--config.model.n_layers=1", "--config.model.d_model=32",
            "--config.model.n_heads=2", "--config.model.context_length=16",
            "--config.train.batch_size=8", "--config.train.tokens=256", "--progress=false"]
    out = subprocess.run(base + ["--config.model.n_heads=3"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: model.n_heads=3 does not divide")
    assert "Traceback" not in out.stderr
    # A workdir holding a different run is refused, and its config.json is left alone.
    out = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "holds a run with a different config" in out.stderr
    assert json.loads((workdir / "config.json").read_text()) == {"other": "run"}


def test_branch_resumes_after_its_sweep_directory_moved(tmp_path):
    from research import run_dir

    work = str(tmp_path / "branch")
    c = tiny()
    c.train.init_from, c.train.init_step = "/old/sweep/runs/800k-D2.1M-parent", 1
    run_dir.claim_workdir(work, RunConfig.from_configdict(c))
    moved = tiny()
    moved.train.init_from, moved.train.init_step = "/new/place/runs/800k-D2.1M-parent/", 1
    run_dir.claim_workdir(work, RunConfig.from_configdict(moved))  # same parent run, elsewhere: resumes
    assert run_dir.config_hash(RunConfig.from_configdict(c)) == run_dir.config_hash(RunConfig.from_configdict(moved))
    other = tiny()
    other.train.init_from, other.train.init_step = "/new/place/runs/300k-D2.1M-parent", 1
    with pytest.raises(ConfigError, match="differs in train.init_from"):
        run_dir.claim_workdir(work, RunConfig.from_configdict(other))
