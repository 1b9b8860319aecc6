"""The end of a sweep: results.csv, then the analysis in its own process, then the fitted law.

The analysis runs as `python -m analysis fit DIR/results.csv --law LAW --out DIR/analysis
--bootstrap N` (plus `isoflop` for iso-FLOP sweeps; a preference sweep runs
`python -m experiments.preference_sweep fit DIR` instead): a separate process keeps its float64
apart from training, and a failed fit (too few points, say) costs one printed line, never the
results.
Several workers may reach the end together; a claim named `_analysis` lets one of them fit, and a
fit of unchanged results is not repeated.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

from experiments.sweeplib import ledger, results, tracking
from common.files import write_atomic
from experiments.sweeplib.layout import SweepDir
from experiments.sweeplib.worker import child_env

ANALYSIS_CLAIM = "_analysis"


def _inputs_tag(sweep_dir: SweepDir, sweep) -> str:
    text = sweep_dir.results_csv.read_text() + repr(analysis_commands(sweep_dir, sweep))
    return hashlib.sha256(text.encode()).hexdigest()


def finalize(sweep_dir: SweepDir, runs, sweep, claims, label: str, out=print) -> bool:
    """If every run is final: write results.csv and fit (once). Returns whether the sweep is over."""
    with sweep_dir.lock():
        states = ledger.all_states(sweep_dir, runs, claims, int(sweep.runner.retries))
        if any(st.state not in ledger.FINAL for st in states.values()):
            return False
        n_rows = results.write(sweep_dir, runs)
        fitting = sweep.analysis.enabled and n_rows > 0 and claims.try_claim(ANALYSIS_CLAIM, label)
    failed = [name for name, st in states.items() if st.state == "failed"]
    out(f"sweep finished: {len(runs) - len(failed)}/{len(runs)} runs done, {len(failed)} failed; "
        f"{n_rows} data points in {sweep_dir.results_csv}")
    for name in failed:
        out(f"  failed {name}: {states[name].detail}")
    if not sweep.analysis.enabled:
        return True
    if n_rows == 0:
        out("analysis skipped: no finished runs to fit")
        return True
    if not fitting:
        out(f"analysis is being run by another worker; see {sweep_dir.analysis}")
        return True
    try:
        run_analysis(sweep_dir, sweep, out)
    finally:
        with sweep_dir.lock():
            claims.release(ANALYSIS_CLAIM)
    return True


def fit_output(sweep) -> str:
    """The file in DIR/analysis that a finished fit leaves."""
    return "preference.json" if sweep.kind == "preference" else "fit.json"


def analysis_commands(sweep_dir: SweepDir, sweep) -> list[list[str]]:
    if sweep.kind == "preference":  # the over-optimisation fits over the points' results
        return [[sys.executable, "-m", "experiments.preference_sweep", "fit",
                 str(sweep_dir.root)]]
    csv = str(sweep_dir.results_csv)
    common = ["--bootstrap", str(int(sweep.analysis.bootstrap)), "--params-column", str(sweep.analysis.params_column)]
    holdout = []
    for by in ("flops", "params"):
        if float(sweep.analysis[f"holdout_above_{by}"]):
            holdout = [f"--holdout-above-{by}", repr(float(sweep.analysis[f"holdout_above_{by}"]))]
    law = str(sweep.analysis.law)
    x = str(sweep.analysis.get("x", "") or "")
    if law == "schedule":  # fitted to the curves in the run directories, not to results.csv
        csv = str(sweep_dir.root)
        if str(sweep.analysis.get("holdout_schedule", "")):
            holdout += ["--holdout-schedule", str(sweep.analysis.holdout_schedule)]
    cmds = [[sys.executable, "-m", "analysis", "fit", csv, "--law", law,
             *(["--x", x] if x else []), "--out", str(sweep_dir.analysis), *common, *holdout]]
    if sweep.kind == "isoflop":
        cmds.append([sys.executable, "-m", "analysis", "isoflop", csv, "--out",
                     str(sweep_dir.analysis / "isoflop"), *common])
    return cmds


def run_analysis(sweep_dir: SweepDir, sweep, out=print) -> bool:
    tag_file = sweep_dir.analysis / ".fitted_inputs"
    tag = _inputs_tag(sweep_dir, sweep)
    fresh = tag_file.exists() and tag_file.read_text() == tag and (sweep_dir.analysis / fit_output(sweep)).exists()
    if not fresh:
        for cmd in analysis_commands(sweep_dir, sweep):
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
            if proc.returncode != 0:
                lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
                out(f"analysis failed ({cmd[3]}): {lines[-1] if lines else f'exit code {proc.returncode}'}")
                out(f"the sweep's results are kept in {sweep_dir.results_csv}")
                return False
            sweep_dir.analysis.mkdir(parents=True, exist_ok=True)
            (sweep_dir.analysis / f"{cmd[3]}.log").write_text(proc.stdout)  # the printed summary
            (sweep_dir.analysis / f"{cmd[3]}.stderr").write_text(proc.stderr)
            out(f"analysis {cmd[3]} took {time.time() - t0:.0f}s")
        write_atomic(tag_file, tag)
        tracking.log_fit(sweep_dir, sweep, out)
    out(law_summary(sweep_dir))
    return True


def law_summary(sweep_dir: SweepDir) -> str:
    """The fitted law with intervals as the analysis printed it (it names the report), plus the
    iso-FLOP summary when there is one."""
    texts = [p.read_text().strip() for p in (sweep_dir.analysis / "fit.log", sweep_dir.analysis / "isoflop.log")
             if p.exists()]
    text = "\n".join(t for t in texts if t)
    return text if "report" in text else f"{text}\noutputs in {sweep_dir.analysis}".strip()
