#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# kselftest wrapper for the configfs-tsm conformance suite: KTAP v1 on stdout, exit codes as
# kselftest.h: 0 pass, 1 fail, 4 KSFT_SKIP when this machine has no configfs-tsm to test (no
# configfs, no tsm core, no report group, no provider) or nothing applicable ran.  A mistake in
# what was asked (a bad TSM_ROOT, TSM_EMULATE or TSM_ARGS) is a failure, not a skip: KTAP
# "Bail out!" and exit 2.  Environment: TSM_ROOT (default /sys/kernel/config/tsm/report),
# TSM_EMULATE (an emulator spec instead of the live tree, for testing), TSM_ARGS (extra `run`
# arguments, e.g. --profile NAME), TSM_CONFORMANCE (the command, default tsm-conformance).
KSFT_SKIP=4
TSM=${TSM_CONFORMANCE:-tsm-conformance}
if ! command -v "${TSM%% *}" >/dev/null 2>&1; then
	printf 'KTAP version 1\n1..0 # SKIP tsm-conformance is not installed\n'
	exit $KSFT_SKIP
fi
# the target as one argument each (a TSM_ROOT with spaces stays one path)
if [ -n "$TSM_EMULATE" ]; then
	set -- --emulate "$TSM_EMULATE"
else
	set -- --root "${TSM_ROOT:-/sys/kernel/config/tsm/report}"
fi
# run itself tells an absent ABI (exit 4, "1..0 # SKIP why") from a bad setup (exit 2, "Bail out!")
# TSM and TSM_ARGS are word lists; no globbing, so --tsm-check 'model.*' stays a pattern
set -f
# shellcheck disable=SC2086
exec $TSM run "$@" --format ktap -q --absent-exit $KSFT_SKIP $TSM_ARGS
