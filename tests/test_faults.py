"""Injected faults: damaged checkpoints, full and read-only disks, bad input before any write,
visible resume, worker names.

The reference is a tiny run of 80 steps with checkpoints every 20. A copy of it stopped by an
exception at step 70 (after the step-60 checkpoint; its in-flight save is finished on the way
out) holds checkpoints 40 and 60. Each test damages a fresh copy.

Disk faults use a real tmpfs (2 MB, or remounted read-only) where this process may mount one
(root on Linux); elsewhere the same assertions run with the OSError injected at the write call.
"""

import contextlib
import errno
import json
import os
import re
import pathlib
import shutil
import subprocess
import sys
import uuid

import jax
import pytest

from configs import gpt
from experiments.sweeplib import child, claims as claims_lib, layout, ledger
from common import files
from research import checkpoint, errors, run_dir, run_math, sharding, train as train_lib
from research import train_state
from research.config import RunConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS, EVERY = 80, 20


def tiny(tmp_root, steps=STEPS, every=EVERY):
    c = gpt.get_config("tiny")
    c.model.n_layers, c.model.d_model, c.model.n_heads, c.model.context_length = 1, 32, 2, 16
    c.train.batch_size = 8
    c.train.learning_rate = 3e-3
    c.train.tokens = 8 * 16 * steps
    c.train.eval_every, c.train.eval_batches = 40, 2
    c.train.checkpoint_every, c.train.keep_checkpoints, c.train.log_every = every, 2, 10
    c.mesh.data = -1  # the 8 fake devices here, the one CPU in the CLI subprocesses
    c.data.data_dir = str(tmp_root / "datasets")
    return c


class Stop(Exception):
    pass


def train_until(config, workdir, stop_step, monkeypatch):
    """Train, raising at `stop_step` (a crash after the checkpoint before it)."""
    real = train_lib.data_lib.train_batch

    def batch(data, *, step, **kw):
        if step == stop_step:
            raise Stop(step)
        return real(data, step=step, **kw)

    with monkeypatch.context() as m:
        m.setattr(train_lib.data_lib, "train_batch", batch)
        with pytest.raises(Stop):
            train_lib.train(RunConfig.from_configdict(config), str(workdir), progress=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    full = train_lib.train(RunConfig.from_configdict(tiny(root)), str(root / "full"), progress=False)
    with pytest.MonkeyPatch.context() as mp:
        train_until(tiny(root), root / "stopped", 70, mp)
    steps = sorted(int(p.name) for p in (root / "stopped" / "checkpoints").iterdir())
    assert steps == [40, 60], steps
    return root, full


@pytest.fixture
def stopped(base, tmp_path):
    root, _ = base
    work = tmp_path / "run"
    shutil.copytree(root / "stopped", work)
    return work


def state_dir(work, step):
    return work / "checkpoints" / str(step) / "state"


def largest_data_file(work, step):
    files = [p for p in (state_dir(work, step) / "ocdbt.process_0" / "d").iterdir()]
    return max(files, key=lambda p: p.stat().st_size)


def garble(path):
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, min(len(data), len(data) // 3 + 64)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated data file": lambda w: os.truncate(largest_data_file(w, 60), 10),
    "deleted manifest.ocdbt": lambda w: (state_dir(w, 60) / "manifest.ocdbt").unlink(),
    "deleted _METADATA": lambda w: (state_dir(w, 60) / "_METADATA").unlink(),
    "garbled manifest.ocdbt": lambda w: garble(state_dir(w, 60) / "manifest.ocdbt"),
    "garbled _METADATA": lambda w: garble(state_dir(w, 60) / "_METADATA"),
}


def abstract_state(config):
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
    trainer = train_state.build_trainer(RunConfig.from_configdict(config), mesh,
                                         run_math.steps(RunConfig.from_configdict(config)))
    return checkpoint.abstract_like(trainer.state_shapes, trainer.state_shardings)


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_newest_step_is_moved_aside_and_the_previous_restored(base, stopped, damage, capfd):
    root, _ = base
    DAMAGE[damage](stopped)
    manager = checkpoint.make_manager(str(stopped), tiny(root).train)
    warnings = []
    restored, skipped = checkpoint.restore_newest(manager, abstract_state(tiny(root)),
                                                  move_damaged=True, warn=warnings.append)
    manager.close()
    assert restored is not None and restored.step == 40
    assert [s for s, _ in skipped] == [60]
    assert len(warnings) == 1 and "step 60" in warnings[0] and "60.corrupt" in warnings[0]
    assert sorted(p.name for p in (stopped / "checkpoints").iterdir()) == ["40", "60.corrupt"]
    # Orbax lists only the good step and nothing of its own reached the terminal.
    assert checkpoint.make_manager(str(stopped), read_only=True).all_steps() == [40]
    out = capfd.readouterr()
    assert "Traceback" not in out.err + out.out and "Event loop is closed" not in out.err


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused_not_moved_aside(base, stopped):
    root, _ = base
    other = tiny(root)
    other.model.d_model = 64
    manager = checkpoint.make_manager(str(stopped), other.train)
    with pytest.raises(errors.CheckpointError, match="step 60 .* does not fit this run"):
        checkpoint.restore_newest(manager, abstract_state(other), move_damaged=True,
                                  warn=pytest.fail)
    manager.close()
    assert sorted(p.name for p in (stopped / "checkpoints").iterdir()) == ["40", "60"]


@pytest.mark.slow
def test_done_when_truncated_step_60_resumes_from_40_with_the_uninterrupted_loss(base, stopped,
                                                                                  capfd):
    root, full = base
    DAMAGE["truncated data file"](stopped)
    capfd.readouterr()
    result = train_lib.train(RunConfig.from_configdict(tiny(root)), str(stopped), progress=False)
    err = capfd.readouterr().err.splitlines()
    warnings = [line for line in err if line.startswith("warning:")]
    assert len(warnings) == 1 and "checkpoint step 60 is unreadable" in warnings[0], err
    assert any(line.startswith("resumed from step 40 (checkpoint of ") for line in err), err
    assert result["status"] == "done"
    assert result["loss"] == pytest.approx(full["loss"], rel=1e-5)
    # metrics.jsonl was cut back to step 40: every (step, metric) appears once.
    rows = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], k) for r in rows for k in r if k != "step"]
    assert len(keys) == len(set(keys))
    assert {r["step"] for r in rows if "train/loss" in r} == set(range(10, STEPS + 1, 10))


