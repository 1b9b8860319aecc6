"""Runner logic against a fake trainer (fast): retries, permanent failures, claims, exactly-once.

The fake keeps the trainer's contract (resume from its checkpoint in the workdir, result.json
written last and atomically, status "diverged" on a non-finite loss, ConfigError on a bad config)
and its loss is a known law of (params, tokens), so the runner can be checked without JAX.
The end-to-end tests with the real trainer are in test_sweep_e2e.py.
"""

import functools
import json
import math
import os
import pathlib
import subprocess
import sys
import time

import pytest

from common import files
from configs import sweep_base
from experiments.sweeplib import claims as claims_lib
from experiments.sweeplib import ledger, layout, plan, spec

ROOT = pathlib.Path(__file__).resolve().parents[1]
CRASH_LR = 0.5  # the fake raises at this learning rate, on every attempt
FLAKY_LR = 0.25  # the fake crashes on a run's first attempt only
DIVERGE_LR = 100.0  # the fake's loss becomes NaN
BAD_CONFIG_LR = 0.125  # the fake raises ConfigError
BAD_DATA_LR = 0.0625  # the fake raises DataError (a UserError, like a bad corpus)
KILLED_LR = 0.03125  # the fake's process is killed by SIGKILL (as by the OOM killer)
# A child's slow imports (jax, flax, orbax take seconds), simulated when a test asks for them.
time.sleep(float(os.environ.get("FAKE_IMPORT_S", "0")))


def train(config, workdir, progress=False):
    """Fake trainer: 5 ms per step, a checkpoint every checkpoint_every steps, a known loss."""
    t0 = time.perf_counter()
    from research import flops

    wd = pathlib.Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    from research.errors import ConfigError
    from research.data.batches import DataError

    if config.train.learning_rate == BAD_CONFIG_LR:
        raise ConfigError("train.learning_rate=0.125 is refused by the fake trainer")
    if config.train.learning_rate == BAD_DATA_LR:
        raise DataError("the fake corpus has no validation documents; add documents")
    with open(wd / "starts.txt", "a") as f:
        f.write(f"{os.getpid()}\n")
    ckpt = layout.read_json(wd / "ckpt.json") or {"step": 0}
    if config.train.init_from and ckpt["step"] == 0:
        ckpt = {"step": int(config.train.init_step)}  # a WSD branch starts from its parent
    steps = config.train.tokens // (config.train.batch_size * config.model.context_length)
    lr = config.train.learning_rate
    if lr == CRASH_LR or (lr == FLAKY_LR and len((wd / "starts.txt").read_text().split()) == 1):
        raise RuntimeError("simulated crash in the training step")
    if lr == KILLED_LR:
        os.kill(os.getpid(), 9)
    for step in range(ckpt["step"] + 1, steps + 1):
        time.sleep(float(os.environ.get("FAKE_STEP_S", "0.005")))
        if step % config.train.checkpoint_every == 0:
            files.write_atomic(wd / "ckpt.json", json.dumps({"step": step}))
        with open(wd / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step}) + "\n")
    counts = flops.param_counts(config.model)
    n, d = counts["nonembedding_params"], config.train.tokens
    loss = 1.5 + 300.0 / n**0.35 + 600.0 / d**0.3 + 1e-3 * config.train.seed
    result = {
        "run": wd.name, "variant": config.variant, **counts, "tokens": d,
        "flops": flops.run_flops(config.model, d), "loss": float("nan") if lr >= DIVERGE_LR else loss,
        "loss_stderr": 0.01, "status": "diverged" if lr >= DIVERGE_LR else "done",
        "seed": config.train.seed, "steps": steps, "n_layers": config.model.n_layers,
        "d_model": config.model.d_model, "learning_rate": lr, "config_hash": "fake",
    }
    total = time.perf_counter() - t0  # all of it "training": the fixed costs are the worker's
    result["timing"] = {"setup_s": 0.0, "data_s": 0.0, "compile_s": 0.0, "eval_s": 0.0,
                        "checkpoint_s": 0.0, "train_s": total, "total_s": total}
    files.write_atomic(wd / "result.json", json.dumps(result))
    return result


def fake_sweep(**changes):
    s = sweep_base.default_sweep()
    s.name = "fake"
    s.base.model.context_length = 16
    s.base.train.batch_size = 4
    s.variants = ("100k", "300k")
    s.tokens = (64 * 20, 64 * 40)
    s.runner.train_fn = "tests.test_sweep_fake:train"
    s.runner.poll_s = 0.1
    s.analysis.enabled = False
    for k, v in changes.items():
        *parents, leaf = k.split(".")
        functools.reduce(getattr, parents, s)[leaf] = v
    spec.check(s)
    return s


def write_sweep_file(tmp_path, **changes) -> str:
    lines = ["from tests.test_sweep_fake import fake_sweep", "def get_config(arg=''):",
             f"    return fake_sweep(**{changes!r})"]
    path = tmp_path / "fake_sweep.py"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "experiments.sweep", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def starts(run_dir: pathlib.Path) -> int:
    return len((run_dir / "starts.txt").read_text().split())


@pytest.mark.slow
def test_grid_runs_once_each_and_rerun_skips(tmp_path):
    cfg = write_sweep_file(tmp_path)
    proc = cli("run", "--config", cfg, "--workdir", str(tmp_path / "w"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    runs = plan.expand(fake_sweep())
    csv_lines = (tmp_path / "w" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(runs)
    assert "4/4 done" in proc.stderr
    again = cli("run", "--config", cfg, "--workdir", str(tmp_path / "w"), "--quiet")
    assert again.returncode == 0
    for run in runs:
        assert starts(tmp_path / "w" / "runs" / run.name) == 1


@pytest.mark.slow
def test_failures_recorded_retried_and_sweep_goes_on(tmp_path):
    cfg = write_sweep_file(tmp_path, variants=("100k",), tokens=(64 * 20,),
                           learning_rates=(3e-3, CRASH_LR, FLAKY_LR, DIVERGE_LR), **{"runner.retries": 1})
    wd = tmp_path / "w"
    proc = cli("run", "--config", cfg, "--workdir", str(wd), "--quiet")
    assert proc.returncode == 1, proc.stderr  # some runs failed, the others finished
    runs = {r.config.train.learning_rate: r for r in plan.expand(fake_sweep(
        variants=("100k",), tokens=(64 * 20,), learning_rates=(3e-3, CRASH_LR, FLAKY_LR, DIVERGE_LR)))}
    sd = layout.SweepDir(wd)
    run_dir = lambda lr: wd / "runs" / runs[lr].name
    assert starts(run_dir(3e-3)) == 1 and sd.result(runs[3e-3].name)["status"] == "done"
    assert starts(run_dir(CRASH_LR)) == 2  # crashed, retried once, then given up
    assert starts(run_dir(FLAKY_LR)) == 2 and sd.result(runs[FLAKY_LR].name)["status"] == "done"
    assert starts(run_dir(DIVERGE_LR)) == 1  # divergence is deterministic: not retried
    status = cli("status", str(wd)).stdout
    crash_line = next(line for line in status.splitlines() if line.startswith(runs[CRASH_LR].name))
    assert "failed" in crash_line and "simulated crash in the training step" in crash_line
    diverge_line = next(line for line in status.splitlines() if line.startswith(runs[DIVERGE_LR].name))
    assert "failed" in diverge_line and "diverged" in diverge_line
    rows = (wd / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # the two finished runs
    # A re-run does not retry exhausted or final failures; --retry-failed grants the crash a new try.
    cli("run", "--config", cfg, "--workdir", str(wd), "--quiet")
    assert starts(run_dir(CRASH_LR)) == 2
    cli("run", "--config", cfg, "--workdir", str(wd), "--quiet", "--retry-failed")
    assert starts(run_dir(CRASH_LR)) == 4 and starts(run_dir(DIVERGE_LR)) == 1  # a fresh 1 + retries


@pytest.mark.slow
def test_config_error_is_final_and_not_retried(tmp_path):
    cfg = write_sweep_file(tmp_path, variants=("100k",), tokens=(64 * 20,), learning_rates=(BAD_CONFIG_LR, 3e-3))
    wd = tmp_path / "w"
    proc = cli("run", "--config", cfg, "--workdir", str(wd), "--quiet")
    assert proc.returncode == 1
    events = {p.stem: [json.loads(x) for x in p.read_text().splitlines()] for p in (wd / "state/events").glob("*.jsonl")}
    bad = next(v for k, v in events.items() if "lr0.125" in k)
    assert [e["event"] for e in bad] == ["started", "failed"] and bad[-1]["permanent"]
    assert "refused by the fake trainer" in bad[-1]["reason"] and "ConfigError" in bad[-1]["reason"]
    assert bad[-1]["kind"] == "user" and bad[-1]["exit_code"] == 2


@pytest.mark.slow
def test_data_error_in_a_child_is_a_user_failure_and_not_retried(tmp_path):
    """DataError, CorpusError, TokenizerError derive from UserError: the child classifies them
    with isinstance, so they are final on the first attempt, not retried like a crash."""
    changes = dict(variants=("100k",), tokens=(64 * 20,), learning_rates=(BAD_DATA_LR, 3e-3),
                   **{"runner.retries": 2})
    cfg = write_sweep_file(tmp_path, **changes)
    wd = tmp_path / "w"
    proc = cli("run", "--config", cfg, "--workdir", str(wd), "--quiet")
    assert proc.returncode == 1, proc.stderr  # the sweep has a failed run; the other finished
    bad = next(r for r in plan.expand(fake_sweep(**changes)) if r.config.train.learning_rate == BAD_DATA_LR)
    evts = ledger.events(layout.SweepDir(wd), bad.name)
    assert [e["event"] for e in evts] == ["started", "failed"]  # one attempt despite retries=2
    assert evts[-1]["permanent"] and evts[-1]["kind"] == "user" and evts[-1]["exit_code"] == 2
    assert evts[-1]["reason"].startswith("DataError: the fake corpus has no validation documents")
    status = cli("status", str(wd)).stdout
    line = next(x for x in status.splitlines() if x.startswith(bad.name))
    assert "failed" in line and "DataError" in line


@pytest.mark.slow
def test_stale_claim_of_dead_process_is_taken_over_live_one_is_not(tmp_path):
    sd = layout.SweepDir(tmp_path)
    sd.make()
    c = claims_lib.Claims(sd, timeout_s=60, heartbeat_s=60)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"host": claims_lib.HOST, "pid": dead.pid, "start": 0.0, "worker": "gone", "token": "x"}
    files.write_atomic(c.path("a"), json.dumps(stale))
    with sd.lock():
        taken = c.try_claim("a", "me")
    assert taken and taken["took_over"]["worker"] == "gone"
    with sd.lock():
        assert c.try_claim("a", "other") is None  # ours now, and we are alive
    # Another host's claim is live until its heartbeat is older than the timeout.
    remote = {"host": "elsewhere", "pid": 1, "start": 0.0, "worker": "far", "token": "y"}
    files.write_atomic(c.path("b"), json.dumps(remote))
    with sd.lock():
        assert c.try_claim("b", "me") is None
    old = time.time() - 120
    os.utime(c.path("b"), (old, old))
    with sd.lock():
        assert c.try_claim("b", "me") is not None
    c.close()


@pytest.mark.slow
def test_wsd_branches_wait_for_parent_and_start_at_their_steps(tmp_path):
    cfg = write_sweep_file(tmp_path, kind="wsd", variants=("100k",), tokens=(64 * 20, 64 * 40, 64 * 80))
    wd = tmp_path / "w"
    proc = cli("run", "--config", cfg, "--workdir", str(wd), "--quiet", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    runs = plan.expand(fake_sweep(kind="wsd", variants=("100k",), tokens=(64 * 20, 64 * 40, 64 * 80)))
    parent = runs[0]
    parent_end = os.path.getmtime(wd / "runs" / parent.name / "result.json")  # written last
    for branch in runs[1:]:
        first = json.loads((wd / "state/events" / f"{branch.name}.jsonl").read_text().splitlines()[0])
        assert first["time"] >= parent_end
        logged = [json.loads(x)["step"] for x in (wd / "runs" / branch.name / "metrics.jsonl").read_text().splitlines()]
        assert logged[0] == branch.start_step + 1 and logged[-1] == branch.steps


def test_slurm_worker_job_runs_the_sweep_and_finalizes(tmp_path):
    """What a Slurm array job runs, here in-process: the worker loop over the shared directory."""
    from experiments import sweep as sweep_cli
    from experiments.sweeplib import executors

    s = fake_sweep()
    runs = plan.expand(s)
    sd = layout.SweepDir(tmp_path / "w")
    sweep_cli.save_plan(sd, s, runs)
    executors.slurm_worker(str(sd.root), "job0", [runs[0].name])  # job_per_run: just its run
    assert starts(sd.run_dir(runs[0].name)) == 1 and not sd.run_dir(runs[1].name).exists()
    assert len(sd.results_csv.read_text().splitlines()) == 1 + 1  # rewritten after its run
    executors.slurm_worker(str(sd.root), "job1", None)  # array worker: the rest, then results.csv
    assert all(starts(sd.run_dir(r.name)) == 1 for r in runs)
    assert len(sd.results_csv.read_text().splitlines()) == 1 + len(runs)


def test_job_per_run_submission_chains_wsd_branches_after_their_parent(tmp_path, monkeypatch):
    import submitit

    from experiments import sweep as sweep_cli
    from experiments.sweeplib import executors

    submitted = []

    class FakeSlurm:  # records what would reach sbatch
        def __init__(self, folder):
            self.params = {}

        def update_parameters(self, **kw):
            self.params.update(kw)

        def submit(self, fn, root, label, only):
            job = type("Job", (), {"job_id": str(100 + len(submitted))})()
            submitted.append((dict(self.params), only, job.job_id))
            return job

    monkeypatch.setattr(submitit, "SlurmExecutor", FakeSlurm)
    s = fake_sweep(kind="wsd", variants=("100k",), tokens=(64 * 20, 64 * 40),
                   **{"executor.kind": "slurm", "executor.slurm.mode": "job_per_run",
                      "executor.slurm.partition": "gpu", "executor.slurm.gpus_per_node": 1})
    runs = plan.expand(s)
    sd = layout.SweepDir(tmp_path / "w")
    sweep_cli.save_plan(sd, s, runs)
    ids = executors.submit_slurm(sd, runs, s)
    assert len(ids) == 3 and [only for _, only, _ in submitted] == [[r.name] for r in runs]
    parent_job = submitted[0][2]
    assert submitted[0][0]["dependency"] is None
    assert all(p["dependency"] == f"afterany:{parent_job}" for p, _, _ in submitted[1:])
    assert all(p["partition"] == "gpu" and p["gpus_per_node"] == 1 for p, _, _ in submitted)


@pytest.mark.slow
def test_six_workers_in_three_processes_run_each_run_exactly_once(tmp_path):
    cfg = write_sweep_file(tmp_path, variants=("100k", "300k"), tokens=(64 * 20, 64 * 40), seeds=(0, 1))
    wd = tmp_path / "w"
    env = dict(os.environ, PYTHONPATH=str(ROOT), FAKE_STEP_S="0.02")
    cmd = [sys.executable, "-m", "experiments.sweep", "run", "--config", cfg, "--workdir", str(wd),
           "--quiet", "--workers", "2"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    runs = plan.expand(fake_sweep(variants=("100k", "300k"), tokens=(64 * 20, 64 * 40), seeds=(0, 1)))
    assert len(runs) == 8
    for run in runs:
        assert starts(wd / "runs" / run.name) == 1
        evts = ledger.events(layout.SweepDir(wd), run.name)
        assert [e["event"] for e in evts] == ["started", "finished"]
    assert len((wd / "results.csv").read_text().splitlines()) == 1 + 8


@pytest.mark.slow
def test_finished_sweep_is_fitted_and_the_law_printed(tmp_path):
    """The fake's loss is 1.5 + 300 / N^0.35 + 600 / D^0.3 (N non-embedding): the sweep's
    results.csv, fitted by `python -m analysis`, must give those exponents back."""
    changes = {"variants": ("100k", "300k", "800k"), "tokens": (64 * 20, 64 * 80, 64 * 320),
               "analysis.enabled": True, "analysis.bootstrap": 20,
               "analysis.params_column": "nonembedding_params"}
    cfg = write_sweep_file(tmp_path, **changes)
    wd = tmp_path / "w"
    proc = cli("run", "--config", cfg, "--workdir", str(wd), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "chinchilla fit on 9 points" in proc.stdout and "95% CI" in proc.stdout
    assert "report" in proc.stdout
    fit = json.loads((wd / "analysis" / "fit.json").read_text())
    assert fit["params"]["alpha"] == pytest.approx(0.35, abs=1e-3)
    assert fit["params"]["beta"] == pytest.approx(0.30, abs=1e-3)
    # Unchanged results are not fitted again; the stored law is printed.
    again = cli("run", "--config", cfg, "--workdir", str(wd), "--quiet")
    assert "analysis fit took" not in again.stdout and "chinchilla fit on 9 points" in again.stdout


@pytest.mark.slow
def test_runs_share_a_child_process_and_a_killed_one_costs_only_its_run(tmp_path):
    """One worker trains its runs in one long-lived child; a run whose process is killed fails
    alone (recorded as killed) and the runs after it go on in a fresh process."""
    lrs = (3e-3, 2e-3, KILLED_LR, 1e-3, CRASH_LR, 4e-3)
    cfg = write_sweep_file(tmp_path, variants=("100k",), tokens=(64 * 20,), learning_rates=lrs,
                           **{"runner.retries": 0})
    wd = tmp_path / "w"
    proc = cli("run", "--config", cfg, "--workdir", str(wd), "--quiet")
    assert proc.returncode == 1, proc.stderr  # the killed and the crashed run failed
    runs = plan.expand(fake_sweep(variants=("100k",), tokens=(64 * 20,), learning_rates=lrs))
    pid = {r.config.train.learning_rate: (wd / "runs" / r.name / "starts.txt").read_text().split()
           for r in runs}
    sd = layout.SweepDir(wd)
    done = {r.config.train.learning_rate for r in runs if (sd.result(r.name) or {}).get("status") == "done"}
    assert done == {3e-3, 2e-3, 1e-3, 4e-3}
    assert pid[3e-3] == pid[2e-3] == pid[KILLED_LR]  # one process for the first three
    assert pid[1e-3] != pid[KILLED_LR]  # a fresh one after the kill
    assert pid[1e-3] == pid[CRASH_LR] and pid[4e-3] != pid[CRASH_LR]  # replaced after a failure
    killed = next(r for r in runs if r.config.train.learning_rate == KILLED_LR)
    last = ledger.events(sd, killed.name)[-1]
    assert last["event"] == "failed" and "SIGKILL" in last["reason"]
    # Each run's log holds its own output only, without the end-of-run marker.
    for r in runs:
        assert "@@sweep-run-end" not in (wd / "state" / "logs" / f"{r.name}.log").read_text()


@pytest.mark.slow
def test_runs_per_child_1_gives_each_run_its_own_process(tmp_path):
    cfg = write_sweep_file(tmp_path, variants=("100k",), tokens=(64 * 20,), learning_rates=(1e-3, 2e-3),
                           **{"runner.runs_per_child": 1})
    wd = tmp_path / "w"
    assert cli("run", "--config", cfg, "--workdir", str(wd), "--quiet").returncode == 0
    pids = [(d / "starts.txt").read_text().split() for d in sorted((wd / "runs").iterdir())]
    assert len(pids) == 2 and pids[0] != pids[1]


@pytest.mark.slow
def test_start_up_reaches_the_progress_line_and_status_totals(tmp_path):
    """A child's first run carries the process's start-up that it waited for (here 1 s of
    simulated imports, which nothing else overlaps with a fake trainer), the next run in the
    same child none; the progress line and `sweep status` both show it."""
    cfg = write_sweep_file(tmp_path, variants=("100k",), tokens=(64 * 20,), learning_rates=(1e-3, 2e-3))
    wd = tmp_path / "w"
    env = dict(os.environ, PYTHONPATH=str(ROOT), FAKE_IMPORT_S="1.0")
    proc = subprocess.run([sys.executable, "-m", "experiments.sweep", "run", "--config", cfg,
                           "--workdir", str(wd), "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    done = [line for line in proc.stderr.splitlines() if " done in " in line]
    startups = [float(line.split("start-up ")[1].split(",")[0]) for line in done]
    assert len(startups) == 2 and startups[0] >= 0.8 and startups[1] == 0.0, done
    sd = layout.SweepDir(wd)
    timings = sorted((e["time"], e["timing"]) for r in plan.expand(fake_sweep(
        variants=("100k",), tokens=(64 * 20,), learning_rates=(1e-3, 2e-3)))
        for e in ledger.events(sd, r.name) if e["event"] == "finished")
    first, second = timings[0][1], timings[1][1]
    assert first["startup_s"] >= 0.8 and second["startup_s"] == 0.0
    status = cli("status", str(wd))
    total = float(status.stdout.split("fixed ")[1].split("s:")[0])
    assert f"start-up {first['startup_s']:.1f}," in status.stdout and total >= 0.8, status.stdout


def _children_of_this_process() -> list[int]:
    """Pids of live sweep children whose parent is this process (from /proc)."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"experiments.sweeplib.child" in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_child_start_up_overlaps_the_sweeps_own_checks(tmp_path, monkeypatch):
    """The serving child is started before the trainer checks and gets ready meanwhile: with
    1 s of simulated imports and 1.5 s of checks, the first run waits well under the 1 s the
    child took to start (which it still reports in its .startup file)."""
    from experiments import sweep as sweep_cli

    cfg = write_sweep_file(tmp_path, variants=("100k",), tokens=(64 * 20,), learning_rates=(1e-3,))
    wd = tmp_path / "w"
    seen = []

    def slow_check(sweep, runs):
        seen.append(_children_of_this_process())
        time.sleep(1.5)

    monkeypatch.setattr(sweep_cli, "check_trainer_configs", slow_check)
    monkeypatch.setenv("FAKE_IMPORT_S", "1.0")
    assert sweep_cli.main(["run", "--config", cfg, "--workdir", str(wd), "--quiet"]) == 0
    assert len(seen) == 1 and len(seen[0]) == 1, seen  # one child, alive during the checks
    sd = layout.SweepDir(wd)
    (run,) = plan.expand(fake_sweep(variants=("100k",), tokens=(64 * 20,), learning_rates=(1e-3,)))
    finished = [e for e in ledger.events(sd, run.name) if e["event"] == "finished"]
    assert finished[0]["timing"]["startup_s"] < 0.5, finished
    assert float((sd.logs / f"{run.name}.startup").read_text()) >= 1.0
    assert _children_of_this_process() == []  # ended once the sweep was over


@pytest.mark.slow
def test_failed_checks_end_the_started_child(tmp_path, monkeypatch):
    """A config the checks refuse stops the sweep with one line, and the child started for it
    does not outlive the refusal (in-process callers, such as these tests, do not exit)."""
    from experiments import sweep as sweep_cli
    from experiments.sweeplib.errors import SweepError

    cfg = write_sweep_file(tmp_path, variants=("100k",), tokens=(64 * 20,), learning_rates=(1e-3,))
    seen = []

    def refuse(sweep, runs):
        seen.append(_children_of_this_process())
        raise SweepError("run x: refused by the test")

    monkeypatch.setattr(sweep_cli, "check_trainer_configs", refuse)
    assert sweep_cli.main(["run", "--config", cfg, "--workdir", str(tmp_path / "w"), "--quiet"]) == 2
    assert len(seen) == 1 and len(seen[0]) == 1, seen
    assert _children_of_this_process() == []
    assert not (tmp_path / "w" / "runs").exists() or not any((tmp_path / "w" / "runs").iterdir())
