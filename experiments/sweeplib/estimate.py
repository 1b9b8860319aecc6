"""Wall-time estimates for `plan`, from a short measured benchmark of each distinct model shape.

What a sweep pays, as its runs' timing breakdowns show:
- once per worker: STARTUP_S (the long-lived child imports jax/flax/orbax and loads the corpus);
- once per model shape, on its first run: about FIRST_OF_SHAPE x compile_s (the train step's
  compilation, the eval step's, and the first checkpoint save); later runs of the shape reuse
  the compiled step (one executable per shape, the persistent compilation cache);
- every run: PER_RUN_S (setup, evaluations' fixed part, checkpoints) + steps x step_s
  + eval batches x step_s / 3 (an eval batch is about a forward pass).
step_s is the median of single timed steps, so one slow step on a shared machine does not
inflate the estimate of every step. Measurements are cached in DIR/state/bench.json by shape,
so a second `plan` is instant.
"""

from __future__ import annotations

import json

from common.files import write_atomic
from experiments.sweeplib.layout import SweepDir, read_json
from research import evals

STARTUP_S = 6.0  # measured: a child process importing jax/flax/orbax and loading the corpus
FIRST_OF_SHAPE = 1.5  # x compile_s: train + eval compilation and the first checkpoint (measured)
PER_RUN_S = 1.5  # measured fixed cost of a run whose shape is already compiled
BENCH_STEPS = 9  # single steps, median taken: 3-5 were too noisy on a shared machine


def shape_key(config) -> str:
    m, t = config.model, config.train
    return json.dumps([m.n_layers, m.d_model, m.n_heads, m.context_length, m.vocab_size,
                       m.compute_dtype, m.position, t.batch_size, t.microbatches])


def measure_shapes(runs, sweep_dir: SweepDir, out=print) -> dict[str, dict]:
    from research import bench  # imports jax; only when a benchmark is asked for

    cache_file = sweep_dir.state / "bench.json"
    cache = read_json(cache_file) or {}
    peak = None
    for run in runs:
        key = shape_key(run.config)
        if key not in cache:
            out(f"benchmarking {run.variant} ({BENCH_STEPS} steps)...")
            peak = peak or bench.peaks.device_peak()  # found once; only MFU uses it
            m = bench.measure(run.config, steps=BENCH_STEPS, peak=peak)
            cache[key] = {"step_s": float(m["step_s"]), "compile_s": float(m["compile_s"])}
            write_atomic(cache_file, json.dumps(cache, indent=1))
    return cache


def estimates(runs, bench: dict[str, dict], workers: int = 1) -> dict[str, float]:
    """Seconds per run; the first run of each shape carries the shape's compilation and the
    first `workers` runs a child's start-up."""
    out, seen = {}, set()
    for i, run in enumerate(runs):
        key = shape_key(run.config)
        b = bench.get(key)
        if b is None:
            continue
        fixed = PER_RUN_S + (STARTUP_S if i < max(1, workers) else 0.0)
        if key not in seen:
            seen.add(key)
            fixed += FIRST_OF_SHAPE * b["compile_s"]
        out[run.name] = (fixed + run.steps_to_train * b["step_s"]
                         + eval_batches(run) * b["step_s"] / 3)
    return out


def eval_batches(run) -> int:
    """Eval batches one run evaluates: along the way (research.evals.eval_steps past the run's
    start, the last step excluded) and at its end (train.final_eval_batches, 0 = eval_batches, plus
    the curve's own eval_batches when those differ)."""
    t = run.config.train
    along = sum(run.start_step < s < run.steps for s in evals.eval_steps(
        run.steps, t.eval_points, t.eval_every))
    final = t.final_eval_batches or t.eval_batches
    curve_end = t.eval_batches if final != t.eval_batches else 0  # the curve's last point
    return along * t.eval_batches + final + curve_end


def cached_estimates(runs, sweep_dir: SweepDir) -> dict[str, float]:
    return estimates(runs, read_json(sweep_dir.state / "bench.json") or {})
