#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
# torch is pinned to 2.13.0, the CPU build; an unpinned torch would pull a multi-GB CUDA wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.llmesr-bootstrap
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import llmesr, torch" 2>/dev/null; then
  exit 0
fi
echo "bootstrap: setting up .venv (first run takes a minute)" >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
echo "$want" > "$stamp"
