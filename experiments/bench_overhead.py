"""Per-run fixed cost of a sweep, measured from outside: python -m experiments.bench_overhead.

W(1x) and W(2x) are the wall times of the smoke sweep (4 runs) at its token budgets and at twice
them; steady training time doubles and fixed costs do not, so
    fixed cost per run = (2 W(1x) - W(2x)) / runs.
The two are measured alternately (1x, 2x, 1x, 2x, ...; medians) because a shared machine's load
drifts. Each sweep runs in a fresh directory with the fit skipped (it is per sweep, not per run)
and, by default, a fresh compilation cache (--cache cold: what a first sweep pays; --cache warm:
a cache filled by one untimed sweep first, as for a re-run or a second sweep of the same shapes).
--repo DIR measures another checkout the same way (e.g. the main branch, for a before/after).

Flags: --repeats N (pairs, default 2), --cache cold|warm, --repo DIR, --with-analysis, --override K=V
(passed to the sweep as --config.K=V, e.g. --override runner.runs_per_child=1 for a process per
run).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = "configs/sweeps/smoke.py"


def smoke_tokens(repo: pathlib.Path) -> tuple[int, ...]:
    """The smoke sweep's budgets, read from the checkout being measured."""
    code = f"from experiments.sweeplib import spec; print(list(spec.load({CONFIG!r}).tokens))"
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)),
                         capture_output=True, text=True, check=True).stdout
    return tuple(int(x) for x in json.loads(out.strip().splitlines()[-1]))


def run_sweep(repo: pathlib.Path, workdir: str, tokens, cache_dir: str, extra: list[str],
              analysis: bool) -> float:
    env = dict(os.environ, PYTHONPATH=str(repo), JAX_COMPILATION_CACHE_DIR=cache_dir)
    cmd = [sys.executable, "-m", "experiments.sweep", "run", "--config", CONFIG, "--workdir", workdir,
           "--quiet", f"--config.tokens={tuple(tokens)!r}"]
    cmd += [f"--config.{item}" for item in extra]
    if not analysis:
        cmd.append("--no-analysis")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: the sweep in {workdir} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall


def status_totals(repo: pathlib.Path, workdir: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "experiments.sweep", "status", workdir],
                          cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)), capture_output=True, text=True)
    return next((line for line in proc.stdout.splitlines() if line.startswith("time of")), "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench_overhead", description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2, help="(1x, 2x) pairs, interleaved")
    p.add_argument("--cache", choices=("cold", "warm"), default="cold")
    p.add_argument("--repo", default=str(REPO), help="checkout to measure")
    p.add_argument("--with-analysis", action="store_true", help="include the fit in W")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="a sweep config override, passed as --config.KEY=VALUE (repeatable)")
    p.add_argument("--out", help="folder for the sweep directories (default: a temporary one)")
    args = p.parse_args(argv)
    repo = pathlib.Path(args.repo).resolve()
    one = smoke_tokens(repo)
    two = tuple(2 * t for t in one)
    n_runs = 2 * len(one)  # the smoke sweep: 2 sizes x its budgets
    root = pathlib.Path(args.out or tempfile.mkdtemp(prefix="bench-overhead-"))
    root.mkdir(parents=True, exist_ok=True)
    shared_cache = str(root / "cache-warm")
    if args.cache == "warm":
        run_sweep(repo, str(root / "warmup"), one, shared_cache, args.override, args.with_analysis)
    walls = {"1x": [], "2x": []}
    for i in range(args.repeats):
        for label, tokens in (("1x", one), ("2x", two)):
            workdir = str(root / f"{label}-{i}")
            cache = shared_cache if args.cache == "warm" else str(root / f"cache-{label}-{i}")
            wall = run_sweep(repo, workdir, tokens, cache, args.override, args.with_analysis)
            walls[label].append(wall)
            row = {"sweep": label, "repeat": i, "wall_s": round(wall, 2), "tokens": list(tokens)}
            totals = status_totals(repo, workdir)
            if totals:
                row["status"] = totals
            print(json.dumps(row), flush=True)
    w1, w2 = statistics.median(walls["1x"]), statistics.median(walls["2x"])
    fixed = (2 * w1 - w2) / n_runs
    pairs = [(2 * a - b) / n_runs for a, b in zip(walls["1x"], walls["2x"])]
    print(json.dumps({"repo": str(repo), "cache": args.cache, "runs": n_runs, "W1x_s": round(w1, 2),
                      "W2x_s": round(w2, 2), "fixed_per_run_s": round(fixed, 2),
                      "fixed_per_run_by_pair_s": [round(x, 2) for x in pairs],
                      "load_avg_1min": round(os.getloadavg()[0], 2), "sets": args.override}))
    print(f"fixed cost per run: {fixed:.1f} s  ((2 x {w1:.1f} - {w2:.1f}) / {n_runs}, medians of "
          f"{args.repeats} interleaved pairs, {args.cache} compilation cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
