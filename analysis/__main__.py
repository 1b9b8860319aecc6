"""Command line: python -m analysis {fit,isoflop,envelope,curves,bench,simcheck} ..."""

from __future__ import annotations

import argparse
import json
import os
import sys

from common.flags import OneLineParser, refuse_unknown

from .errors import AnalysisError

INPUT_HELP = ("a results file (CSV, TSV, JSONL, Parquet), a sweep directory, or one run "
              "directory")


def _parse(argv):
    p = _parser()
    args, extra = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if extra:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        refuse_unknown(sub.choices.get(getattr(args, "command", None), p), extra)
    for name in ("reference_flops", "select_by"):  # comma-separated, like every list flag
        value = getattr(args, name, None)
        if value is not None:
            items = [x.strip() for v in value for x in v.split(",") if x.strip()]
            if name == "reference_flops":
                try:
                    items = [float(x) for x in items]
                except ValueError:
                    p.error(f"--reference-flops {','.join(value)} is not a comma-separated list "
                            "of numbers; write e.g. --reference-flops 1e18,1e19")
            setattr(args, name, items)
    return args


def _common(p, *, selection=True):
    p.add_argument("results", help=INPUT_HELP)
    p.add_argument("--params-column", default="params",
                   help="column used as N (e.g. nonembedding_params)")
    p.add_argument("--tokens-column", default="tokens",
                   help="column used as D, the training tokens (e.g. train_tokens)")
    p.add_argument("--compute", choices=["auto", "flops", "6nd"], default="auto",
                   help="compute convention: auto = the table's flops column when present "
                        "(N_opt then uses C = f(N) D with f inferred from the table), else "
                        "C = 6ND; 6nd forces C = 6ND")
    p.add_argument("--duplicates", choices=["drop", "refuse"], default="drop",
                   help="repeated rows (exact duplicates, or a run name given twice): drop "
                        "them with a warning, keeping the later row, or refuse with their rows")
    if selection:
        p.add_argument("--loss-column", default="loss",
                       help="the loss to fit, e.g. eval_NAME_loss for a second evaluation set "
                            "(its standard error from the column of that name plus _stderr)")
        p.add_argument("--select", choices=["best", "all"], default="best",
                       help="best: keep the lowest-loss run among runs at one point that "
                            "differ in --select-by; all: fit every run")
        p.add_argument("--select-by", nargs="+", default=None, metavar="LIST",
                       help="comma-separated hyperparameter columns to select over "
                            "(default: learning_rate)")


def _reference_flops(p):
    p.add_argument("--reference-flops", nargs="+", default=None, metavar="LIST",
                   help="comma-separated computes at which to report N_opt, D_opt, e.g. "
                        "1e18,1e19 (default: max C x 1, 10, 100)")


def _output(p):
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--svg", action="store_true", help="also write every plot as SVG")


def _add_fit(sub, fmt):
    f = sub.add_parser("fit", help="fit a loss law (Approach 3) with bootstrap intervals",
                       formatter_class=fmt)
    _common(f)
    f.add_argument("--law", default="chinchilla",
                   choices=["chinchilla", "power", "kaplan", "data-constrained", "schedule"],
                   help="law to fit (schedule: L(N, step) from every curve point of a sweep "
                        "directory or curves.csv; docs/schedule-law.md)")
    f.add_argument("--x", choices=["params", "tokens", "flops"], default=None,
                   help="variable of a one-variable law (power: default params; kaplan: "
                        "none means the joint L(N, D))")
    f.add_argument("--base-law", default=None, metavar="FIT_JSON",
                   help="data-constrained law: hold the base law fixed at this chinchilla "
                        "fit.json (default: fit it jointly with R_D*, R_N*)")
    _output(f)
    f.add_argument("--plots", choices=["auto", "wait", "background"], default="auto",
                   help="background: print the fit as soon as fit.json is written and draw "
                        "the plots and report in a second process that the command does not "
                        "wait for; auto: background on a terminal, wait otherwise")
    f.add_argument("--bootstrap", type=int, default=1000, help="resamples (0 to skip)")
    f.add_argument("--huber-delta", type=float, default=1e-3,
                   help="Huber threshold on log-loss residuals")
    f.add_argument("--holdout-above-flops", type=float, default=None,
                   help="also fit runs with C <= this and report errors on the others")
    f.add_argument("--holdout-above-params", type=float, default=None,
                   help="also fit runs with N <= this (N from --params-column), i.e. without "
                        "the largest models, and report errors on the others")
    f.add_argument("--holdout-schedule", default=None, metavar="NAME",
                   help="--law schedule: also fit without the runs of this schedule (constant, "
                        "cosine or wsd) and predict their final losses")
    f.add_argument("--schedule", default="cosine", choices=["cosine", "constant", "wsd"],
                   help="--law schedule: the schedule whose predicted final losses give N_opt(C)")
    f.add_argument("--min-step", type=int, default=None,
                   help="--law schedule: fit curve points from this step on (default 64)")
    f.add_argument("--momentum", type=float, default=None,
                   help="--law schedule: momentum of the annealing area S2 (default 0.98)")
    f.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    f.add_argument("--no-abandon", action="store_true",
                   help="run every start of the grid to convergence or the iteration cap "
                        "instead of screening the grid and abandoning starts that cannot "
                        "reach the best (the exhaustive fit; slower)")
    _reference_flops(f)


