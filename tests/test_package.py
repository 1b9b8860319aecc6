"""The installable package: pyproject.toml, the `scaling-lab` console command, commands that
work from any directory, and (slow) a real `pip install -e .` into a throwaway venv."""

import os
import pathlib
import site
import subprocess
import sys
import tomllib

import pytest

from experiments import cli, lab

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_ships_every_package_and_the_console_command():
    project = pyproject()
    packages = set(project["tool"]["setuptools"]["packages"])
    on_disk = {str(p.parent.relative_to(ROOT)).replace(os.sep, ".")
               for top in ("common", "research", "experiments", "analysis", "configs")
               for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts}
    assert on_disk == packages
    for package in packages:  # an __init__.py each, so setuptools finds their modules
        assert (ROOT / package.replace(".", os.sep) / "__init__.py").is_file(), package
    assert project["project"]["scripts"]["scaling-lab"] == "experiments.lab:main"
    assert project["project"]["license"]["text"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert "cff-version" in (ROOT / "CITATION.cff").read_text()


def test_console_command_lists_and_dispatches(capsys):
    assert lab.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "sample", "sweep", "fit", "devices"):
        assert f"  {name} " in out
    assert lab.main(["trian"]) == 2
    assert "did you mean train?" in capsys.readouterr().err
    assert lab.main(["devices"]) == 0
    assert "platform: cpu" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        lab.main(["fit", "--help"])
    assert e.value.code == 0 and "usage: python -m analysis fit" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # a one-line error and its exit code
        lab.main(["sample", "/nonexistent-run"])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(lab.COMMANDS))
def test_every_console_command_reaches_a_main(name):
    module, _, kind = lab.COMMANDS[name]
    assert callable(getattr(__import__(module, fromlist=["main"]), "main"))
    assert kind in ("guarded", "code", "analysis")


def test_shipped_configs_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.load_config("configs/gpt.py:tiny").variant == "tiny"
    assert cli.build_config("configs/sweeps/smoke.py").name == "smoke"
    (tmp_path / "configs").mkdir()  # a file of that name here wins
    (tmp_path / "configs" / "gpt.py").write_text(
        "from configs.gpt import get_config as g\n"
        "def get_config(arg=''):\n    c = g('tiny')\n    c.variant = 'mine'\n    return c\n")
    assert cli.build_config("configs/gpt.py").variant == "mine"


@pytest.mark.slow
def test_pip_install_gives_the_command_and_the_api_outside_the_repository(tmp_path):
    """`pip install -e . --no-deps` into a venv that borrows this environment's packages."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    own = subprocess.run([py, "-c", "import site; print(site.getsitepackages()[0])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    pathlib.Path(own, "borrowed.pth").write_text(site.getsitepackages()[0] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run([py, "-m", "pip", "install", "-q", "-e", str(ROOT), "--no-deps"],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
    assert install.returncode == 0, install.stderr[-2000:]
    out = subprocess.run([venv / "bin" / "scaling-lab", "--help"], capture_output=True,
                         text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0 and "commands:" in out.stdout
    api = subprocess.run([py, "-c", "from analysis import load_results, Law; print('ok')"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert api.stdout.strip() == "ok", api.stderr[-2000:]
