"""Throughput benchmark: python -m experiments.bench --config configs/gpt.py:VARIANT.

Prints one JSON object: tokens/s, step time, compile time, model FLOP/s and MFU against a
matmul peak measured in the same process.
"""

from experiments import cli  # noqa: F401

import json

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/gpt.py:tiny", "Run config.",
                                          lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps after compilation and one warm-up.")
_COMPARE = flags.DEFINE_bool("compare-torch", False, "Time configs a, b, c against the PyTorch "
                             "eager peer, interleaved, and print the ratios (experiments/compare_torch.py).")
_TORCH_PY = flags.DEFINE_string("torch-python", None, "Python with torch installed (default "
                                "$TORCH_PYTHON); --compare-torch only.")
_TORCH_SCRIPT = flags.DEFINE_string("torch-script", None, "The peer (default shared/bench/torch_gpt.py "
                                    "beside the repository); --compare-torch only.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds per config; --compare-torch only.")


def main(argv):
    del argv
    if _COMPARE.value:
        from experiments import compare_torch
        compare_torch.compare(rounds=_ROUNDS.value, steps=_STEPS.value, torch_py=_TORCH_PY.value,
                              script=_TORCH_SCRIPT.value)
        return
    from research import bench
    print(json.dumps(bench.measure(_CONFIG.value, steps=_STEPS.value)))


if __name__ == "__main__":
    cli.run_main(main)
