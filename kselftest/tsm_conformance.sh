#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# kselftest wrapper for the configfs-tsm conformance suite: KTAP v1 on stdout, exit codes as
# kselftest.h: 0 pass, 1 fail, 4 KSFT_SKIP when this machine has no configfs-tsm to test (no
# configfs, no tsm core, no report group, no provider) or nothing applicable ran.  A mistake in
# what was asked (a bad TSM_ROOT, TSM_EMULATE or TSM_ARGS) is a failure, not a skip: KTAP
# "Bail out!" and exit 2.  Environment: TSM_ROOT (default /sys/kernel/config/tsm/report),
# TSM_EMULATE (an emulator spec instead of the live tree, for testing), TSM_ARGS (extra `run`
# arguments, e.g. --profile NAME), TSM_CONFORMANCE (the command, default tsm-conformance).
#
# Under kselftest's runner (tools/testing/selftests/kselftest/runner.sh, which exports
# kselftest_timeout from `settings` or run_kselftest.sh -o), the run gets a time budget of 7/8 of
# that timeout, so it ends by itself (checks past the budget are skipped "not-run") before the
# runner kills it; a --budget in TSM_ARGS replaces it.  The runner merges stderr into stdout: then
# pytest's report (progress dots written mid-line) is kept apart and follows the KTAP as "# "
# diagnostic lines, so it cannot split KTAP lines (docs/kernelci.md).
KSFT_SKIP=4
TSM=${TSM_CONFORMANCE:-tsm-conformance}
if ! command -v "${TSM%% *}" >/dev/null 2>&1; then
	printf 'KTAP version 1\n1..0 # SKIP tsm-conformance is not installed\n'
	printf '# no %s in PATH; set TSM_CONFORMANCE to the command\n' "${TSM%% *}"
	exit $KSFT_SKIP
fi
# the target as one argument each (a TSM_ROOT with spaces stays one path)
if [ -n "$TSM_EMULATE" ]; then
	set -- --emulate "$TSM_EMULATE"
else
	set -- --root "${TSM_ROOT:-/sys/kernel/config/tsm/report}"
fi
case "$kselftest_timeout" in
'' | *[!0-9]*) ;;
*)
	case " $TSM_ARGS " in
	*" --budget"*) ;;
	*) [ "$kselftest_timeout" -ge 8 ] && set -- "$@" --budget "time=$((kselftest_timeout - kselftest_timeout / 8))" ;;
	esac ;;
esac
# run itself tells an absent ABI (exit 4, "1..0 # SKIP why") from a bad setup (exit 2, "Bail out!")
# TSM and TSM_ARGS are word lists; no globbing, so --tsm-check 'model.*' stays a pattern
set -f
if ! [ /proc/self/fd/1 -ef /proc/self/fd/2 ]; then
	# shellcheck disable=SC2086
	exec $TSM run "$@" --format ktap -q --absent-exit $KSFT_SKIP $TSM_ARGS
fi
# stdout and stderr are one file: pytest's report waits in a file.  The run is not exec'd, so
# SIGTERM/SIGINT/SIGHUP to this shell (a runner's timeout) are passed on to it: it unwinds and
# removes its items, and its own exit status is ours.
err=$(mktemp "${TMPDIR:-/tmp}/tsm-kselftest.XXXXXX") || exit 1
# shellcheck disable=SC2086
$TSM run "$@" --format ktap -q --absent-exit $KSFT_SKIP $TSM_ARGS 2>"$err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null' TERM INT HUP
while :; do
	wait $pid
	rc=$?
	kill -0 $pid 2>/dev/null || break  # still there: the wait was cut short by a trapped signal
done
trap - TERM INT HUP
sed -e 's/^/# /' "$err"
rm -f "$err"
exit $rc
