"""Two local processes joined by jax.distributed on 127.0.0.1 (2 CPU devices each) train the
same run as one process with 4 devices: each loads only its rows of every batch."""

import json
import os
import socket
import subprocess
import sys
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--config", "configs/gpt.py:tiny", "--config.model.n_layers=1",
        "--config.model.d_model=32", "--config.model.n_heads=2",
        "--config.model.context_length=16", "--config.train.batch_size=8",
        "--config.train.tokens=2048", "--config.train.eval_batches=2", "--no-progress"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    data = [f"--config.data.data_dir={tmp_path / 'data'}"]
    cmd = [sys.executable, "-m", "experiments.train", *ARGS, *data]
    single = subprocess.run(cmd + [f"--workdir={tmp_path / 'single'}"], cwd=ROOT, env=_env(4),
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]

    port = _free_port()
    procs = [subprocess.Popen(
        cmd + [f"--workdir={tmp_path / 'multi'}", "--num-processes=2", f"--process-id={i}",
               f"--coordinator=127.0.0.1:{port}"],
        cwd=ROOT, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]

    one = json.load(open(tmp_path / "single" / "result.json"))
    two = json.load(open(tmp_path / "multi" / "result.json"))
    assert two["processes"] == 2 and two["steps"] == one["steps"] == 16
    assert abs(two["loss"] - one["loss"]) <= 1e-5 * one["loss"]
