#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Run our kselftest wrapper through a kernel tree's own kselftest runner, as a KernelCI/LAVA
# kselftest job runs an installed collection (docs/kernelci.md).
#
#   sh kselftest/kernel-runner.sh TREE OUTDIR [run_kselftest.sh options, e.g. -o SECONDS]
#
# TREE is a kernel source tree (tools/testing/selftests/{run_kselftest.sh,kselftest/runner.sh}).
# OUTDIR (writable; made if missing) becomes what `make -C tools/testing/selftests install` lays
# out: run_kselftest.sh and kselftest/ (runner.sh, prefix.pl, ktap_helpers.sh, ...) copied from
# TREE, kselftest-list.txt naming one collection, tsm_conformance/ holding tsm_conformance.sh,
# settings and the config fragments from this directory.  The tree's own run_kselftest.sh then runs
# `-c tsm_conformance` from OUTDIR, so whatever that tree's runner does applies: BASE_DIR, the
# `settings` timeout (kselftest_timeout, exported to the test), the "# " prefixing of the test's
# output, its KTAP framing (6.12: runner.sh's run_many prints "TAP version 13" and the plan; newer
# trees: run_kselftest.sh prints the header and plan from kselftest/ktap_helpers.sh and a
# "# Totals" line).  Our wrapper's environment passes through: TSM_ROOT, TSM_EMULATE, TSM_ARGS,
# TSM_CONFORMANCE (see tsm_conformance.sh).
#
# stdout: the runner's KTAP, also written to OUTDIR/ktap.txt.  Exit status: 0 when no top-level
# test is "not ok" (our test passed or was skipped, as kselftest counts it), 1 when one is or no
# result line came, 2 when TREE has no kselftest runner or OUTDIR cannot be staged.
here=$(cd "$(dirname "$0")" && pwd) || exit 2
if [ $# -lt 2 ]; then
	echo "usage: $0 TREE OUTDIR [run_kselftest.sh options]" >&2
	exit 2
fi
tree=$1
out=$2
shift 2
sel=$tree/tools/testing/selftests
for f in run_kselftest.sh kselftest/runner.sh; do
	if [ ! -r "$sel/$f" ]; then
		echo "kernel-runner.sh: $tree has no kselftest runner ($sel/$f missing)" >&2
		exit 2
	fi
done
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
rm -rf "$out/kselftest" "$out/tsm_conformance" "$out/run_kselftest.sh" "$out/ktap.txt" || exit 2
# an installed kselftest tree: the runner's helpers as the tree has them, our collection beside them
cp -R "$sel/kselftest" "$out/kselftest" &&
	cp "$sel/run_kselftest.sh" "$out/run_kselftest.sh" &&
	mkdir "$out/tsm_conformance" &&
	cp "$here/tsm_conformance.sh" "$here/settings" "$here"/config* "$out/tsm_conformance/" &&
	chmod 755 "$out/run_kselftest.sh" "$out/tsm_conformance/tsm_conformance.sh" &&
	echo "tsm_conformance:tsm_conformance.sh" > "$out/kselftest-list.txt" || exit 2
# the runner's own prefix helper is executed, not sourced: keep it executable after the copy
if [ -f "$out/kselftest/prefix.pl" ]; then
	chmod 755 "$out/kselftest/prefix.pl" || exit 2
fi
# run_kselftest.sh finds BASE_DIR from its own path and sources kselftest/runner.sh from there;
# run with sh as its "#!/bin/sh" line says, so a filesystem mounted noexec does not matter for it
(cd "$out" && sh ./run_kselftest.sh -c tsm_conformance "$@") | tee "$out/ktap.txt"
if grep -q '^not ok ' "$out/ktap.txt" || ! grep -q '^ok ' "$out/ktap.txt"; then
	exit 1  # a failure, a timeout, or run_kselftest.sh refusing (it then prints no result line)
fi
exit 0
