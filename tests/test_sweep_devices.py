"""Local workers split the machine's devices: 2 workers on 8 fake CPU devices get 4 each."""

import json
import os
import pathlib
import subprocess
import sys

from experiments.sweeplib import devices
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def train(config, workdir, progress=False):
    """Stand-in trainer: records the devices its process sees, then the real trainer's checks."""
    import jax

    from research import train as real

    real.validate(config)  # the run's mesh, validated where the run runs
    wd = pathlib.Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    result = {"run": wd.name, "status": "done", "loss": 1.0, "devices": jax.device_count(),
              "xla_flags": os.environ.get("XLA_FLAGS", "")}
    (wd / "result.json").write_text(json.dumps(result))
    return result


@pytest.mark.slow
def test_two_workers_on_8_cpu_devices_get_4_each(tmp_path):
    sweep = tmp_path / "s.py"
    sweep.write_text(
        "from configs.sweeps.smoke import get_config as smoke\n"
        "def get_config(arg=''):\n"
        "    s = smoke()\n"
        "    s.runner.train_fn = 'tests.test_sweep_devices:train'\n"
        "    s.runner.poll_s = 0.1\n"
        "    s.analysis.enabled = False\n"
        "    return s\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               XLA_FLAGS="--xla_force_host_platform_device_count=8")
    p = subprocess.run([sys.executable, "-m", "experiments.sweep", "run", "--config", str(sweep),
                        "--workdir", str(tmp_path / "w"), "--workers", "2", "--quiet"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    results = [json.loads(f.read_text()) for f in (tmp_path / "w" / "runs").glob("*/result.json")]
    assert len(results) == 4 and all(r["devices"] == 4 for r in results), results


def test_gpu_split_follows_visible_devices_and_turns_preallocation_off():
    envs = devices.worker_envs("gpu", 4, 2, 2, environ={"CUDA_VISIBLE_DEVICES": "1,3,5,7"})
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["1,3", "5,7"]
    assert all(e["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" for e in envs)
    shared = devices.worker_envs("gpu", 1, 2, 1, environ={})  # more workers than GPUs: share
    assert all("CUDA_VISIBLE_DEVICES" not in e for e in shared)
    tpu = devices.worker_envs("tpu", 4, 2, 2, environ={})
    assert [e["TPU_VISIBLE_CHIPS"] for e in tpu] == ["0,1", "2,3"]
    cpu = devices.worker_envs("cpu", 8, 2, 4, environ={"XLA_FLAGS": "--foo "
                                                      "--xla_force_host_platform_device_count=8"})
    assert cpu[0]["XLA_FLAGS"] == "--foo --xla_force_host_platform_device_count=4"
