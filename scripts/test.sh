#!/usr/bin/env bash
# Run the test suite (and the linter) in the project's own environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check src tests benchmarks scripts
.venv/bin/python -m pytest "$@"
