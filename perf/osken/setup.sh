#!/usr/bin/env bash
# Creates perf/.venv (gitignored) with os-ken (the maintained Ryu) and eventlet, for the
# os-ken baseline of perf/run.sh. Idempotent: does nothing when the venv already imports os_ken.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${OSKEN_VENV:-$PWD/.venv}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import os_ken, eventlet' 2>/dev/null; then
    exit 0
fi
PY=${PYTHON:-python3}
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/pip" install --quiet --disable-pip-version-check os-ken eventlet
"$VENV/bin/python" -c 'import os_ken, eventlet; print("os-ken", os_ken.__version__ if hasattr(os_ken, "__version__") else "?", "eventlet", eventlet.__version__)'
