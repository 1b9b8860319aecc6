"""Files that runs and sweeps write are readable by the group and others under umask 022
(mkstemp alone would leave them 0600), and the writer honours a stricter umask too."""

import contextlib
import os
import pathlib
import stat
import subprocess
import sys

import numpy as np
import pytest

from common import files
from research.config import RunConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_gets_the_mode_a_plain_open_would(tmp_path, mask, expected):
    with umask(mask):
        files.write_atomic(tmp_path / "a.txt", "text")
        files.write_json(tmp_path / "b.json", {"x": 1})
        with files.atomic_file(tmp_path / "c.npy") as f:
            np.save(f, np.arange(3))
        with open(tmp_path / "plain", "w"):
            pass
    assert mode(tmp_path / "plain") == expected
    for name in ("a.txt", "b.json", "c.npy"):
        assert mode(tmp_path / name) == expected, name
    assert files.read_json(tmp_path / "b.json") == {"x": 1}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    files.write_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with files.atomic_file(tmp_path / "a.txt") as f:
            f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert files.read_json(tmp_path / "missing.json", default=None) is None
    with pytest.raises(FileNotFoundError):
        files.read_json(tmp_path / "missing.json")


def test_run_and_token_store_files_are_world_readable(tmp_path):
    from configs import gpt
    from research import run_dir
    from research.data import batches as data_lib
    from research.data.tokenizer import train_bpe
    from tests.test_data_sources import cfg_for, make_docs, write_jsonl

    with umask(0o022):
        c = gpt.get_config("100k")
        run_dir.claim_workdir(str(tmp_path / "run"), RunConfig.from_configdict(c))
        corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(10))
        td = data_lib.load_token_data(cfg_for(corpus, tmp_path / "data", store_workers=1),
                                      progress=False)
        tok = train_bpe(["hello world, the quick brown fox " * 50] * 20, 300)
        tok.save(tmp_path / "run" / "tokenizer.model")
    store = pathlib.Path(td.info["store"])
    stored = [p for p in store.rglob("*") if p.is_file()]
    assert len(stored) >= 3  # tokens, document offsets, info.json
    for path in (tmp_path / "run" / "config.json", tmp_path / "run" / "tokenizer.model", *stored):
        assert mode(path) == 0o644, path
    assert mode(store) == 0o755


@pytest.mark.slow
def test_sweep_files_are_world_readable(tmp_path):
    """A whole (fake-trainer) sweep under umask 022: plan, specs, results, runs' files."""
    from tests.test_sweep_fake import write_sweep_file
    from experiments.sweeplib import claims as claims_lib, layout

    cfg = write_sweep_file(tmp_path, variants=("100k",), tokens=(64 * 20,))
    wd = tmp_path / "w"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with umask(0o022):  # the sweep inherits it
        proc = subprocess.run([sys.executable, "-m", "experiments.sweep", "run", "--config", cfg,
                               "--workdir", str(wd), "--quiet"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        sd = layout.SweepDir(wd)
        claims = claims_lib.Claims(sd, timeout_s=60, heartbeat_s=60)
        with sd.lock():
            assert claims.try_claim("some-run", "me")
        claims.close()
    written = [p for p in wd.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"sweep.json", "results.csv", "result.json", "some-run.json"} <= names
    assert any(p.parent.name == "specs" for p in written)
    unreadable = [str(p.relative_to(wd)) for p in written if mode(p) & 0o044 != 0o044]
    assert unreadable == []


def test_read_jsonl_skips_a_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "loss": 3.5}\n{"step": 3, "lo')
    assert files.read_jsonl(path) == [{"step": 1}, {"step": 2, "loss": 3.5}]
    with pytest.raises(FileNotFoundError):
        files.read_jsonl(tmp_path / "missing.jsonl")
