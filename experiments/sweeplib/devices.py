"""Give each local worker its own share of this machine's devices.

Every training child otherwise sees every device (and on GPU preallocates 75% of each one's
memory). Worker i gets devices [i*n, (i+1)*n) through the platform's visibility variable:
CUDA_VISIBLE_DEVICES on GPU, TPU_VISIBLE_CHIPS (+ the process bounds) on TPU, and the fake
device count on CPU. With more workers than devices they share all devices instead, and GPU
preallocation is turned off so that they can coexist.
"""

from __future__ import annotations

import os
import re

from experiments.sweeplib.errors import SweepError

_CPU_FLAG = "--xla_force_host_platform_device_count"
# TPU chips per process -> (TPU_CHIPS_PER_PROCESS_BOUNDS, TPU_PROCESS_BOUNDS) on one host.
_TPU_BOUNDS = {1: "1,1,1", 2: "1,2,1", 4: "2,2,1"}


def devices_per_run(sweep, n_devices: int) -> int:
    """Devices each local run gets: executor.resources.devices_per_task, else an even split."""
    r = sweep.executor.resources
    if int(r.nodes) != 1 or int(r.tasks_per_node) != 1:
        raise SweepError("the local executor runs one process per run; set executor.resources."
                         "nodes=1 and tasks_per_node=1 (or use --executor slurm)")
    per = int(r.devices_per_task) or max(1, n_devices // int(sweep.executor.workers))
    if per > n_devices:
        raise SweepError(f"executor.resources.devices_per_task={per} but this machine has "
                         f"{n_devices} devices; lower it")
    return per


def worker_envs(platform: str, n_devices: int, workers: int, per_run: int,
                environ=None) -> list[dict]:
    """Environment overrides for each of `workers` workers."""
    environ = os.environ if environ is None else environ
    share = per_run * workers > n_devices  # not enough devices to give each its own
    envs = []
    for i in range(workers):
        env = {}
        if workers > 1 and platform == "gpu" and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in environ:
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        ids = list(range(i * per_run, (i + 1) * per_run))
        if platform == "cpu":
            if per_run != n_devices:  # fake CPU devices share the cores: only the count matters
                flags = re.sub(rf"{_CPU_FLAG}=\S+", "", environ.get("XLA_FLAGS", "")).split()
                env["XLA_FLAGS"] = " ".join([*flags, f"{_CPU_FLAG}={per_run}"])
        elif share:
            pass  # more workers than devices: everyone sees all (preallocation is off)
        elif platform == "gpu":
            visible = environ.get("CUDA_VISIBLE_DEVICES", "")
            names = visible.split(",") if visible else [str(d) for d in range(n_devices)]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(names[d] for d in ids)
        elif platform == "tpu":
            if per_run not in _TPU_BOUNDS:
                raise SweepError(f"cannot split TPU chips {per_run} per run on one host; use 1, 2 or 4")
            env["TPU_VISIBLE_CHIPS"] = ",".join(map(str, ids))
            env["TPU_CHIPS_PER_PROCESS_BOUNDS"] = _TPU_BOUNDS[per_run]
            env["TPU_PROCESS_BOUNDS"] = "1,1,1"
            env["TPU_PROCESS_PORT"] = str(8476 + i)
        envs.append(env)
    return envs


def local_worker_envs(sweep) -> tuple[int, list[dict]]:
    """(devices per run, per-worker env overrides) for this machine; (None, [{}]) when one
    worker takes every device (nothing to split, and no need to start jax here)."""
    r = sweep.executor.resources
    if (int(sweep.executor.workers) == 1 and int(r.devices_per_task) == 0
            and int(r.nodes) == int(r.tasks_per_node) == 1):
        return None, [{}]
    import jax

    n = jax.local_device_count()
    per = devices_per_run(sweep, n)
    return per, worker_envs(jax.default_backend(), n, int(sweep.executor.workers), per)
