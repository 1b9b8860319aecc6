"""The command-line dialect: config loading and overrides, one-line errors with exit codes,
deprecated spellings, help texts, progress lines, the optional W&B sink and provenance.

Argument parsing is tested in-process; subprocesses only where the whole command's stderr and
exit code are the behaviour under test.
"""

import argparse
import importlib.metadata
import io
import json
import os
import shlex
import subprocess
import sys
import types

import jax
import pytest

from configs import gpt
from experiments import bench, cli, sample, sweep, train
from research import metrics, provenance, run_dir
from research.errors import (EXIT_FAILED, EXIT_STORAGE, EXIT_USER, ConfigError, StorageError,
                             UserError)
from research.config import RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.model.n_layers=1", "--config.model.d_model=32", "--config.model.n_heads=2",
        "--config.model.context_length=16", "--config.train.batch_size=8",
        "--config.train.eval_batches=2", "--config.train.log_every=1"]


# --- configs: --config FILE[:ARG] and --config.KEY=VALUE -------------------------------------

def test_overrides_are_typed_and_the_config_is_locked():
    c = cli.load_config("configs/gpt.py:100k", [
        "--config.train.tokens=5_000_000", "--config.model.position=rope",
        "--config.train.keep_steps=(8,16)", "--config.train.learning_rate", "0.01",
        "--config.train.allow_config_change", "--config.log.wandb=True"])
    assert c.train.tokens == 5_000_000 and c.model.position == "rope"
    assert c.train.keep_steps == (8, 16) and c.train.learning_rate == 0.01
    assert c.train.allow_config_change is True and c.log.wandb is True
    assert (c.model.n_layers, c.model.d_model) == gpt.LADDER["100k"]  # the variant, then overrides
    with pytest.raises(AttributeError):
        c.train.new_key = 1  # locked: a key that does not exist cannot appear


@pytest.mark.parametrize("tokens, needle", [
    (["--config.train.tokenz=1"], "unknown config key 'train.tokenz'; did you mean --config.train.tokens?"),
    (["--config.modle.d_model=8"], "unknown config key 'modle.d_model'; did you mean --config.model.d_model?"),
    (["--config.train.tokens=1e6"], "config.train.tokens is int (now 1000000)"),
    (["--config.train.learning_rate=fast"], "config.train.learning_rate is float"),
])
def test_bad_overrides_are_one_line_config_errors(tokens, needle):
    with pytest.raises(ConfigError) as info:
        cli.load_config("configs/gpt.py:tiny", tokens)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == EXIT_USER


def test_unknown_variant_suggests_the_closest_and_lists_them_all():
    with pytest.raises(ConfigError, match=r"unknown variant 'tinny' in configs/gpt.py; "
                                          r"did you mean configs/gpt.py:tiny\?"):
        cli.build_config("configs/gpt.py:tinny")
    with pytest.raises(ConfigError) as info:
        cli.build_config("configs/gpt.py:huge")
    assert f"choose one of: {', '.join(gpt.VARIANTS)}" in str(info.value)
    with pytest.raises(ConfigError, match="config file 'configs/nope.py' not found"):
        cli.build_config("configs/nope.py:tiny")


def test_sweep_flags_win_over_config_overrides():
    args = sweep.parse_args(["run", "--config", "configs/sweeps/smoke.py", "--workdir", "w",
                             "--config.executor.workers=3", "--workers", "2", "--no-analysis"])
    s, _ = sweep.load(args, checks=False)
    assert s.executor.workers == 2 and s.analysis.enabled is False


# --- flags: one spelling each -------------------------------------------------------------------

def test_dashed_flags_parse_and_removed_spellings_are_refused_with_the_new_one(capsys):
    args, _ = cli.parse(sample.build_parser(), ["runs/x", "--top-k", "5", "--top-p", "0.9",
                                                "--max-new-tokens", "7"], allow_overrides=False)
    assert (args.run_dir, args.top_k, args.top_p, args.max_new_tokens) == ("runs/x", 5, 0.9, 7)
    p = train.build_parser()
    args, overrides = cli.parse(p, ["--workdir", "w", "--num-processes=2", "--process-id", "1",
                                    "--config.train.seed=3", "--no-progress"])
    assert (args.num_processes, args.process_id, args.progress) == (2, 1, False)
    assert overrides == ["--config.train.seed=3"]
    assert capsys.readouterr().err == ""
    for parser, argv, new in ((p, ["--num_processes=2"], "--num-processes"),
                              (sample.build_parser(), ["runs/x", "--max_new_tokens"],
                               "--max-new-tokens")):
        with pytest.raises(SystemExit) as info:
            cli.parse(parser, argv, allow_overrides=False)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"(did you mean {new}?)" in err, err


