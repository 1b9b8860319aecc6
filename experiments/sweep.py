"""Sweep runner: expand a sweep config into training runs, run them (surviving crashes, kills
and restarts), collect results.csv and fit the scaling law.

  python -m experiments.sweep plan   --config configs/sweeps/NAME.py[:ARG] [--workdir DIR] [--no-bench]
  python -m experiments.sweep run    --config configs/sweeps/NAME.py[:ARG] --workdir DIR [--workers K]
  python -m experiments.sweep status DIR

`run` again on the same DIR skips finished runs, resumes interrupted ones from their checkpoints
and retries crashed ones up to runner.retries; `--retry-failed` grants failed runs new attempts.
Any sweep config key can be overridden: `--config.executor.workers=2 --config.analysis.bootstrap=50`.
Exit status of `run`: 0 every run done, 1 some runs failed (listed), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import tempfile

import ml_collections

from configs import sweep_base
from experiments import cli
from experiments.sweeplib import claims as claims_lib, estimate, executors, ledger, plan, report
from experiments.sweeplib import spec
from experiments.sweeplib.errors import SweepError
from experiments.sweeplib.finish import finalize
from common.files import write_atomic
from experiments.sweeplib.layout import SweepDir, read_json

PROG = "python -m experiments.sweep"
EXAMPLE = "configs/sweeps/NAME.py"
OVERRIDE_EXAMPLE = "--config.analysis.bootstrap=50 or --config.base.train.batch_size=32"
COMMANDS = {
    "plan": "print what would run (runs, N, D, C, steps) and a wall-time estimate from a short "
            "benchmark of each model shape",
    "run": "run the sweep: skip finished runs, resume interrupted ones, retry crashed ones; then "
           "write results.csv and fit the law",
    "status": "done / running / failed (with reasons) / waiting / pending, and each running "
              "run's step",
}


def build_parser() -> cli.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=cli.ArgumentParser)
    for name, text in COMMANDS.items():
        s = sub.add_parser(name, help=text, description=text, prog=f"{PROG} {name}")
        if name == "status":
            s.add_argument("sweep_dir", nargs="?", metavar="DIR", help="the sweep directory")
            cli.add_config(s, None, f"{EXAMPLE}[:ARG] to read the plan from, instead of DIR/sweep.json",
                           example=OVERRIDE_EXAMPLE)
        else:
            cli.add_config(s, None, f"sweep config, {EXAMPLE}[:ARG]", required=True,
                           example=OVERRIDE_EXAMPLE)
            if name == "plan":
                s.add_argument("--workdir", metavar="DIR",
                               help="the sweep directory whose state/bench.json caches the "
                                    "timing benchmark (optional: without it the benchmark is "
                                    "not kept; plan writes nothing else)")
            else:
                s.add_argument("--workdir", required=True, metavar="DIR",
                               help="the sweep directory (created; the same command again "
                                    "resumes it)")
        if name == "plan":
            s.add_argument("--no-bench", action="store_true", help="skip the timing benchmark")
            s.add_argument("--preflight", action="store_true",
                           help="compile every distinct shape on its mesh and print per-device memory")
        if name == "run":
            s.add_argument("--workers", type=int, metavar="K",
                           help="local parallel workers (executor.workers)")
            s.add_argument("--executor", choices=sweep_base.EXECUTORS, help="where runs execute (executor.kind)")
            s.add_argument("--retry-failed", action="store_true", help="give failed runs new attempts")
            s.add_argument("--no-analysis", action="store_true", help="skip the fit at the end")
            s.add_argument("--quiet", action="store_true", help="no per-run training output")
    return p


def parse_args(argv):
    p = build_parser()
    args, overrides = cli.parse(p, argv)
    args.overrides = overrides
    if args.command == "status":
        args.workdir = args.sweep_dir
        if not args.workdir:
            raise SweepError(f"no sweep directory given; {PROG} status DIR")
    return args


def load(args, checks: bool = True, trainer_checks: bool = True):
    sweep = spec.load(args.config, args.overrides, example=EXAMPLE)
    if getattr(args, "workers", None) is not None:
        sweep.executor.workers = args.workers
    if getattr(args, "executor", None):
        sweep.executor.kind = args.executor
    if getattr(args, "no_analysis", False):
        sweep.analysis.enabled = False
    spec.check(sweep)
    runs = plan.expand(sweep)
    if checks:  # plan and run: refuse what cannot run here, before anything runs
        executors.check_available(sweep)
        if trainer_checks:
            check_trainer_configs(sweep, runs)
    return sweep, runs


def _unfinished(sweep_dir: SweepDir, runs) -> bool:
    return any((sweep_dir.result(r.name) or {}).get("status") != "done" for r in runs)


def check_trainer_configs(sweep, runs) -> None:
    """The trainer's own config checks on every run, before anything runs (real trainer only)."""
    if sweep.runner.train_fn != sweep_base.TRAINER:
        return
    from research import metrics, train
    from research.errors import UserError

    # Local runs get a share of this machine's devices; a Slurm run's mesh is checked where it
    # runs (the child validates before training), not on the submit host's devices.
    local = sweep.executor.kind == "local"
    per_run = executors.devices.local_worker_envs(sweep)[0] if local else None
    for run in runs:
        # A branch's parent has no checkpoints yet; the model alone is checked for Slurm (the
        # mesh is checked on the devices the run gets, the model when its config was built).
        config = plan.replace_train(run.config, init_from="")
        try:
            if local:
                train.validate(config, per_run)
            metrics.check_tracking(config)
        except UserError as e:
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
    if args.preflight:
        from research import preflight
        preflight.check_shapes([r.config for r in runs], out=lambda s: print(s, file=sys.stderr))
    estimates = None
    if not args.no_bench:
        with tempfile.TemporaryDirectory(prefix="sweep-plan-") as scratch:
            # Without --workdir the benchmark's cache lives only as long as this command.
            sweep_dir = SweepDir(args.workdir or scratch)
            bench = estimate.measure_shapes(runs, sweep_dir, out=lambda s: print(s, file=sys.stderr))
        estimates = estimate.estimates(runs, bench, int(sweep.executor.workers))
    print(f"sweep {sweep.name!r} ({sweep.kind}), tolerance of iso-FLOP matching {plan.ISOFLOP_TOLERANCE:.0%}"
          if sweep.kind == "isoflop" else f"sweep {sweep.name!r} ({sweep.kind})")
    print(report.plan_table(runs, estimates, int(sweep.executor.workers)))
    return 0


