"""Where a run's wall time goes: fixed costs (data, compile, evals, checkpoint) vs steady training.

`PhaseTimer` adds up wall-clock seconds per named phase; `train` is whatever the training loop
spent outside the other phases. result.json records the totals under "timing".
"""

from __future__ import annotations

import contextlib
import time

# eval_s: the curve's evaluations along the run; final_eval_s: the end-of-run one (result.json).
PHASES = ("setup_s", "data_s", "compile_s", "eval_s", "final_eval_s", "checkpoint_s", "train_s")


class PhaseTimer:
    def __init__(self):
        self.t0 = time.perf_counter()
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextlib.contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def summary(self) -> dict:
        """Seconds per phase; `setup_s` takes what no phase claimed, so they sum to total_s."""
        total = time.perf_counter() - self.t0
        out = dict(self.seconds)
        out["setup_s"] += max(0.0, total - sum(self.seconds.values()))
        out["total_s"] = total
        return {k: round(v, 3) for k, v in out.items()}
