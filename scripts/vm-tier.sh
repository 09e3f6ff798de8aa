#!/bin/sh
# The real-kernel tier: the suite on Debian 6.12 (bookworm) and the newest 7.x kernel with
# published headers (trixie-backports), plus the kernel-vs-emulator differential on 6.12; then
# Debian's 6.12 source built with KASAN and with lockdep, the fuzzers inside, and the planted bug.
# Needs root (debootstrap, chroot, mounts); downloads and builds are cached in
# ${TSM_CONFORMANCE_CACHE:-/var/cache/tsm-conformance}. JUnit goes to out/vm-*.xml.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends qemu-system-x86 busybox-static debootstrap pahole make gcc-12 \
    gcc flex bison bc libelf-dev libssl-dev >/dev/null
mkdir -p out
T=.venv/bin/tsm-conformance
# Floor 0, and floor 2 refusing reports below it as SNP firmware does (a guest under an SVSM).
# It writes a result bundle (docs/results.md), which must verify.
rm -rf out/vm-6.12-bundle
$T vm --kernel-deb linux-image-6.12-amd64 --params privlevel_floor=0 \
    --params 'privlevel_floor=2 refuse_below_floor=1' --junit out/vm-6.12.xml --bundle out/vm-6.12-bundle
$T bundle verify out/vm-6.12-bundle
$T vm --kernel-deb linux-image-6.12-amd64 --differential --sequences 200 --junit out/vm-6.12-differential.xml
$T vm --kernel-deb 'linux-image-7.*-amd64' --suite trixie-backports --params privlevel_floor=0 \
    --params 'privlevel_floor=2 refuse_below_floor=1' --junit out/vm-7.x.xml
# 7.x has measurement registers (tsm_test's group, docs/abi-measurements.md): the mr checks run in
# the suite above, and the differential mixes register steps into its sequences.
$T vm --kernel-deb 'linux-image-7.*-amd64' --suite trixie-backports --differential --sequences 200 \
    --junit out/vm-7.x-differential.xml
# A kernel built from source (Debian's 6.12 source, as a linux-next user has a tree) with KASAN:
# the fuzzers in the guest on tsm_test, whose reports change size per generation; the
# size-then-fill race is reported as known, and any sanitizer report fails the run.
$T vm --kernel-source-deb linux-source-6.12 --debug kasan --fuzz sequences,inblob,privlevel --max-time 60 \
    --fuzz-out out/vm-fuzz-kasan --junit out/vm-6.12-kasan-fuzz.xml
# The suite on the same KASAN kernel, and our kselftest wrapper through the tree's own kselftest
# runner with its KTAP checked by the tree's parser (what a KernelCI job would run).
$T vm --kernel-source-deb linux-source-6.12 --debug kasan --params privlevel_floor=0 --kselftest \
    --junit out/vm-6.12-kasan.xml
# lockdep (PROVE_LOCKING, DEBUG_ATOMIC_SLEEP): a second build, shorter fuzzing.
$T vm --kernel-source-deb linux-source-6.12 --debug lockdep --fuzz sequences,inblob,privlevel --max-time 30 \
    --fuzz-out out/vm-fuzz-lockdep --junit out/vm-6.12-lockdep-fuzz.xml
# The same kernel with tsm_test's planted off-by-one: the run must fail naming the KASAN report,
# and replay --vm of the finding must reproduce it in a fresh guest.
sh scripts/vm-planted-bug.sh
# One plain closing line over every VM JUnit file.
.venv/bin/python - <<'PY'
import glob
import xml.etree.ElementTree as ET
n = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for f in glob.glob("out/vm-*.xml"):
    for s in ET.parse(f).getroot().iter("testsuite"):
        for k in n:
            n[k] += int(s.get(k, "0"))
passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
print(f"vm: {passed} passed, {n['failures'] + n['errors']} failed, {n['skipped']} skipped")
PY
