#!/bin/sh
# Create ./.venv with the project installed (editable) plus its test dependencies. Idempotent.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,fuzz]'
