#!/bin/sh
# Set up, then run the conformance suite: against this machine's live configfs-tsm tree if it has
# one, else against the built-in emulator (provider $TSM_EMULATE, default sev_guest).
# JUnit goes to out/junit.xml.  Extra arguments go to `tsm-conformance run`.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
mkdir -p out
ROOT=/sys/kernel/config/tsm/report
if [ -d "$ROOT" ]; then
    set -- --root "$ROOT" "$@"
else
    echo "no live tree at $ROOT: running against the emulator (${TSM_EMULATE:-sev_guest})"
    set -- --emulate "${TSM_EMULATE:-sev_guest}" "$@"
fi
exec .venv/bin/tsm-conformance run --junit out/junit.xml "$@"
