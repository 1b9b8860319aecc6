"""Multi-process (multi-host) start-up: one call that works under Slurm, on TPU pods, or with
explicit flags, before anything touches the devices.

- explicit: `--num-processes N --process-id I --coordinator HOST:PORT` (N > 1) as before;
- slurm: inside an `srun` step with more than one task. jax's own Slurm detection
  (jax._src.clusters.SlurmCluster) reads SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS,
  SLURM_PROCID and SLURM_LOCALID, which only `srun` sets; the coordinator is the step's first
  node on a port derived from the job id (JAX_COORDINATOR_PORT overrides it);
- tpu: a multi-host Cloud TPU VM (TPU_WORKER_HOSTNAMES / TPU_PROCESS_ADDRESSES /
  MEGASCALE_COORDINATOR_ADDRESS set by the TPU runtime); jax asks the TPU metadata for the rest;
- none: one process, nothing to initialize.
"""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Detected:
    method: str  # "explicit" | "slurm" | "tpu" | "none"
    num_processes: int | None  # None: jax finds out (TPU)
    process_id: int | None
    coordinator: str | None

    def describe(self) -> str:
        if self.method == "none":
            return "single process (no Slurm step, TPU pod or --num-processes given)"
        who = (f"process {self.process_id} of {self.num_processes}"
               if self.num_processes is not None else "process count from the TPU runtime")
        return f"{self.method}: {who}, coordinator {self.coordinator or 'from the TPU runtime'}"


def _slurm_tasks() -> int:
    """Tasks of the current srun step, or 0 outside one (sbatch's batch script is not a step
    that jax can use: SLURM_STEP_NODELIST is missing there)."""
    needed = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if not all(v in os.environ for v in needed):
        return 0
    return int(os.environ["SLURM_NTASKS"])


def _tpu_pod() -> bool:
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("TPU_PROCESS_ADDRESSES") or ""
    return "," in hosts or bool(os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))


def detect(coordinator: str | None = None, num_processes: int | None = None,
           process_id: int | None = None) -> Detected:
    """What `initialize` would do here. Explicit flags (num_processes > 1) win."""
    if num_processes is not None and num_processes > 1:
        return Detected("explicit", num_processes, process_id, coordinator)
    tasks = _slurm_tasks()
    if tasks > 1:
        from jax._src.clusters.slurm_cluster import SlurmCluster  # jax's own parser of the node list
        address = SlurmCluster.get_coordinator_address(
            timeout_secs=None, override_coordinator_port=os.environ.get("JAX_COORDINATOR_PORT"))
        return Detected("slurm", tasks, int(os.environ["SLURM_PROCID"]), address)
    if _tpu_pod():
        return Detected("tpu", None, None, os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))
    return Detected("none", 1, 0, None)


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> Detected:
    """Join the multi-process job if there is one; call before any jax device use."""
    found = detect(coordinator, num_processes, process_id)
    if found.method == "none":
        return found
    import jax

    if found.method == "explicit":
        jax.distributed.initialize(coordinator_address=found.coordinator,
                                   num_processes=found.num_processes, process_id=found.process_id)
    elif found.method == "slurm":
        # jax's detection would also pin each task to the device numbered SLURM_LOCALID, which
        # is wrong for one task per host owning all its GPUs. Devices per task come from Slurm
        # instead (--gpus-per-task sets CUDA_VISIBLE_DEVICES), so detection stops here.
        jax.distributed.initialize(coordinator_address=found.coordinator,
                                   num_processes=found.num_processes, process_id=found.process_id,
                                   cluster_detection_method="deactivate")
    else:
        jax.distributed.initialize()  # TPU: jax's cluster detection reads the TPU metadata
    return found