@pytest.mark.slow
def test_no_readable_checkpoint_starts_from_step_0_and_says_so(base, stopped, capfd):
    root, full = base
    for step in (40, 60):
        (state_dir(stopped, step) / "manifest.ocdbt").unlink()
    capfd.readouterr()
    starts = []
    result = train_lib.train(RunConfig.from_configdict(tiny(root)), str(stopped), progress=False, on_start=starts.append)
    err = capfd.readouterr().err.splitlines()
    assert sum(line.startswith("warning: checkpoint step") for line in err) == 2, err
    assert "no usable checkpoint; starting from step 0" in err
    assert starts == [{"from_step": 0, "skipped": [60, 40]}]
    assert result["loss"] == pytest.approx(full["loss"], rel=1e-5)
    assert {p.name for p in (stopped / "checkpoints").iterdir()} >= {"40.corrupt", "60.corrupt"}


@pytest.mark.slow
def test_branch_from_a_damaged_parent_step_is_a_checkpoint_error(base, stopped, tmp_path):
    root, _ = base
    DAMAGE["truncated data file"](stopped)
    c = tiny(root, steps=70)
    c.train.init_from, c.train.init_step = str(stopped), 60
    with pytest.raises(errors.CheckpointError, match="step 60 of .* is unreadable") as e:
        train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "branch"), progress=False)
    assert e.value.exit_code == errors.EXIT_CORRUPT_CHECKPOINT
    assert (state_dir(stopped, 60)).exists()  # the parent's files are not touched
    assert child.exit_code_of(e.value) == errors.EXIT_CORRUPT_CHECKPOINT


@pytest.mark.slow
def test_sampling_skips_a_damaged_step_without_moving_it(base, stopped):
    DAMAGE["deleted manifest.ocdbt"](stopped)
    warnings = []
    config, params = checkpoint.load_for_inference(str(stopped), warn=warnings.append)
    assert len(warnings) == 1 and "step 60" in warnings[0]
    assert (stopped / "checkpoints" / "60").exists()  # read-only use moves nothing
    assert config.model.d_model == 32 and params


@pytest.mark.slow
def test_bad_corpus_or_tokenizer_writes_nothing(tmp_path):
    c = tiny(tmp_path)
    c.data.corpus = str(tmp_path / "no-such-folder")
    with pytest.raises(errors.UserError, match="no-such-folder"):
        train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "a"), progress=False)
    c = tiny(tmp_path)
    c.data.tokenizer = "wordpiece"
    with pytest.raises(errors.UserError, match="wordpiece"):
        train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "b"), progress=False)
    c = tiny(tmp_path)
    c.model.vocab_size = 300
    with pytest.raises(errors.UserError, match="vocab_size"):
        train_lib.train(RunConfig.from_configdict(c), str(tmp_path / "c"), progress=False)
    assert not any((tmp_path / d).exists() for d in "abc")


