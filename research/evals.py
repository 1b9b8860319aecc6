"""When a run evaluates, what an eval row holds, and the unit of its standard error.

Evaluations at log-spaced steps make each run a loss curve that Approach 1 can use
(`python -m analysis curves`); each eval row carries step, tokens and FLOPs so the
curve needs no other file. The standard error is over eval batches: each batch is
a fixed set of disjoint validation windows, and batches do not overlap, so batch
means are independent units.
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
             flops_per_token: float) -> dict:
    """The metrics.jsonl fields of one evaluation (the writer adds `step`)."""
    tokens = int(step) * int(tokens_per_step)
    return {"eval/loss": loss, "eval/loss_stderr": stderr, "tokens": tokens,
            "flops": float(flops_per_token) * tokens}


def result_fields(n_batches: int, batch_size: int, context_length: int, train_tokens: int) -> dict:
    """result.json fields: the stderr's unit and the train split's size in tokens."""
    return {"loss_stderr_unit": f"eval batch ({batch_size} disjoint validation windows of "
                                f"{context_length} tokens; {n_batches} batches)",
            "eval_tokens": int(n_batches) * int(batch_size) * int(context_length),
            "unique_tokens": int(train_tokens)}
