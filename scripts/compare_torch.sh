#!/usr/bin/env bash
# Our train step vs the PyTorch eager peer at configs a, b, c (interleaved, medians, ratios).
# torch lives in its own venv (TORCH_PYTHON, default /work/torchvenv/bin/python), never in
# requirements.txt. Ours runs as training does: tcmalloc preloaded when installed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export TORCH_PYTHON=${TORCH_PYTHON:-/work/torchvenv/bin/python}
exec "${PYTHON:-.venv/bin/python}" -m experiments.bench --compare-torch --steps "${STEPS:-5}" "$@"