@pytest.mark.slow
def test_usage_errors_are_one_line_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as info:
        cli.parse(sample.build_parser(), ["runs/x", "--max-new-tokenz", "3"], allow_overrides=False)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unrecognized arguments: --max-new-tokenz")
    assert "did you mean --max-new-tokens?" in err
    # No abbreviations: a near miss of a sweep flag is refused (in-process: nothing runs).
    with pytest.raises(SystemExit) as info:
        sweep.main(["run", "--config", "configs/sweeps/smoke.py", "--workdir", "w", "--worker", "2"])
    assert info.value.code == 2
    assert "did you mean --workers?" in capsys.readouterr().err
    # sample takes no config: an override is an unknown argument, not silently dropped.
    with pytest.raises(SystemExit):
        cli.parse(sample.build_parser(), ["runs/x", "--config.train.seed=1"], allow_overrides=False)


# --- help texts ---------------------------------------------------------------------------------

def test_help_texts_list_variants_subcommands_and_defaults():
    text = train.build_parser().format_help()
    for name in gpt.VARIANTS:
        assert f"  {name:>6}  " in text, name
    assert "1.4b  48 x 1536, 24 heads" in text
    flat = " ".join(text.split())  # argparse wraps lines
    assert "(default: configs/gpt.py:tiny)" in flat and "(default: 127.0.0.1:12355)" in flat
    text = sweep.build_parser().format_help()
    for name in ("plan", "run", "status"):
        assert f"    {name} " in text and sweep.COMMANDS[name].split()[0] in text
    assert "(default: 200)" in sample.build_parser().format_help()
    assert "(default: 10)" in bench.build_parser().format_help()
    for p in (train.build_parser(), sample.build_parser(), bench.build_parser()):
        assert "_" not in "".join(o for a in p._actions for o in a.option_strings
                                  if a.help != argparse.SUPPRESS)  # dashes only


# --- errors: one line and the error's exit code; bugs keep their traceback ---------------------

def test_guarded_maps_user_errors_to_exit_codes_and_lets_bugs_through(capsys):
    def raises(e):
        def main(argv):
            raise e
        return main
    assert cli.guarded(raises(UserError("bad thing; fix it\nmore")), []) == EXIT_USER
    assert capsys.readouterr().err == "error: bad thing; fix it\n"
    assert cli.guarded(raises(StorageError("disk full; free space")), []) == EXIT_STORAGE
    assert cli.guarded(raises(KeyboardInterrupt()), []) == 130
    capsys.readouterr()
    with pytest.raises(ValueError, match="a bug"):  # not a UserError: the traceback stays
        cli.guarded(raises(ValueError("a bug")), [])
    with pytest.raises(ZeroDivisionError):
        cli.guarded(lambda argv: 1 / 0, [])