def _add_isoflop(sub, fmt):
    i = sub.add_parser("isoflop", help="iso-FLOP parabolas (Approach 2)", formatter_class=fmt)
    _common(i)
    _output(i)
    i.add_argument("--bootstrap", type=int, default=1000, help="resamples (0 to skip)")
    i.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    i.add_argument("--bin-width", type=float, default=None,
                   help="group actual FLOPs in log10 bins of this width instead of the planned "
                        "compute_budget (default: compute_budget when present, else exact "
                        "shared values, else 0.1 dex bins)")
    _reference_flops(i)


def _add_curve_commands(sub, fmt):
    """envelope and curves: the commands that read training curves rather than final losses."""
    e = sub.add_parser("envelope", help="lower envelope of training curves (Approach 1)",
                       formatter_class=fmt)
    _common(e, selection=False)
    e.add_argument("--source", choices=["auto", "eval", "train"], default="auto",
                   help="for a sweep or run directory: which loss rows make the curves "
                        "(auto: eval rows when every run has 2+, else train rows)")
    e.add_argument("--bootstrap", type=int, default=200,
                   help="resamples of runs for the 95%% interval of a and b (0 to skip)")
    e.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    c = sub.add_parser("curves", help="training curves of a sweep as the table Approach 1 reads",
                       formatter_class=fmt)
    c.add_argument("sweep", help="a sweep directory (or one run directory)")
    c.add_argument("--out", required=True, help="output directory (writes curves.csv)")
    c.add_argument("--source", choices=["auto", "eval", "train"], default="auto",
                   help="which loss rows make the curves (auto: eval rows when every run has "
                        "2+, else train rows)")


def _add_checks(sub, fmt):
    """bench and simcheck: the fitters' own speed and calibration, on synthetic tables."""
    b = sub.add_parser("bench", help="time the vectorised fit against a plain scipy loop, and "
                                     "the whole fit command end to end",
                       formatter_class=fmt)
    b.add_argument("--points", type=int, default=300, help="synthetic points")
    b.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    b.add_argument("--scipy-starts", type=int, default=450,
                   help="grid starts timed with scipy (the rest extrapolated)")
    b.add_argument("--e2e-points", type=int, default=240,
                   help="points of the end-to-end timing of 'fit' (0 to skip it)")
    s = sub.add_parser("simcheck", help="simulation check: coverage and width of the 95%% "
                                        "intervals of a from Approaches 1, 2 and 3 on replicate "
                                        "tables from a known law (minutes)",
                       formatter_class=fmt)
    s.add_argument("--replicates", type=int, default=50, help="replicate tables per approach")
    s.add_argument("--bootstrap", type=int, default=100,
                   help="resamples per replicate (Approaches 1 and 3)")
    s.add_argument("--seed", type=int, default=0, help="seed of the replicates")
    s.add_argument("--approaches", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3],
                   help="which approaches to check")


