#!/bin/sh
# The sanitizer path end to end: tsm_test with plant_bug=1 (a one-byte heap overflow for some
# inblob values) on a KASAN kernel built from Debian's 6.12 source.  The fuzz run must fail with a
# kernel.kasan finding naming the planted function, and `replay --vm` of that finding's .tsmseq
# must reproduce the same report in a fresh guest.  Exit 0 only when both hold.
set -eu
cd "$(dirname "$0")/.."
T=.venv/bin/tsm-conformance
K="--kernel-source-deb linux-source-6.12 --debug kasan"
P="privlevel_floor=0 plant_bug=1"
OUT=out/vm-planted-bug
rm -rf "$OUT"
# shellcheck disable=SC2086
if $T vm $K --provider-module kmod/tsm_test --params "$P" --fuzz inblob --max-time 120 \
        --fuzz-out "$OUT" --junit "$OUT/junit.xml" > "$OUT.log" 2>&1; then
    cat "$OUT.log"; echo "planted bug: the fuzz run passed; the KASAN report was not found"; exit 1
fi
finding=$(find "$OUT" -name '*.tsmseq' -exec grep -l 'kernel.kasan' {} + | head -n 1)
if [ -z "$finding" ]; then
    cat "$OUT.log"; echo "planted bug: the run failed but brought home no kernel.kasan finding"; exit 1
fi
grep -h 'KASAN' "$finding" | head -n 2
# shellcheck disable=SC2086
$T replay "$finding" --vm $K --provider-module kmod/tsm_test --params "$P" --junit "$OUT/replay.xml" \
    > "$OUT-replay.log" 2>&1 || { cat "$OUT-replay.log"; echo "planted bug: replay --vm did not reproduce"; exit 1; }
grep '^reproduced: ' "$OUT-replay.log"
echo "planted bug: found by the inblob fuzzer and reproduced by replay --vm"