def test_metrics_cut_back_drops_later_rows_and_a_partial_line(tmp_path):
    rows = [{"step": s, "train/loss": 1.0} for s in (10, 20, 30)]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 40, "tra'
    (tmp_path / "metrics.jsonl").write_text(text)
    assert run_dir.cut_metrics(str(tmp_path), 20) == 2
    kept = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert kept == [10, 20]
    assert run_dir.cut_metrics(str(tmp_path), 20) == 0  # nothing to drop: not rewritten


# ---------------------------------------------------------------- storage


def can_mount() -> bool:
    probe = pathlib.Path(f"/tmp/mount-probe-{uuid.uuid4().hex[:8]}")
    probe.mkdir()
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    except OSError:
        return False
    finally:
        probe.rmdir()


MOUNTABLE = can_mount()


@contextlib.contextmanager
def tmpfs(path, size):
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def cli_env():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if "force_host_platform_device_count" not in f)
    return env


def train_cli(config_overrides, workdir, inject=None):
    """experiments.train in a subprocess; `inject` = (errno, first failing step) makes every
    checkpoint save from that step on raise that OSError (where no tmpfs can be mounted)."""
    flags = ["--config", "configs/gpt.py:tiny", *config_overrides, "--workdir", str(workdir)]
    if inject is None:
        cmd = [sys.executable, "-m", "experiments.train", *flags]
    else:
        code, step = inject
        patch = ("import errno, os, runpy, sys; from research import checkpoint; real = checkpoint.save\n"
                 "def save(m, s, state, **kw):\n"
                 f"    if s >= {step}: raise OSError({code}, os.strerror({code}), str(m.directory))\n"
                 "    return real(m, s, state, **kw)\n"
                 "checkpoint.save = save; sys.argv = ['train'] + sys.argv[1:]\n"
                 "runpy.run_module('experiments.train', run_name='__main__')")
        cmd = [sys.executable, "-c", patch, *flags]
    return subprocess.run(cmd, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)


def overrides(root, steps=STEPS):
    c = tiny(root, steps=steps)
    m, t = c.model, c.train
    return [f"--config.model.n_layers={m.n_layers}", f"--config.model.d_model={m.d_model}",
            f"--config.model.n_heads={m.n_heads}", f"--config.model.context_length={m.context_length}",
            f"--config.train.batch_size={t.batch_size}", f"--config.train.tokens={t.tokens}",
            f"--config.train.learning_rate={t.learning_rate}",
            f"--config.train.checkpoint_every={t.checkpoint_every}", "--config.train.log_every=10",
            "--config.train.eval_every=40", "--config.train.eval_batches=2", "--config.mesh.data=-1",
            f"--config.data.data_dir={c.data.data_dir}"]


def lines_after_progress_bar(stderr: str) -> list[str]:
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    # A tqdm bar on a terminal, or the plain "step N/M (P%) ..." lines written to a pipe.
    bar = [i for i, line in enumerate(lines) if "%|" in line or re.match(r"step \d+/\d+ \(", line)]
    return lines[bar[-1] + 1:] if bar else lines


def assert_newest_checkpoint_readable(root, workdir):
    manager = checkpoint.make_manager(str(workdir), read_only=True)
    assert manager.all_steps(), "no checkpoint survived"
    restored, skipped = checkpoint.restore_newest(manager, abstract_state(tiny(root)),
                                                  move_damaged=False, warn=lambda m: None)
    assert restored is not None and restored.step == max(manager.all_steps()) and not skipped


@pytest.mark.slow
def test_disk_full_ends_with_one_line_exit_3_and_a_readable_checkpoint(base, tmp_path):
    root, _ = base
    if MOUNTABLE:
        # 1 MB holds one checkpoint of this model (0.6-0.7 MB with Adam's moments), not two.
        with tmpfs(tmp_path / "disk", "1m") as disk:
            proc = train_cli(overrides(root), disk / "run")
            assert_newest_checkpoint_readable(root, disk / "run")
    else:
        proc = train_cli(overrides(root), tmp_path / "run", inject=(errno.ENOSPC, 40))
        assert_newest_checkpoint_readable(root, tmp_path / "run")
    assert proc.returncode == errors.EXIT_STORAGE, proc.stderr[-2000:]
    after = lines_after_progress_bar(proc.stderr)
    assert len(after) <= 3, "\n".join(after)
    assert after[-1].startswith("error: ") and "ENOSPC" in after[-1] and "/run" in after[-1]
    assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr


@pytest.mark.slow
def test_read_only_storage(base, tmp_path, monkeypatch):
    """A finished run on read-only storage is read and sampled; an unfinished one ends with
    one line and exit 3, its newest checkpoint intact."""
    root, full = base
    with contextlib.ExitStack() as stack:
        if MOUNTABLE:
            top = stack.enter_context(tmpfs(tmp_path / "ro", "8m"))
        else:
            top = tmp_path / "ro"
        finished, unfinished = top / "finished", top / "unfinished"
        shutil.copytree(root / "full", finished)
        shutil.copytree(root / "stopped", unfinished)
        if MOUNTABLE:
            subprocess.run(["mount", "-o", "remount,ro", str(top)], check=True)
            proc = train_cli(overrides(root), unfinished)
        else:
            proc = train_cli(overrides(root), unfinished, inject=(errno.EROFS, 0))

        def refuse(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system (injected)")
        for module, name in ((os, "makedirs"), (os, "replace"), (files, "write_atomic"),
                             (files, "write_json"), (run_dir, "cut_metrics")):
            monkeypatch.setattr(module, name, refuse)  # on tmpfs: proof that nothing writes
        assert train_lib.train(RunConfig.from_configdict(tiny(root)), str(finished), progress=False) == full
        config, params = checkpoint.load_for_inference(str(finished))
        assert config.model.d_model == 32 and params
        monkeypatch.undo()
        if MOUNTABLE:
            assert_newest_checkpoint_readable(root, unfinished)
    assert proc.returncode == errors.EXIT_STORAGE, proc.stderr[-2000:]
    after = lines_after_progress_bar(proc.stderr)
    assert len(after) <= 3 and after[-1].startswith("error: ") and "EROFS" in after[-1], after
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_injected_storage_errors_become_storage_errors(tmp_path, monkeypatch):
    for code in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
        def refuse(path, obj, *args, code=code, real=files.write_json, **kwargs):
            if os.path.basename(path) != "config.json":  # the token store, say
                return real(path, obj, *args, **kwargs)
            raise OSError(code, os.strerror(code), path)
        monkeypatch.setattr(files, "write_json", refuse)
        with pytest.raises(errors.StorageError) as e:
            train_lib.train(RunConfig.from_configdict(tiny(tmp_path)), str(tmp_path / "run"), progress=False)
        assert errno.errorcode[code] in str(e.value) and "config.json" in str(e.value)
        assert e.value.exit_code == errors.EXIT_STORAGE
        assert child.exit_code_of(e.value) == errors.EXIT_STORAGE


# ---------------------------------------------------------------- sweep bookkeeping


@pytest.mark.slow
def test_two_sweep_processes_on_one_host_have_distinct_worker_names():
    code = "from experiments.sweeplib import claims; print(claims.worker_name('local0'))"
    names = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(), text=True,
                            capture_output=True, check=True).stdout.strip() for _ in range(2)]
    assert names[0] != names[1]
    for name in names:
        assert name.startswith(f"local0@{claims_lib.HOST}:") and name.rsplit(":", 1)[1].isdigit()


def test_start_events_say_resumed_or_from_scratch_and_keep_the_run_interrupted(tmp_path):
    sd = layout.SweepDir(tmp_path)
    sd.make()
    ledger.append_event(sd, "r", "started", attempt=1, after_interrupt=False)
    record = child.start_recorder(sd, "r")
    record({"from_step": 40, "checkpoint_time": "2026-01-01 00:00:00 UTC", "skipped": [60]})
    ledger.append_event(sd, "r", "started", attempt=2, after_interrupt=True)
    record({"from_step": 0, "skipped": []})
    evts = ledger.events(sd, "r")
    assert [e["event"] for e in evts] == ["started", "resumed", "started", "from_scratch"]
    assert evts[1]["from_step"] == 40 and evts[1]["skipped"] == [60]

    class Run:
        name, depends_on = "r", None

    claims = claims_lib.Claims(sd, timeout_s=60, heartbeat_s=60)
    assert ledger.run_state(sd, Run(), claims, {}, retries=1).state == "interrupted"


def test_storage_and_corrupt_checkpoint_failures_are_final_not_retried(tmp_path):
    import ml_collections

    from experiments.sweeplib import worker as worker_lib

    sd = layout.SweepDir(tmp_path)
    sd.make()
    sweep = ml_collections.ConfigDict({"runner": {"retries": 3}})
    w = worker_lib.Worker(sd, [], sweep, claims_lib.Claims(sd, 60, 60), "w")

    class Run:
        name = "r"

    for rc, kind in ((child.EXIT_STORAGE, "storage"), (errors.EXIT_USER, "user"),
                     (child.EXIT_CORRUPT_CHECKPOINT, "corrupt_checkpoint")):
        outcome, fields = w._outcome(Run(), rc, tmp_path / "r.reason")
        assert outcome == "failed" and fields["permanent"] and fields["kind"] == kind
    outcome, fields = w._outcome(Run(), child.EXIT_CRASH, tmp_path / "r.reason")
    assert outcome == "failed" and not fields["permanent"]  # a crash gets its retries
    assert len({child.EXIT_DONE, child.EXIT_CRASH, errors.EXIT_USER, child.EXIT_STORAGE,
                child.EXIT_CORRUPT_CHECKPOINT, child.EXIT_DIVERGED}) == 6
