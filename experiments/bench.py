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


def main(argv):
    del argv
    from research import bench
    print(json.dumps(bench.measure(_CONFIG.value, steps=_STEPS.value)))


if __name__ == "__main__":
    cli.run_main(main)
