"""When a run evaluates, what an eval row holds, and the unit of its standard error.

Evaluations at log-spaced steps (and every `eval_every` steps) make each run a loss curve
that Approach 1 and the schedule law can use (`python -m analysis curves`); each eval row
carries step, tokens, FLOPs, the LR and its areas (research/lr_areas.py), so the curve needs
no other file. Every point of a curve is measured on the same fixed windows
(`eval/curve_loss`), the end of the run included. The standard error is over eval batches: each batch is
a fixed set of disjoint validation windows, and batches do not overlap, so batch
means are independent units.

The evaluation at the end of a run (the loss in result.json) may use more batches than
the ones along the way (`train.final_eval_batches`): the curve's points stay cheap and
the final loss gets a small standard error. Measured on the default sweep's final
checkpoints, the batch-means stderr is 1.3-1.8x the naive per-window one, so windows
near each other are correlated and the batch (a contiguous stretch of the set, its
windows spread evenly over it) is the honest unit.
"""

from __future__ import annotations

import numpy as np


def eval_steps(total_steps: int, eval_points: int, eval_every: int) -> frozenset:
    """Steps after which to evaluate: `eval_points` log-spaced steps in 1..total_steps,
    every multiple of `eval_every` (when > 0), and always the last step."""
    steps = {int(total_steps)}
    if eval_points > 0 and total_steps > 0:
        steps |= {int(s) for s in np.unique(np.round(np.geomspace(1, total_steps, eval_points)))}
    if eval_every > 0:
        steps |= set(range(int(eval_every), int(total_steps) + 1, int(eval_every)))
    return frozenset(s for s in steps if 1 <= s <= total_steps)


def eval_row(loss: float, stderr: float, step: int, tokens_per_step: int,
             flops_per_token: float, *, curve: tuple[float, float] | None = None,
             schedule: dict | None = None) -> dict:
    """The metrics.jsonl fields of one evaluation (the writer adds `step`).

    `eval/curve_loss` (and its stderr) is the loss on the curve's fixed windows
    (train.eval_batches batches, the same at every step): `curve`, when the evaluation itself
    used other windows (the larger final one), else the evaluation's own loss. `schedule`:
    lr, lr_area and lr_anneal_area (research/lr_areas.py)."""
    tokens = int(step) * int(tokens_per_step)
    curve_loss, curve_err = (loss, stderr) if curve is None else curve
    return {"eval/loss": loss, "eval/loss_stderr": stderr,
            "eval/curve_loss": curve_loss, "eval/curve_loss_stderr": curve_err,
            "tokens": tokens, "flops": float(flops_per_token) * tokens, **(schedule or {})}


def final_batches(train_cfg) -> int:
    """Batches of the end-of-run evaluation: train.final_eval_batches, 0 meaning eval_batches."""
    return int(train_cfg.final_eval_batches or train_cfg.eval_batches)


def result_fields(units: dict, requested: int, batch_size: int, context_length: int,
                  train_tokens: int, capacity: dict) -> dict:
    """result.json fields: the stderr's unit and how many units the final evaluation of each set
    used (`units`: name -> batches, data.eval_sets order; the first set is `loss`), the sets
    that hold fewer than the `requested` batches (`capacity`: name -> batches of disjoint
    windows), and the train split's size in tokens."""
    (first, n_batches), *_ = units.items()
    out = {"loss_stderr_unit": f"eval batch ({batch_size} disjoint windows of {context_length} "
                               f"tokens of the {first} set; {n_batches} batches)",
           "loss_stderr_units": int(n_batches),
           "eval_windows": int(n_batches) * int(batch_size),
           "eval_tokens": int(n_batches) * int(batch_size) * int(context_length),
           "unique_tokens": int(train_tokens)}
    for name, n in units.items():
        out[f"eval_{name}_loss_stderr_units"] = int(n)
    capped = {name: f"{requested} batches requested, the set holds {capacity[name]} batches of "
                    f"{batch_size} disjoint windows: {n} used, none repeated"
              for name, n in units.items() if n < requested}
    if capped:
        out["capped_eval_sets"] = capped
    return out