def _parser():
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = OneLineParser(prog="python -m analysis", description=__doc__, formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for add in (_add_fit, _add_isoflop, _add_curve_commands, _add_checks):
        add(sub, fmt)
    return p


def _compile_cache():
    """A persistent JAX compilation cache, so a second `fit` skips XLA compilation
    (set before JAX is imported; JAX_COMPILATION_CACHE_DIR chooses another place), and
    beside it the fit's own compiled programs (analysis/programs.py), so it skips tracing
    too (ANALYSIS_PROGRAM_CACHE_DIR chooses another place).
    Every compilation is kept: by default JAX skips those under 1 s, and the fit's many
    small ones (tens of them, eager ops included) then cost seconds on every run."""
    base = os.path.join(os.environ.get("XDG_CACHE_HOME")
                        or os.path.join(os.path.expanduser("~"), ".cache"), "scaling-analysis")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(base, "jax"))
    os.environ.setdefault("ANALYSIS_PROGRAM_CACHE_DIR", os.path.join(base, "programs"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def _progress(stream=None):
    """On a terminal, one line per stage of a fit with the time so far (a fit takes seconds to
    a minute); nothing in a pipe or a log, where only the result belongs."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return None
    import time
    t0 = time.time()

    def say(message):
        print(f"[{time.time() - t0:5.1f}s] {message} ...", file=stream, flush=True)
    return say


def _plots_mode(choice):
    """auto: background at a terminal (a person waits for the numbers), else wait (a script
    or test that reads the figures next)."""
    if choice == "auto":
        return "background" if sys.stdout.isatty() else "wait"
    return choice


def _schedule_options(args) -> dict:
    """Options of `fit --law schedule`; the options of the final-loss laws are refused."""
    for flag, value in (("--x", args.x), ("--base-law", args.base_law),
                        ("--holdout-above-flops", args.holdout_above_flops)):
        if value is not None:
            raise AnalysisError(f"{flag} does not apply to --law schedule")
    from .schedule_fit import MIN_STEP
    from .schedule_law import MOMENTUM
    return dict(params_column=args.params_column, huber_delta=args.huber_delta,
                bootstrap=args.bootstrap, seed=args.seed, schedule=args.schedule,
                momentum=MOMENTUM if args.momentum is None else args.momentum,
                min_step=MIN_STEP if args.min_step is None else args.min_step,
                reference_flops=args.reference_flops, compute=args.compute,
                holdout_schedule=args.holdout_schedule,
                holdout_above_params=args.holdout_above_params, abandon=not args.no_abandon)


def _fit(args):
    if args.law == "schedule":
        from .schedule_report import run_schedule_fit
        _, summary = run_schedule_fit(args.results, args.out, svg=args.svg,
                                      **_schedule_options(args))
        print(summary)
        return
    from .pipeline import run_fit
    fit, summary = run_fit(args.results, args.out, args.law, args.x, bootstrap=args.bootstrap,
                         huber_delta=args.huber_delta,
                         holdout_above_flops=args.holdout_above_flops,
                         holdout_above_params=args.holdout_above_params, seed=args.seed,
                         params_column=args.params_column,
                         reference_flops=args.reference_flops, compute=args.compute,
                         select=args.select, select_by=args.select_by,
                         base_law=args.base_law, duplicates=args.duplicates,
                         loss_column=args.loss_column, abandon=not args.no_abandon,
                         svg=args.svg, tokens_column=args.tokens_column,
                         progress=_progress(), plots=_plots_mode(args.plots))
    print(summary)
    if "_plots_process" in fit:
        print(f"(plots and report: being drawn by process {fit['_plots_process']}; "
              f"they appear in {args.out} in a few seconds)", file=sys.stderr)


def _isoflop(args):
    from .pipeline import run_isoflop
    _, summary = run_isoflop(args.results, args.out, bootstrap=args.bootstrap,
                             seed=args.seed, bin_width_dex=args.bin_width,
                             params_column=args.params_column, compute=args.compute,
                             select=args.select, select_by=args.select_by,
                             reference_flops=args.reference_flops,
                             duplicates=args.duplicates, loss_column=args.loss_column,
                             svg=args.svg, tokens_column=args.tokens_column)
    print(summary)


def _envelope(args):
    from .data import use_tokens_column
    from .envelope import envelope, envelope_input
    table = use_tokens_column(envelope_input(args.results, args.source, args.duplicates),
                              args.tokens_column)
    print(json.dumps(envelope(table,
                              params_column=args.params_column, compute=args.compute,
                              bootstrap=args.bootstrap, seed=args.seed),
                     indent=2))


def _curves(args):
    from .curves import write_curves
    path, table = write_curves(args.sweep, args.out, args.source)
    runs = len(set(table.text("run")))
    print(f"curves: {len(table)} rows from {runs} runs "
          f"({table.columns['loss_source'][0]}) -> {path}")
    for n in table.notes:
        print(f"  note: {n}")


def _simcheck(args):
    from .simcheck import main as simcheck
    if args.replicates < 2 or args.bootstrap < 2:
        raise AnalysisError("--replicates and --bootstrap must be at least 2")
    simcheck(args.replicates, args.bootstrap, args.seed, tuple(args.approaches))


def _bench(args):
    from .bench import main as bench
    bench(args.points, args.bootstrap, args.scipy_starts, args.e2e_points)


COMMANDS = {"fit": _fit, "isoflop": _isoflop, "envelope": _envelope, "curves": _curves,
            "simcheck": _simcheck, "bench": _bench}


def main(argv=None):
    args = _parse(argv)
    if args.command == "fit" and args.law != "schedule" and args.holdout_schedule:
        print("error: --holdout-schedule needs --law schedule (the other laws see final "
              "losses only)", file=sys.stderr)
        return 2
    if args.command in ("fit", "isoflop", "bench", "simcheck"):
        _compile_cache()
    try:
        COMMANDS[args.command](args)
    except AnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
