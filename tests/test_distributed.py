"""research/distributed.py: what is detected from the environment (the joining itself is tested
under a real Slurm in test_slurm_local.py and with explicit flags in test_multihost.py)."""

import pytest

from research import distributed

SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
              "SLURM_LOCALID", "JAX_COORDINATOR_PORT", "TPU_WORKER_HOSTNAMES",
              "TPU_PROCESS_ADDRESSES", "MEGASCALE_COORDINATOR_ADDRESS")


@pytest.fixture
def env(monkeypatch):
    for v in SLURM_VARS:
        monkeypatch.delenv(v, raising=False)
    return monkeypatch


def _srun(env, ntasks, procid, nodes="node[007-010],gpu2", job="1234"):
    for k, v in dict(SLURM_JOB_ID=job, SLURM_STEP_NODELIST=nodes, SLURM_NTASKS=str(ntasks),
                     SLURM_PROCID=str(procid), SLURM_LOCALID="0").items():
        env.setenv(k, v)


def test_plain_process_is_single(env):
    assert distributed.detect().method == "none"
    assert distributed.initialize().method == "none"  # and initializes nothing


def test_srun_step_is_detected_with_first_node_as_coordinator(env):
    _srun(env, 8, 3)
    found = distributed.detect()
    # First node of the step; port 1234 % 4096 + 61440 (jax's rule for Slurm jobs).
    assert (found.method, found.num_processes, found.process_id) == ("slurm", 8, 3)
    assert found.coordinator == "node007:62674"
    env.setenv("JAX_COORDINATOR_PORT", "5000")
    assert distributed.detect().coordinator == "node007:5000"


def test_one_task_or_batch_script_is_single(env):
    _srun(env, 1, 0)
    assert distributed.detect().method == "none"
    env.setenv("SLURM_NTASKS", "4")
    env.delenv("SLURM_STEP_NODELIST")  # sbatch's batch script: not an srun step
    assert distributed.detect().method == "none"


def test_explicit_flags_win(env):
    _srun(env, 8, 3)
    found = distributed.detect("10.0.0.1:1234", 2, 1)
    assert (found.method, found.coordinator, found.num_processes, found.process_id) == (
        "explicit", "10.0.0.1:1234", 2, 1)


def test_tpu_pod_is_detected(env):
    env.setenv("TPU_WORKER_HOSTNAMES", "t1k-w-0,t1k-w-1")
    assert distributed.detect().method == "tpu"
    env.setenv("TPU_WORKER_HOSTNAMES", "t1k-w-0")  # one host: nothing to join
    assert distributed.detect().method == "none"
