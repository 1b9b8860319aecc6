#!/usr/bin/env bash
# Set up .venv (created if missing, never deleted) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers (pytest-xdist), each taking whole files so a module's fixtures are built once.
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile --durations=25 tests "$@"
