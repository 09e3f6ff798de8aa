#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# kselftest wrapper for the configfs-tsm conformance suite: KTAP v1 on stdout, exit codes as
# kselftest.h (0 pass, 1 fail, 4 KSFT_SKIP when there is no configfs-tsm, no provider, or nothing
# applicable ran).  Environment: TSM_ROOT (default /sys/kernel/config/tsm/report), TSM_EMULATE
# (an emulator spec instead of the live tree, for testing), TSM_ARGS (extra `run` arguments),
# TSM_CONFORMANCE (the command, default tsm-conformance).
KSFT_SKIP=4
TSM=${TSM_CONFORMANCE:-tsm-conformance}
if [ -n "$TSM_EMULATE" ]; then
	TARGET="--emulate $TSM_EMULATE"
else
	TARGET="--root ${TSM_ROOT:-/sys/kernel/config/tsm/report}"
fi
skip() {
	printf 'KTAP version 1\n1..0 # SKIP %s\n' "$1"
	exit $KSFT_SKIP
}
command -v "${TSM%% *}" >/dev/null 2>&1 || skip "tsm-conformance is not installed"
# detect says in one line why no profile applies (no tree, no configfs, no provider ...)
why=$($TSM detect $TARGET 2>&1 >/dev/null) || skip "$(echo "$why" | head -n1 | tr '#' ' ')"
# shellcheck disable=SC2086  # TARGET and TSM_ARGS are word lists
$TSM run $TARGET --format ktap -q $TSM_ARGS
