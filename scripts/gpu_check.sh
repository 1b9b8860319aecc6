#!/usr/bin/env bash
# First check of a machine with one (or more) NVIDIA GPUs, in at most 10 minutes: devices,
# the precision/attention tests and a CPU-equivalence check on the device, 124M- and 350M-class
# benchmarks (bf16, cuDNN attention, remat off and on), and the tiny variant trained to its CPU
# loss. Writes one JSON report (docs/benchmarks.md describes it):
#   bash scripts/gpu_check.sh [OUT_DIR [--skip tests,bench,...]]   (default out/gpu_check)
# Where JAX sees no GPU (or with JAX_PLATFORMS=cpu) it is a dry run at toy sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/gpu_check}
shift || true
bash scripts/setup.sh
if command -v nvidia-smi >/dev/null && [ "${JAX_PLATFORMS:-}" != cpu ]; then
  .venv/bin/python -m pip install -q -r requirements-cuda12.txt
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec timeout "${GPU_CHECK_TIMEOUT:-600}" .venv/bin/python -m experiments.gpu_check --out "$OUT" "$@"
