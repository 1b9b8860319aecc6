"""--dry-run preflight: per-device memory from the compiled step, without training."""

import os
import subprocess
import sys

import pytest

from configs import gpt
from research import flops, preflight
from research.errors import ConfigError
from research.config import RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _small(**mesh):
    c = gpt.get_config("100k")
    c.model.context_length, c.train.batch_size = 32, 8
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh.get("data", 1), mesh.get("fsdp", 1), mesh.get("tensor", 1)
    return c


def test_replicated_and_fsdp_memory_match_the_parameter_count():
    c = _small(data=8)
    total = flops.param_counts(c.model)["params"] * 4  # float32 master weights
    r = preflight.run(RunConfig.from_configdict(c))
    b = r["per_device_bytes"]
    assert b["params"] == total  # pure data parallel: every device holds all parameters
    assert 2 * total <= b["optimizer_state"] <= 2 * total + 64  # Adam mu and nu (+ counters)
    assert b["temporaries"] > 0 and b["arguments"] >= b["params"] + b["optimizer_state"]
    tokens = 8 * 32
    assert r["flops_per_step_analytic"] == flops.train_flops_per_token(c.model) * tokens
    sharded = preflight.run(RunConfig.from_configdict(_small(fsdp=8)))["per_device_bytes"]["params"]
    assert total / 8 <= sharded < total / 4  # split 8 ways (a few small leaves replicated)
    text = preflight.format_report(r)
    assert "parameters" in text and "temporaries" in text and "P(" in text


@pytest.mark.slow
def test_mesh_that_does_not_divide_heads_is_one_line_error():
    c = gpt.get_config("tiny")  # 4 heads
    c.mesh.data, c.mesh.tensor = 1, 8
    with pytest.raises(ConfigError, match="n_heads=4"):
        preflight.run(RunConfig.from_configdict(c))
    p = subprocess.run([sys.executable, "-m", "experiments.train", "--config", "configs/gpt.py:tiny",
                        "--config.mesh.data=1", "--config.mesh.tensor=8", "--dry-run"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"))
    lines = [x for x in p.stderr.splitlines() if x.startswith("error:")]
    assert p.returncode == 2 and len(lines) == 1 and "n_heads=4" in lines[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr
