"""The sweep runner end to end with the real trainer, on CPU.

- the smoke sweep (configs/sweeps/smoke.py) runs through `python -m experiments.sweep run`;
- a sweep killed with SIGKILL mid-run and started again completes every run exactly once, the
  interrupted one resumed from its checkpoint, with the same losses as the uninterrupted sweep;
- two workers on one sweep directory run each run once;
- a diverging run is recorded as failed with its reason and the sweep goes on;
- results.csv loads in the analysis.

Run names depend only on run configs, so a sub-sweep (`--config.variants=...`) has the same runs,
under the same names, as the reference smoke sweep. Losses of the same run must agree within
LOSS_TOL: a resumed run restores its exact state and its batches are a pure function of
(seed, step), so the only allowed difference is float noise.
The children run on the host's one CPU device (the 8 fake devices of conftest are dropped) and
share the suite's JAX compilation cache (tests/conftest.py), so the repeated sweeps do not
recompile, and a second session of the suite compiles nothing.
"""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = "configs/sweeps/smoke.py"
LOSS_TOL = 1e-4
SUBSET = "--config.variants=('100k',)"  # 2 of the smoke sweep's runs (24 and 48 steps)
# The kill test's victim is the slower model's 48-step run: its window between the first
# checkpoint (step 16) and the end is the widest the smoke sweep offers.
KILL_SUBSET = "--config.variants=('300k',)"


@pytest.fixture(scope="module")
def env():
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    flags = [f for f in e.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    e["XLA_FLAGS"] = " ".join(flags)
    return e


def sweep_cmd(command, workdir, *extra):
    if command == "status":  # status reads DIR/sweep.json
        return [sys.executable, "-m", "experiments.sweep", "status", str(workdir), *extra]
    return [sys.executable, "-m", "experiments.sweep", command, "--config", SMOKE, "--workdir", str(workdir), *extra]


def run_sweep(env, workdir, *extra, timeout=300):
    return subprocess.run(sweep_cmd("run", workdir, "--quiet", *extra), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def results(workdir) -> dict[str, dict]:
    with open(pathlib.Path(workdir) / "results.csv") as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def events(workdir, name) -> list[dict]:
    path = pathlib.Path(workdir) / "state" / "events" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def starts(workdir, name) -> list[dict]:
    return [e for e in events(workdir, name) if e["event"] == "started"]


def assert_same_losses(rows, reference):
    for name, row in rows.items():
        assert abs(float(row["loss"]) - float(reference[name]["loss"])) <= LOSS_TOL, name
        assert row["tokens"] == reference[name]["tokens"] and row["params"] == reference[name]["params"]


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
    """The smoke sweep, uninterrupted."""
    workdir = tmp_path_factory.mktemp("smoke")
    proc = run_sweep(env, workdir)
    return workdir, proc


@pytest.mark.slow
def test_smoke_sweep_runs_end_to_end(reference):
    workdir, proc = reference
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = results(workdir)
    assert len(rows) == 4
    for name, row in rows.items():
        result = json.loads((workdir / "runs" / name / "result.json").read_text())
        assert result["status"] == "done" and row["loss"] == str(result["loss"])
        assert len(starts(workdir, name)) == 1
        # The run's name carries the hash the trainer recorded (one definition, run_math).
        assert name.rsplit("-", 1)[-1] == result["config_hash"] == row["config_hash"]
    # More data, lower loss, for each model size.
    for variant in ("100k", "300k"):
        by_tokens = sorted((int(r["tokens"]), float(r["loss"])) for r in rows.values() if r["variant"] == variant)
        assert by_tokens[0][1] > by_tokens[1][1]
    assert "[sweep] 4/4 done" in proc.stderr and "sweep finished: 4/4 runs done" in proc.stdout
    # A first try ends with a report: the smoke sweep fits a law its 4 points support.
    assert not [line for line in proc.stdout.splitlines() if line.startswith("analysis failed")]
    assert "power fit on 4 points" in proc.stdout
    assert (workdir / "analysis" / "report.html").is_file()


@pytest.mark.slow
def test_results_csv_loads_in_the_analysis(reference):
    from analysis.data import load_results

    workdir, _ = reference
    table = load_results(workdir / "results.csv")
    assert len(table) == 4
    rows = results(workdir)
    for column in ("params", "nonembedding_params", "tokens", "flops", "loss"):
        values = table.numeric(column)
        assert list(values) == [float(r[column]) for r in rows.values()]
    status = subprocess.run(sweep_cmd("status", workdir), cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            capture_output=True, text=True)
    assert "4 runs: 4 done" in status.stdout


@pytest.mark.slow
def test_killed_sweep_resumes_and_matches_uninterrupted(reference, env, tmp_path):
    ref_dir, _ = reference
    workdir = tmp_path / "killed"
    proc = subprocess.Popen(sweep_cmd("run", workdir, "--quiet", KILL_SUBSET), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Wait until the first run is done and the second has saved a checkpoint, then kill the lot.
    deadline = time.time() + 240
    victim = checkpoint = None
    while time.time() < deadline and victim is None:
        time.sleep(0.05)
        for run_dir in sorted((workdir / "runs").glob("*")) if (workdir / "runs").exists() else []:
            steps = [int(p.name) for p in (run_dir / "checkpoints").glob("*") if p.name.isdigit()]
            if steps and not (run_dir / "result.json").exists() and len(list((workdir / "runs").glob("*/result.json"))) == 1:
                victim, checkpoint = run_dir.name, max(steps)
    assert victim is not None, "the sweep never reached its second run's first checkpoint"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    metrics = workdir / "runs" / victim / "metrics.jsonl"

    again = run_sweep(env, workdir, KILL_SUBSET)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = results(workdir)
    assert len(rows) == 2 and victim in rows
    for name in rows:
        n_starts = len(starts(workdir, name))
        finished = [e for e in events(workdir, name) if e["event"] == "finished"]
        assert len(finished) == 1  # completed exactly once
        assert n_starts == (2 if name == victim else 1)  # the finished run was not run again
    assert starts(workdir, victim)[1]["after_interrupt"]
    # The restart resumed from a checkpoint rather than from step 0, and its events say so.
    resumed = [e for e in events(workdir, victim) if e["event"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["from_step"] >= checkpoint
    # metrics.jsonl was cut back to the resumed step: every step's train loss appears once.
    train_steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if "train/loss" in x]
    assert len(train_steps) == len(set(train_steps)) and max(train_steps) > resumed[0]["from_step"]
    assert_same_losses(rows, results(ref_dir))


@pytest.mark.slow
def test_two_workers_share_a_sweep_and_run_each_run_once(reference, env, tmp_path):
    ref_dir, _ = reference
    workdir = tmp_path / "shared"
    procs = [subprocess.Popen(sweep_cmd("run", workdir, "--quiet", SUBSET), cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    rows = results(workdir)
    assert len(rows) == 2
    pids = set()
    for name in rows:
        s = starts(workdir, name)
        assert len(s) == 1, name
        pids.add(s[0]["pid"])
    assert pids <= {p.pid for p in procs}
    assert_same_losses(rows, results(ref_dir))


@pytest.mark.slow
def test_diverging_run_is_recorded_and_the_sweep_goes_on(env, tmp_path):
    workdir = tmp_path / "diverge"
    proc = run_sweep(env, workdir, SUBSET, "--config.tokens=(12288,)",
                     "--config.learning_rates=(0.003, 10000.0)")
    assert proc.returncode == 1, proc.stderr[-3000:]  # some run failed, the sweep still finished
    assert "1/2 runs done, 1 failed" in proc.stdout
    rows = results(workdir)
    assert len(rows) == 1 and "lr0.003" in next(iter(rows))
    status = subprocess.run(sweep_cmd("status", workdir), cwd=ROOT, env=env, capture_output=True, text=True).stdout
    line = next(x for x in status.splitlines() if "lr10000" in x)
    assert "failed" in line and "diverged" in line


@pytest.mark.slow
def test_wsd_branches_restore_the_parents_checkpoints(env, tmp_path):
    """A WSD sweep with the real trainer: each branch starts from its planned parent step."""
    from experiments.sweeplib import plan, spec

    workdir = tmp_path / "wsd"
    proc = run_sweep(env, workdir, "--config.kind=wsd", SUBSET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = spec.load(SMOKE, ["--config.kind=wsd", "--config.variants=100k"])
    parent, *branches = plan.expand(sweep)
    assert len(branches) == 2 and set(results(workdir)) == {b.name for b in branches}
    kept = {int(p.name) for p in (workdir / "runs" / parent.name / "checkpoints").iterdir() if p.name.isdigit()}
    for b in branches:
        result = json.loads((workdir / "runs" / b.name / "result.json").read_text())
        assert result["branched_from"] == {"run": str(workdir / "runs" / parent.name), "step": b.start_step}
        assert b.start_step in kept and result["tokens"] == b.tokens and result["steps"] == b.steps
        logged = [json.loads(x)["step"] for x in (workdir / "runs" / b.name / "metrics.jsonl").read_text().splitlines()]
        assert min(logged) > b.start_step  # trained only its decay, from the parent's state


@pytest.mark.slow
def test_analysis_reads_the_sweep_directory_and_its_curves(reference, tmp_path):
    """`analysis fit SWEEP_DIR`, `analysis curves SWEEP_DIR` then `analysis envelope` (issue 9)."""
    workdir, _ = reference
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def analysis(*args):
        return subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)

    fit = analysis("fit", workdir, "--law", "power", "--bootstrap", "0", "--out", tmp_path / "fit")
    assert fit.returncode == 0, fit.stderr
    assert json.loads((tmp_path / "fit" / "fit.json").read_text())["n_points"] == 4
    curves = analysis("curves", workdir, "--out", tmp_path / "curves")
    assert curves.returncode == 0, curves.stderr
    with open(tmp_path / "curves" / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["run"] for r in rows} == set(results(workdir))
    for r in rows:  # the run's own arithmetic: tokens per step and FLOPs per token
        res = json.loads((workdir / "runs" / r["run"] / "result.json").read_text())
        assert int(r["tokens"]) == int(r["step"]) * res["batch_size"] * res["context_length"]
        assert float(r["flops"]) == pytest.approx(res["flops"] / res["tokens"] * int(r["tokens"]))
    env_out = analysis("envelope", tmp_path / "curves" / "curves.csv")
    assert env_out.returncode == 0, env_out.stderr
    assert json.loads(env_out.stdout)["n_runs"] == 4
