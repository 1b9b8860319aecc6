"""A real one-node Slurm cluster on localhost (scripts/slurm_local.sh): the Slurm executor, a
job cancelled mid-run and resumed, and a two-task job joining one jax.distributed mesh.

Run with `pytest -m slurm` (root; installs slurm-wlm and munge if missing). If the cluster cannot
start, every test here fails with the reason: nothing is skipped.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slurm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLURM_DIR = os.environ.get("SLURM_LOCAL_DIR", "/tmp/slurm-local-pytest")


@pytest.fixture(scope="module")
def slurm():
    env = dict(os.environ, SLURM_LOCAL_DIR=SLURM_DIR)
    try:
        p = subprocess.run(["bash", os.path.join(ROOT, "scripts", "slurm_local.sh"), "start"],
                           env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/slurm_local.sh start took over 10 minutes", pytrace=False)
    if p.returncode != 0:
        pytest.fail(f"local Slurm did not start: {(p.stderr or p.stdout).strip()[-2000:]}", pytrace=False)
    os.environ["SLURM_CONF"] = os.path.join(SLURM_DIR, "slurm.conf")
    yield os.environ["SLURM_CONF"]
    # A failed test may leave its job running: cancel everything on this private cluster first.
    queued = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    if queued:
        subprocess.run(["scancel", *queued])
        _wait(lambda: not _queued(queued), 60, "the leftover jobs to end")
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "slurm_local.sh"), "stop"], env=env)


def _sweep(args, workdir, timeout=120, **env):
    cmd = [sys.executable, "-m", "experiments.sweep", "run", "--config", "configs/sweeps/smoke.py",
           "--workdir", str(workdir), "--executor", "slurm", "--no-analysis", *args]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PYTHONPATH=ROOT, **env))
    assert p.returncode == 0, p.stderr[-3000:]
    jobs = re.search(r"submitted \d+ Slurm jobs \(([^)]*)\)", p.stdout)
    assert jobs, p.stdout
    return [j for j in jobs.group(1).rstrip(".").split(", ") if j]


def _queued(jobs):
    out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(jobs)], capture_output=True,
                         text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _wait(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)


def _results(workdir):
    out = {}
    for name in os.listdir(workdir / "runs"):
        path = workdir / "runs" / name / "result.json"
        if path.exists():
            out[name] = json.loads(path.read_text())
    return out


def _debug(workdir):
    logs = workdir / "state" / "slurm"
    text = [p.read_text()[-1500:] for p in logs.rglob("*.err")] if logs.exists() else []
    return "\n".join(text)


@pytest.mark.slow
def test_smoke_sweep_completes_through_slurm(slurm, tmp_path):
    workdir = tmp_path / "smoke"
    jobs = _sweep(["--config.executor.workers=2"], workdir)
    _wait(lambda: not _queued(jobs), 900, f"Slurm jobs {jobs}")
    results = _results(workdir)
    assert sorted(r["status"] for r in results.values()) == ["done"] * 4, _debug(workdir)
    lines = (workdir / "results.csv").read_text().splitlines()
    assert len(lines) == 5, lines  # header + the 4 runs, written by the last worker


@pytest.mark.slow
def test_cancelled_job_resumes_from_checkpoint(slurm, tmp_path):
    workdir = tmp_path / "resume"
    steps = 1200
    args = ["--config.variants=100k", f"--config.tokens=({64 * 8 * steps},)",
            "--config.runner.checkpoints_per_run=24", "--config.executor.slurm.mode=job_per_run"]
    jobs = _sweep(args, workdir)
    runs = workdir / "runs"
    # The run's directory appears once its job starts and its config, corpus and tokenizer pass.
    _wait(lambda: (runs.is_dir() and os.listdir(runs)) or not _queued(jobs), 600,
          "the run's directory")
    (run,) = os.listdir(runs)
    ckpts = runs / run / "checkpoints"

    def saved():
        return sorted(int(d) for d in os.listdir(ckpts) if d.isdigit()) if ckpts.exists() else []
    _wait(lambda: saved() or not _queued(jobs), 600, "a first checkpoint")
    assert _queued(jobs), f"the run ended before it could be cancelled: {_debug(workdir)}"
    subprocess.run(["scancel", *jobs], check=True)
    _wait(lambda: not _queued(jobs), 120, "the cancelled job to leave the queue")
    time.sleep(2)  # orbax may finish renaming a checkpoint the kill interrupted
    at_cancel = max(saved())
    assert at_cancel < steps and not (workdir / "runs" / run / "result.json").exists()

    jobs = _sweep(args, workdir)
    _wait(lambda: not _queued(jobs), 900, f"the resubmitted job {jobs}")
    result = _results(workdir)[run]
    assert result["status"] == "done" and result["steps"] == steps, _debug(workdir)
    events = [json.loads(line) for line in
              (workdir / "state" / "events" / f"{run}.jsonl").read_text().splitlines()]
    # scancel interrupts the run: no failure recorded, no retry spent; the second start follows
    # the interruption and resumes from a checkpoint (the trainer's own event says so).
    assert [e["event"] for e in events] == [
        "started", "from_scratch", "started", "resumed", "finished"], events
    assert [e.get("after_interrupt") for e in events if e["event"] == "started"] == [False, True]
    assert [e["from_step"] for e in events if e["event"] == "resumed"] == [at_cancel]
    # The second attempt's progress bar starts where the checkpoint left off, not at 0.
    log = (workdir / "state" / "logs" / f"{run}.log").read_text(errors="replace")
    second = log.split("\n=== ")[-1]
    first_count = re.search(rf"(\d+)/{steps}\b", second)
    assert first_count, second[-2000:]
    assert int(first_count.group(1)) >= at_cancel > 0


@pytest.mark.slow
def test_two_task_job_joins_one_mesh_without_flags(slurm, tmp_path):
    script = tmp_path / "mesh.py"
    script.write_text(
        "from research import distributed\n"
        "found = distributed.initialize()\n"
        "import jax, jax.numpy as jnp, numpy as np\n"
        "from jax.sharding import Mesh, NamedSharding, PartitionSpec as P\n"
        "mesh = Mesh(np.array(jax.devices()), ('d',))\n"
        "local = np.full((jax.local_device_count(),), jax.process_index() + 1.0, np.float32)\n"
        "x = jax.make_array_from_process_local_data(NamedSharding(mesh, P('d')), local)\n"
        "total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(x)\n"
        "print('RESULT', found.method, jax.process_index(), jax.process_count(),\n"
        "      jax.device_count(), float(total), flush=True)\n")
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    p = subprocess.run(["srun", "-n", "2", "--time=5", sys.executable, str(script)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = sorted(line.split()[1:] for line in p.stdout.splitlines() if line.startswith("RESULT"))
    # Two processes x 2 devices, one global sum: 1 + 1 + 2 + 2.
    assert rows == [["slurm", "0", "2", "4", "6.0"], ["slurm", "1", "2", "4", "6.0"]], p.stdout


@pytest.mark.slow
def test_sweep_run_spans_two_tasks(slurm, tmp_path):
    """executor.resources.tasks_per_node=2: the run is one srun step of 2 processes (2 fake CPU
    devices each) that join one mesh of 4 and train together; process 0 writes result.json."""
    workdir = tmp_path / "two"
    args = ["--config.variants=100k", f"--config.tokens=({64 * 8 * 6},)",
            "--config.executor.slurm.mode=job_per_run", "--config.executor.slurm.cpus_per_task=1",
            "--config.executor.resources.tasks_per_node=2"]
    jobs = _sweep(args, workdir, XLA_FLAGS="--xla_force_host_platform_device_count=2",
                  JAX_PLATFORMS="cpu")
    _wait(lambda: not _queued(jobs), 900, f"the two-task job {jobs}")
    (result,) = _results(workdir).values()
    assert result["status"] == "done", _debug(workdir)
    assert (result["processes"], result["devices"], result["mesh"]["data"]) == (2, 4, 4)