def run_cli(module, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("args, start", [
    (["--config.train.tokenz=1"], "error: unknown config key 'train.tokenz'; did you mean --config.train.tokens?"),
    (["--config", "configs/gpt.py:huge"], "error: unknown variant 'huge' in configs/gpt.py; choose one of: tiny,"),
    (["--config.data.corpus=/nonexistent"], "error: data.corpus: '/nonexistent' is neither"),
])
def test_train_config_errors_exit_2_with_exactly_one_line(tmp_path, args, start):
    out = run_cli("experiments.train", "--workdir", str(tmp_path / "run"), *TINY, *args)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(start) and out.stderr.count("\n") == 1, out.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
def test_sweep_status_of_a_directory_without_a_sweep(tmp_path):
    out = run_cli("experiments.sweep", "status", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr == f"error: {tmp_path} holds no sweep (no sweep.json); pass --config or run it first\n"


# --- the trainer through the CLI: progress lines, provenance, divergence -----------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("datasets"))


@pytest.mark.slow
def test_train_cli_writes_provenance_and_progress_lines(tmp_path, data_dir, capsys):
    workdir = tmp_path / "run"
    code = train.main(["--workdir", str(workdir), *TINY, "--config.train.tokens=512",
                       f"--config.data.data_dir={data_dir}"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("done: loss ")
    # stderr is not a terminal here: plain lines, the last one at the final step, no redraws.
    assert "\r" not in err
    lines = [x for x in err.splitlines() if x.startswith("step ")]
    assert lines and lines[0].startswith("step 1/4 (25%)") and lines[-1].startswith("step 4/4 (100%) loss=")
    result = json.loads((workdir / "result.json").read_text())
    p = result["provenance"]
    assert p["packages"] == {n: importlib.metadata.version(n) for n in provenance.PACKAGES}
    assert p["device_count"] == jax.device_count() == 8 and p["process_count"] == 1
    assert p["platform"] == "cpu" and p["device_kind"] == jax.devices()[0].device_kind
    assert p["python"] == ".".join(map(str, sys.version_info[:3]))
    assert shlex.split(p["command"]) == sys.orig_argv  # in-process: this pytest's command line
    assert p["git_commit"] == provenance.git_state()["commit"]


@pytest.mark.slow
def test_diverged_run_exits_1_with_one_line(tmp_path, data_dir, capsys):
    code = train.main(["--workdir", str(tmp_path / "run"), *TINY, "--config.train.tokens=512",
                       f"--config.data.data_dir={data_dir}", "--config.train.learning_rate=1e12",
                       "--config.train.grad_clip=1e30", "--no-progress"])
    err = capsys.readouterr().err
    assert code == EXIT_FAILED
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: run diverged after "), err


# --- progress lines -----------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_lines_are_periodic_and_end_at_the_last_step():
    stream, clock = io.StringIO(), Clock()
    bar = metrics.progress(total=100, initial=20, stream=stream, every_s=10, clock=clock)
    assert isinstance(bar, metrics.ProgressLines)  # a StringIO is not a terminal
    clock.t = 5.0
    bar.update()  # the first step (compilation) is reported at once
    for _ in range(9):  # 9 steps in 9 s: under the 10 s period, silent
        clock.t += 1.0
        bar.update()
    bar.set_postfix(loss="2.500")
    clock.t += 1.0
    bar.update()  # 10 s since the last line
    clock.t += 1.0
    bar.update()
    bar.close()
    assert stream.getvalue().splitlines() == [
        "step 21/100 (21%) | 5s",
        "step 31/100 (31%) loss=2.500 | 15s, ETA 1m09s",  # 10 steps in 10 s, 69 to go
        "step 32/100 (32%) loss=2.500 | 16s, ETA 1m08s",
    ]
    silent = io.StringIO()
    off = metrics.progress(total=10, enabled=False, stream=silent)
    off.update()
    off.close()
    assert silent.getvalue() == ""


def test_progress_is_a_tqdm_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    bar = metrics.progress(total=10, stream=Terminal())
    assert type(bar).__module__.startswith("tqdm")
    bar.close()


# --- optional W&B sink --------------------------------------------------------------------------

class FakeWandb(types.ModuleType):
    """Records what the sink asks of wandb: the integration contract, without the package."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.logged, self.finished = [], [], 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return self

    def log(self, values, step):
        self.logged.append((step, dict(values)))

    def finish(self):
        self.finished += 1


def test_wandb_sink_logs_what_the_jsonl_holds_and_resumes_the_same_run(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    config = gpt.get_config("tiny")
    config.log.wandb, config.log.wandb_project, config.log.wandb_entity = True, "lab", ""
    settings = metrics.wandb_settings(RunConfig.from_configdict(config))
    assert settings == {"project": "lab", "entity": None, "group": None}
    metrics.check_tracking(RunConfig.from_configdict(config))  # installed (here: the fake): accepted
    w = metrics.MetricsWriter(str(tmp_path), config=RunConfig.from_configdict(config), wandb=settings)
    w.write(10, {"train/loss": 2.5, "train/lr": 1e-3})
    w.write(20, {"eval/loss": 2.25})
    w.close()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert fake.logged == [(r.pop("step"), r) for r in rows]
    assert fake.finished == 1
    first = fake.inits[0]
    assert first["project"] == "lab" and first["entity"] is None and first["resume"] == "allow"
    assert first["dir"] == str(tmp_path) and first["name"] == tmp_path.name
    assert first["config"]["train"]["tokens"] == config.train.tokens
    metrics.MetricsWriter(str(tmp_path), config=RunConfig.from_configdict(config), wandb=settings).close()
    assert fake.inits[1]["id"] == first["id"]  # a resumed run continues its W&B run


def test_wandb_off_by_default_and_a_clear_error_when_missing(tmp_path, monkeypatch):
    config = gpt.get_config("tiny")
    assert metrics.wandb_settings(RunConfig.from_configdict(config)) is None
    metrics.check_tracking(RunConfig.from_configdict(config))
    config.log.wandb = True
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with pytest.raises(ConfigError, match="log.wandb=True but wandb is not installed; pip install wandb"):
        metrics.check_tracking(RunConfig.from_configdict(config))
    with pytest.raises(ConfigError, match="wandb is not installed"):
        metrics.MetricsWriter(str(tmp_path), config=RunConfig.from_configdict(config), wandb=metrics.wandb_settings(RunConfig.from_configdict(config)))


def test_tracking_keys_change_neither_the_hash_nor_block_resume(tmp_path):
    a = gpt.get_config("tiny")
    b = gpt.get_config("tiny")
    b.log.wandb, b.log.wandb_project = True, "elsewhere"
    assert run_dir.config_hash(RunConfig.from_configdict(a)) == run_dir.config_hash(RunConfig.from_configdict(b))
    run_dir.claim_workdir(str(tmp_path), RunConfig.from_configdict(a))
    run_dir.claim_workdir(str(tmp_path), RunConfig.from_configdict(b))  # same run, now also tracked in W&B: resumes


# --- provenance ---------------------------------------------------------------------------------

def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.slow
def test_git_state_commit_dirty_and_not_a_checkout(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    assert provenance.git_state(str(repo)) == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": False}
    (repo / "runs").mkdir()
    (repo / "runs" / "out.txt").write_text("untracked output\n")
    assert provenance.git_state(str(repo))["dirty"] is False  # outputs are not code changes
    (repo / "a.py").write_text("x = 2\n")
    assert provenance.git_state(str(repo))["dirty"] is True
    plain = tmp_path / "plain"
    plain.mkdir()
    assert provenance.git_state(str(plain)) == {"commit": None, "dirty": None}
    assert provenance.collect(str(plain))["git_commit"] is None  # and nothing fails
