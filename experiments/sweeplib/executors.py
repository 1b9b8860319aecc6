"""Executors: where the worker loop runs.

- local: k worker threads in this process; each supervises one training child process at a time
  (training itself never shares a process with the sweep, so a crash or OOM kill costs one run).
- slurm (submitit): "array" submits a job array of k workers that pull runs from the shared
  directory; "job_per_run" submits one job per unfinished run, a WSD branch depending
  (afterany) on its parent's job. Either way the claim files keep every run to one worker, and
  the worker that sees the sweep finish writes results.csv and runs the analysis.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import threading

import ml_collections

from experiments.sweeplib import devices, ledger
from experiments.sweeplib.claims import Claims, worker_name
from experiments.sweeplib.errors import SweepError
from experiments.sweeplib.layout import SweepDir, read_json
from experiments.sweeplib.plan import Run
from experiments.sweeplib.worker import REPO_ROOT, Worker


def make_claims(sweep_dir: SweepDir, sweep) -> Claims:
    return Claims(sweep_dir, sweep.runner.claim_timeout_s, sweep.runner.heartbeat_s)


def check_available(sweep) -> None:
    """Refuse an executor that cannot work on this machine, before anything runs."""
    if sweep.executor.kind != "slurm":
        return
    if importlib.util.find_spec("submitit") is None:  # not imported: it configures logging
        raise SweepError("executor 'slurm' is not available here: submitit is not installed; "
                         "pip install submitit or use --executor local")
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise SweepError("executor 'slurm' is not available here: no sbatch/srun on PATH; "
                         "run on a Slurm login node or use --executor local")


def local_workers(sweep_dir: SweepDir, runs, sweep, *, echo: bool,
                  start_children: bool = False) -> list[Worker]:
    """The k local workers (one device share each). With `start_children`, each worker starts its
    training child now, so that the child's start-up (imports, JAX) runs while the
    sweep is still checking configs; close_children() ends them if the sweep stops there."""
    claims = make_claims(sweep_dir, sweep)
    k = int(sweep.executor.workers)
    stop = threading.Event()
    _, envs = devices.local_worker_envs(sweep)
    workers = [
        Worker(sweep_dir, runs, sweep, claims, worker_name(f"local{i}"), echo=echo and k == 1,
               stop=stop, env=envs[i])
        for i in range(k)
    ]
    if start_children:
        for w in workers:
            w.start_child()
    return workers


def close_children(workers) -> None:
    for w in workers or ():
        w.close_child()


def run_local(sweep_dir: SweepDir, runs, sweep, *, echo: bool, progress=None,
              workers: list[Worker] | None = None) -> None:
    """k worker threads until every run is final. Ctrl-C stops them and their children."""
    workers = workers or local_workers(sweep_dir, runs, sweep, echo=echo)
    claims, stop = workers[0].claims, workers[0].stop
    for w in workers:
        w.progress = progress
    threads = [threading.Thread(target=w.loop, name=w.label, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        for w in workers:
            w.kill_child()
        for t in threads:
            t.join(30)
        raise
    finally:
        claims.close()


def slurm_parameters(sweep, job_name: str) -> dict:
    """submitit.SlurmExecutor parameters from the sweep's executor.slurm settings."""
    s = sweep.executor.slurm
    params = {
        "job_name": job_name,
        "time": int(s.time_min),
        "cpus_per_task": int(s.cpus_per_task),
        "mem": f"{int(s.mem_gb)}GB",
        "array_parallelism": int(s.array_parallelism),
    }
    for key in ("partition", "account", "qos", "constraint"):
        if s[key]:
            params[key] = s[key]
    if int(s.gpus_per_node) > 0:
        params["gpus_per_node"] = int(s.gpus_per_node)
    r = sweep.executor.resources
    if int(r.devices_per_task) > 0:
        params["gpus_per_task"] = int(r.devices_per_task)
    if run_tasks(sweep) > 1:
        # The allocation holds one run's tasks; the worker runs once, in the batch script, and
        # starts each run with srun over all of them (run_launcher).
        params.update(nodes=int(r.nodes), ntasks_per_node=int(r.tasks_per_node), use_srun=False)
    return params


def run_tasks(sweep) -> int:
    r = sweep.executor.resources
    return int(r.nodes) * int(r.tasks_per_node)


def run_launcher(sweep) -> list[str]:
    """Command prefix that starts one run's processes inside a Slurm allocation ([] = plain)."""
    if run_tasks(sweep) <= 1:
        return []
    r = sweep.executor.resources
    cmd = ["srun", "--kill-on-bad-exit=1", f"--nodes={int(r.nodes)}",
           f"--ntasks={run_tasks(sweep)}", f"--ntasks-per-node={int(r.tasks_per_node)}"]
    if int(r.devices_per_task) > 0:
        cmd.append(f"--gpus-per-task={int(r.devices_per_task)}")
    return cmd


def submit_slurm(sweep_dir: SweepDir, runs, sweep) -> list[str]:
    """Submit the workers; returns the Slurm job ids. Progress: `python -m experiments.sweep status`."""
    import submitit

    executor = submitit.SlurmExecutor(folder=str(sweep_dir.state / "slurm" / "%j"))
    executor.update_parameters(**slurm_parameters(sweep, f"sweep-{sweep.name}"),
                               setup=[f"export PYTHONPATH={REPO_ROOT}:${{PYTHONPATH:-}}"])
    root = str(sweep_dir.root)
    if sweep.executor.slurm.mode == "array":
        k = int(sweep.executor.workers)
        jobs = executor.map_array(slurm_worker, [root] * k, [f"slurm{i}" for i in range(k)], [None] * k)
        return [j.job_id for j in jobs]
    claims = make_claims(sweep_dir, sweep)
    states = ledger.all_states(sweep_dir, runs, claims, int(sweep.runner.retries))
    job_of: dict[str, str] = {}
    for run in runs:
        if states[run.name].state in ledger.FINAL:
            continue
        parent_job = job_of.get(run.depends_on)
        executor.update_parameters(job_name=run.name, dependency=f"afterany:{parent_job}" if parent_job else None)
        job_of[run.name] = executor.submit(slurm_worker, root, f"slurm-{run.name}", [run.name]).job_id
    return list(job_of.values())


def slurm_worker(root: str, label: str, only: list[str] | None) -> None:
    """Runs on a Slurm node: the same worker loop over the shared directory, then finalize."""
    from experiments.sweeplib import finish

    sweep_dir = SweepDir(root)
    stored = read_json(sweep_dir.plan_file)
    sweep = ml_collections.ConfigDict(stored["sweep"])
    runs = [Run.from_json(r) for r in stored["runs"]]
    claims = make_claims(sweep_dir, sweep)
    name = worker_name(label)
    worker = Worker(sweep_dir, runs, sweep, claims, name, only=only, wait_for_others=False,
                    launcher=run_launcher(sweep))
    main = threading.current_thread() is threading.main_thread()
    if main:
        # scancel and preemption SIGTERM the whole job, the training child included: the run
        # is interrupted (it resumes from its checkpoint), not failed, and no new one starts.
        previous = signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    try:
        worker.loop()
        finish.finalize(sweep_dir, runs, sweep, claims, name)
    finally:
        claims.close()
        if main:
            signal.signal(signal.SIGTERM, previous)
