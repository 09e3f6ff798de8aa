#!/bin/sh
# Set up, then run the project's own tests (unit, plugin, CLI, quirk matrix). Arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