def cmd_run(args) -> int:
    sweep, runs = load(args, trainer_checks=False)
    sweep_dir = SweepDir(args.workdir)
    workers = None
    if sweep.executor.kind == "local" and _unfinished(sweep_dir, runs):
        # Training children start now: their imports overlap the trainer checks below.
        workers = executors.local_workers(sweep_dir, runs, sweep, echo=not args.quiet,
                                          start_children=True)
    try:
        check_trainer_configs(sweep, runs)
        return _run(args, sweep, runs, sweep_dir, workers)
    finally:
        executors.close_children(workers)


def _run(args, sweep, runs, sweep_dir: SweepDir, workers) -> int:
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
              f"follow with: python -m experiments.sweep status {sweep_dir.root}")
        return 0
    progress = report.Progress(sweep_dir, runs, claims, int(sweep.runner.retries), int(sweep.executor.workers),
                               estimate.cached_estimates(runs, sweep_dir))
    try:
        executors.run_local(sweep_dir, runs, sweep, echo=not args.quiet, progress=progress,
                            workers=workers)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    finalize(sweep_dir, runs, sweep, claims, f"local@{claims_lib.HOST}")
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


def _main(argv) -> int:
    args = parse_args(argv)
    return {"plan": cmd_plan, "run": cmd_run, "status": cmd_status}[args.command](args)


def main(argv=None) -> int:
    """The exit code; a UserError is one line on stderr (tests call this in-process)."""
    return cli.guarded(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
