#!/usr/bin/env bash
# The main job: set up .venv, run the default sweep (18 runs of 7 sizes on the embedded
# Shakespeare corpus, each a loss curve), fit the schedule law to every curve point with bootstrap
# intervals, print it, write the report.
# Re-running resumes: finished runs are skipped, interrupted ones continue from checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec .venv/bin/python -m experiments.sweep run --config configs/sweeps/default.py \
  --workdir "${SWEEP_DIR:-sweeps/default}" "$@"
