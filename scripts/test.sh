#!/bin/sh
# Set up, then run the project's own tests (unit, plugin, CLI, quirk matrix) on every core
# (pytest-xdist). Arguments go to pytest: `-m fast` is the development loop (docs/development.md),
# `-n 0` runs in one process.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
exec .venv/bin/python -m pytest -n auto "$@"
