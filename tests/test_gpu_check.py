"""scripts/gpu_check.sh: its dry run on CPU writes the report the docs describe, with every check
passing (the pytest part is left out here: it is this suite's own tests)."""

import json
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu_writes_a_passing_report(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", str(tmp_path), "--skip", "tests"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is True and report["mode"].startswith("dry-run")
    assert report["devices"]["backend"] == "cpu" and len(report["devices"]["devices"]) == 2
    eq = report["equivalence"]
    assert eq["data_parallel_devices"] == 2 and eq["data_parallel_max_rel"] < 1e-4
    rows = {(r["model"], r["remat"]) for r in report["bench"]}
    assert rows == {(m, r) for m in ("124m", "350m") for r in ("none", "full")}
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 for r in report["bench"])
    assert report["train"]["status"] == "done" and report["train"]["loss"] < 5.55
    assert "tests" not in report


def test_gpu_check_refuses_an_unknown_part():
    from experiments import gpu_check

    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--out", "/nonexistent/x", "--skip", "benchh"])
    assert exit_.value.code == 2
