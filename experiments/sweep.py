"""Sweep runner CLI.

  python -m experiments.sweep plan   --config configs/sweeps/NAME.py --workdir DIR [--no-bench]
  python -m experiments.sweep run    --config configs/sweeps/NAME.py --workdir DIR [--workers K]
  python -m experiments.sweep status --workdir DIR

`run` again on the same DIR skips finished runs, resumes interrupted ones from their checkpoints
and retries crashed ones up to runner.retries; `--retry-failed` grants failed runs new attempts.
Any config key can be overridden: `--set executor.workers=2 --set analysis.bootstrap=50`.
Exit status of `run`: 0 every run done, 1 some runs failed (listed), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

import ml_collections

from experiments.sweeplib import estimate, executors, ledger, plan, report, spec
from experiments.sweeplib.errors import SweepError
from experiments.sweeplib.finish import finalize
from experiments.sweeplib.layout import SweepDir, read_json, write_atomic


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("plan", "run", "status"):
        s = sub.add_parser(name)
        s.add_argument("--config", required=name != "status", help="configs/sweeps/NAME.py[:ARG]")
        s.add_argument("--workdir", required=True, help="the sweep directory")
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
        if name == "plan":
            s.add_argument("--no-bench", action="store_true", help="skip the timing benchmark")
            s.add_argument("--preflight", action="store_true",
                           help="compile every distinct shape on its mesh and print per-device memory")
        if name == "run":
            s.add_argument("--workers", type=int, help="local worker count (executor.workers)")
            s.add_argument("--executor", choices=spec.EXECUTORS, help="executor.kind")
            s.add_argument("--retry-failed", action="store_true", help="give failed runs new attempts")
            s.add_argument("--no-analysis", action="store_true", help="skip the fit at the end")
            s.add_argument("--quiet", action="store_true", help="no per-run training output")
    return p.parse_args(argv)


def load(args, checks: bool = True):
    overrides = list(args.set)
    if getattr(args, "workers", None) is not None:
        overrides.append(f"executor.workers={args.workers}")
    if getattr(args, "executor", None):
        overrides.append(f"executor.kind={args.executor!r}")
    if getattr(args, "no_analysis", False):
        overrides.append("analysis.enabled=False")
    sweep = spec.load(args.config, overrides)
    runs = plan.expand(sweep)
    if checks:  # plan and run: refuse what cannot run here, before anything runs
        executors.check_available(sweep)
        check_trainer_configs(sweep, runs)
    return sweep, runs


def check_trainer_configs(sweep, runs) -> None:
    """The trainer's own config checks on every run, before anything runs (real trainer only)."""
    if sweep.runner.train_fn != spec.TRAINER:
        return
    from research import config_checks, train

    # Local runs get a share of this machine's devices; a Slurm run's mesh is checked where it
    # runs (the child validates before training), not on the submit host's devices.
    local = sweep.executor.kind == "local"
    per_run = executors.devices.local_worker_envs(sweep)[0] if local else None
    for run in runs:
        config = copy.deepcopy(run.config)
        config.train.init_from = ""  # a branch's parent has no checkpoints yet
        try:
            if not local:
                config_checks.check_model(config.model)
            else:
                train.validate(config, per_run)
        except ValueError as e:
            raise SweepError(f"run {run.name}: {e}") from None


def save_plan(sweep_dir: SweepDir, sweep, runs) -> None:
    sweep_dir.make()
    old = read_json(sweep_dir.plan_file)
    if old:
        dropped = {r["name"] for r in old["runs"]} - {r.name for r in runs}
        if dropped:
            print(f"note: {len(dropped)} runs of the previous plan in {sweep_dir.root} are not in this one "
                  "and are left out of results.csv", file=sys.stderr)
    text = json.dumps({"sweep": sweep.to_dict(), "runs": [r.to_json() for r in runs]}, indent=1, default=str)
    write_atomic(sweep_dir.plan_file, text)


def cmd_plan(args) -> int:
    sweep, runs = load(args)
    sweep_dir = SweepDir(args.workdir)
    if args.preflight:
        from research import preflight
        preflight.check_shapes([r.config for r in runs], out=lambda s: print(s, file=sys.stderr))
    estimates = None
    if not args.no_bench:
        bench = estimate.measure_shapes(runs, sweep_dir, out=lambda s: print(s, file=sys.stderr))
        estimates = estimate.estimates(runs, bench)
    print(f"sweep {sweep.name!r} ({sweep.kind}), tolerance of iso-FLOP matching {plan.ISOFLOP_TOLERANCE:.0%}"
          if sweep.kind == "isoflop" else f"sweep {sweep.name!r} ({sweep.kind})")
    print(report.plan_table(runs, estimates, int(sweep.executor.workers)))
    return 0


def cmd_run(args) -> int:
    sweep, runs = load(args)
    sweep_dir = SweepDir(args.workdir)
    save_plan(sweep_dir, sweep, runs)
    claims = executors.make_claims(sweep_dir, sweep)
    if args.retry_failed:
        with sweep_dir.lock():
            for name, st in ledger.all_states(sweep_dir, runs, claims, int(sweep.runner.retries)).items():
                if st.state in ("failed", "retry") and not (sweep_dir.result(name) or {}).get("status"):
                    ledger.append_event(sweep_dir, name, "reset")
    if sweep.executor.kind == "slurm":
        jobs = executors.submit_slurm(sweep_dir, runs, sweep)
        print(f"submitted {len(jobs)} Slurm jobs ({', '.join(jobs[:5])}{'...' if len(jobs) > 5 else ''}); "
              f"follow with: python -m experiments.sweep status --workdir {sweep_dir.root}")
        return 0
    progress = report.Progress(sweep_dir, runs, claims, int(sweep.runner.retries), int(sweep.executor.workers),
                               estimate.cached_estimates(runs, sweep_dir))
    try:
        executors.run_local(sweep_dir, runs, sweep, echo=not args.quiet, progress=progress)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    finalize(sweep_dir, runs, sweep, claims, f"local@{executors.HOST}")
    states = ledger.all_states(sweep_dir, runs, claims, int(sweep.runner.retries))
    return 1 if any(st.state == "failed" for st in states.values()) else 0


def cmd_status(args) -> int:
    sweep_dir = SweepDir(args.workdir)
    if args.config:
        sweep, runs = load(args, checks=False)
    else:
        stored = read_json(sweep_dir.plan_file)
        if stored is None:
            raise SweepError(f"{sweep_dir.root} holds no sweep (no sweep.json); pass --config or run it first")
        sweep = ml_collections.ConfigDict(stored["sweep"])
        runs = [plan.Run.from_json(r) for r in stored["runs"]]
    claims = executors.make_claims(sweep_dir, sweep)
    states = ledger.all_states(sweep_dir, runs, claims, int(sweep.runner.retries))
    print(report.status_table(sweep_dir, runs, states))
    return 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return {"plan": cmd_plan, "run": cmd_run, "status": cmd_status}[args.command](args)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
