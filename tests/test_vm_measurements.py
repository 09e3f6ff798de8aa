"""kmod/tsm_test's measurement-register group (tsm-mr, docs/abi-measurements.md) on a real Debian
7.x kernel under QEMU: one boot, three module loads (the default, ``measurements=0``, and an
unload/reload with a register file held open), each running the guest script below through
``run_vm``'s commands.  The guest records what it saw as JSON in the results share; the tests here
judge it (the files and modes, initial values, the write contract's errnos, the extend hashes, the
refresh counter, the registers in the report's auxblob and the report cache) and the guest's dmesg.

Needs root, ``qemu-system-x86_64``, ``busybox`` and the 7.x kernel packages (downloaded once into
the cache, /var/cache/tsm-conformance or $TSM_CONFORMANCE_CACHE); skipped with the reason otherwise.
A boot under TCG takes one to two minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys

import pytest

pytestmark = pytest.mark.slow

KERNEL = "linux-image-7.*-amd64"
SUITE = "trixie-backports"
D = "/sys/devices/virtual/misc/tsm_test/measurements"
NAMES = ["mrconfig", "mrstatic:sha384", "rtmr0:sha384", "rtmr1:sha256"]
MODES = {"mrconfig": 0o444, "mrstatic:sha384": 0o444, "rtmr0:sha384": 0o644, "rtmr1:sha256": 0o644}
SIZES = {"mrconfig": 48, "mrstatic:sha384": 48, "rtmr0:sha384": 48, "rtmr1:sha256": 32}
MRCONFIG = b"tsm_test mrconfig".ljust(48, b"\0")
MRSTATIC = b"tsm_test mrstatic".ljust(48, b"\0")

# The guest side: plain stdlib Python run by the host's interpreter over the 9p root.  argv: mode
# (group | nogroup | reload), the JSON to write, the busybox and the module to reload.
GUEST = r'''
import errno, hashlib, json, os, subprocess, sys, time

MODE, OUT, BB, KO = sys.argv[1:5]
D = "/sys/devices/virtual/misc/tsm_test/measurements"
P = "/sys/module/tsm_test/parameters"
ROOT = "/sys/kernel/config/tsm/report"
res = {"mode": MODE, "errors": []}


def save():
    with open(OUT, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)


def outcome(fn):
    """("ok", value) or ("err", "EINVAL")"""
    try:
        v = fn()
        return ["ok", v.hex() if isinstance(v, bytes) else v]
    except OSError as e:
        return ["err", errno.errorcode.get(e.errno, str(e.errno))]


def rd(name):
    fd = os.open(f"{D}/{name}", os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def param(name):
    with open(f"{P}/{name}") as f:
        return f.read().strip()


def refreshes():
    return int(param("mr_refreshes"))


def write_new(name, data):
    """one write() on a fresh O_WRONLY fd"""
    fd = os.open(f"{D}/{name}", os.O_WRONLY)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def attr(item, name, data=None):
    path = f"{ROOT}/{item}/{name}"
    if data is None:
        with open(path, "rb", buffering=0) as f:
            return f.read()
    with open(path, "wb", buffering=0) as f:
        f.write(data)


def report(item, inblob=None):
    if inblob is not None:
        attr(item, "inblob", inblob)
    return {"generation": int(attr(item, "generation")), "outblob": attr(item, "outblob").hex(),
            "auxblob": attr(item, "auxblob").hex()}


def new_item(item):
    os.mkdir(f"{ROOT}/{item}")
    floor = int(attr(item, "privlevel_floor"))
    attr(item, "privlevel", str(floor).encode())


def section(name):
    def wrap(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001: every section reports, whatever the others did
            res["errors"].append(f"{name}: {type(e).__name__}: {e}")
        save()
        return fn
    return wrap


def dmesg_mark():
    return subprocess.run([BB, "dmesg"], capture_output=True, text=True).stdout


if MODE == "group":
    @section("files")
    def _():
        res["params"] = {n: param(n) for n in ("measurements", "mr_refreshes")}
        res["param_modes"] = {n: oct(os.stat(f"{P}/{n}").st_mode & 0o777) for n in ("measurements", "mr_refreshes")}
        res["files"] = {n: [oct(os.stat(f"{D}/{n}").st_mode & 0o7777), os.stat(f"{D}/{n}").st_size,
                            os.stat(f"{D}/{n}").st_uid] for n in sorted(os.listdir(D))}
        res["class_link"] = os.path.isdir("/sys/class/misc/tsm_test/measurements")
        res["devnode"] = os.path.exists("/dev/tsm_test")

    @section("initial")
    def _():
        r = res["initial"] = {"refreshes_before": refreshes()}
        for n in ("mrconfig", "mrstatic:sha384"):
            r[n] = rd(n).hex()
        r["refreshes_after_static"] = refreshes()
        r["rtmr0:sha384"] = rd("rtmr0:sha384").hex()
        r["refreshes_after_first_live"] = refreshes()
        r["rtmr1:sha256"] = rd("rtmr1:sha256").hex()
        rd("rtmr0:sha384")
        r["refreshes_after_more_live"] = refreshes()

    @section("report-before")
    def _():
        new_item("a")
        res["report_a0"] = report("a", bytes(range(64)))
        res["report_a0_again"] = report("a")

    @section("writes")
    def _():
        w = res["writes"] = []
        R0 = "rtmr0:sha384"

        def step(what, fn, name=R0):
            before, n0 = rd(name), refreshes()
            got = outcome(fn)
            n1 = refreshes()
            after = rd(name)
            w.append({"what": what, "reg": name, "result": got, "before": before.hex(), "after": after.hex(),
                      "refresh_delta_write": n1 - n0, "refresh_delta_read": refreshes() - n1})

        step("47 bytes", lambda: write_new(R0, b"\x11" * 47))
        step("48 bytes", lambda: write_new(R0, bytes(range(48))))
        # repeated reads with no write in between: no refresh
        n = refreshes()
        for _ in range(5):
            rd(R0)
            rd("rtmr1:sha256")
        res["refresh_delta_5_quiet_reads"] = refreshes() - n

        def long_then_again():
            fd = os.open(f"{D}/{R0}", os.O_WRONLY)
            try:
                first = os.write(fd, bytes(range(100, 149)))  # 49 bytes
                second = outcome(lambda: os.write(fd, b"\x31"))
                return {"first": first, "second": second, "pos": os.lseek(fd, 0, os.SEEK_CUR)}
            finally:
                os.close(fd)
        step("49 bytes then again on the fd", long_then_again)

        def pwrite(data, off):
            def f():
                fd = os.open(f"{D}/{R0}", os.O_WRONLY)
                try:
                    return os.pwrite(fd, data, off)
                finally:
                    os.close(fd)
            return f
        step("pwrite 48 at 1", pwrite(b"\x22" * 48, 1))
        step("pwrite 48 at 48", pwrite(b"\x22" * 48, 48))
        step("pwrite 0 at 48", pwrite(b"", 48))
        step("pwrite 48 at 0", pwrite(b"\x33" * 48, 0))
        step("0 bytes", lambda: write_new(R0, b""))
        step("4096 bytes", lambda: write_new(R0, b"\x44" * 4096))
        step("mrstatic O_WRONLY", lambda: os.open(f"{D}/mrstatic:sha384", os.O_WRONLY), "mrstatic:sha384")
        step("mrconfig O_WRONLY", lambda: os.open(f"{D}/mrconfig", os.O_WRONLY), "mrconfig")
        step("rtmr1 32 bytes", lambda: write_new("rtmr1:sha256", bytes(range(200, 232))), "rtmr1:sha256")
        step("rtmr1 31 bytes", lambda: write_new("rtmr1:sha256", b"\x55" * 31), "rtmr1:sha256")
        step("rtmr1 48 bytes", lambda: write_new("rtmr1:sha256", bytes(range(48))), "rtmr1:sha256")

    @section("group-wide refresh")
    def _():
        g = res["groupwide"] = {}
        r0 = rd("rtmr0:sha384")
        n0 = refreshes()
        g["write"] = write_new("rtmr1:sha256", b"\x66" * 32)
        g["refreshes_after_write"] = refreshes() - n0
        g["rtmr0_unchanged"] = rd("rtmr0:sha384") == r0  # a live read: the refresh
        g["refreshes_after_rtmr0_read"] = refreshes() - n0
        g["rtmr1"] = rd("rtmr1:sha256").hex()  # already in sync: no second refresh
        g["refreshes_after_rtmr1_read"] = refreshes() - n0

    @section("report-after")
    def _():
        res["report_a1_cached"] = report("a")
        # an extend not yet read through sysfs: the report carries the hw value
        n0 = refreshes()
        res["unread_extend"] = write_new("rtmr0:sha384", b"\x77" * 48)
        res["report_a2"] = report("a", bytes(range(64)))
        res["refreshes_during_report"] = refreshes() - n0
        res["regs_after_a2"] = {n: rd(n).hex() for n in ("mrconfig", "mrstatic:sha384", "rtmr0:sha384",
                                                         "rtmr1:sha256")}
        res["refreshes_after_reads"] = refreshes() - n0
        # a second item sees the same registers
        new_item("b")
        res["report_b"] = report("b", b"\x01" * 64)
        res["regs_after_b"] = {n: rd(n).hex() for n in ("mrconfig", "mrstatic:sha384", "rtmr0:sha384",
                                                        "rtmr1:sha256")}
        os.rmdir(f"{ROOT}/a")
        os.rmdir(f"{ROOT}/b")

    @section("concurrent")
    def _():
        # a child extends rtmr0 N times while this process takes reports: every report's rtmr0 must
        # be one of the chain's values (the module's lock: never half an extend)
        N = 150
        start = bytes.fromhex(rd("rtmr0:sha384").hex())
        chain = [start]
        for i in range(N):
            chain.append(hashlib.sha384(chain[-1] + i.to_bytes(48, "little")).digest())
        new_item("d")
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.read(go_r, 1)  # after the first report
                for i in range(N):
                    write_new("rtmr0:sha384", i.to_bytes(48, "little"))
            except BaseException:
                code = 1
            os._exit(code)
        seen, reports = [], 0
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            aux = bytes.fromhex(report("d", reports.to_bytes(64, "little"))["auxblob"])
            seen.append(aux[104:152])
            reports += 1
            if reports == 1:
                os.write(go_w, b"g")
            if done:  # this last report came after the child's last extend
                break
        os.rmdir(f"{ROOT}/d")
        index = {v: i for i, v in enumerate(chain)}
        steps = [index.get(v, -1) for v in seen]
        res["concurrent"] = {"child_status": status, "reports": reports, "steps": steps,
                             "off_chain": [v.hex() for v in seen if v not in index],
                             "final_is_last": rd("rtmr0:sha384") == chain[-1]}

elif MODE == "nogroup":
    @section("nogroup")
    def _():
        res["params"] = {n: param(n) for n in ("measurements", "mr_refreshes")}
        res["misc_dir"] = os.path.exists("/sys/devices/virtual/misc/tsm_test")
        res["devnode"] = os.path.exists("/dev/tsm_test")
        new_item("c")
        res["report"] = report("c", bytes(64))
        os.rmdir(f"{ROOT}/c")

elif MODE == "reload":
    @section("reload")
    def _():
        r = res["reload"] = {}
        r["extend"] = write_new("rtmr0:sha384", b"\x88" * 48)
        r["value_before"] = rd("rtmr0:sha384").hex()
        fd = os.open(f"{D}/rtmr0:sha384", os.O_RDONLY)
        p = subprocess.run([BB, "rmmod", "tsm_test"], capture_output=True, text=True)
        r["rmmod"] = [p.returncode, p.stderr.strip()]
        r["gone"] = {"misc": not os.path.exists("/sys/devices/virtual/misc/tsm_test"),
                     "module": not os.path.exists("/sys/module/tsm_test"),
                     "devnode": not os.path.exists("/dev/tsm_test")}
        r["read_stale_fd"] = outcome(lambda: os.pread(fd, 48, 0))
        os.close(fd)
        p = subprocess.run([BB, "insmod", KO], capture_output=True, text=True)
        r["insmod"] = [p.returncode, p.stderr.strip()]
        r["refreshes_fresh"] = refreshes()
        r["files"] = sorted(os.listdir(D))
        r["rtmr0_fresh"] = rd("rtmr0:sha384").hex()
        r["rtmr1_fresh"] = rd("rtmr1:sha256").hex()
        r["refreshes_after_read"] = refreshes()

res["dmesg_tsm"] = [ln for ln in dmesg_mark().splitlines() if "tsm" in ln.lower()][-40:]
save()
'''


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (QEMU's 9p shares, the build chroot)"
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("busybox", "busybox-static")):
        if not shutil.which(tool):
            return f"{tool} not found (apt-get install {pkg})"
    return None


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> dict:
    why = _why_not()
    if why:
        pytest.skip(why)
    from tsm_conformance.vm.apt import suite_options
    from tsm_conformance.vm.build import build_module
    from tsm_conformance.vm.chroot import ensure_chroot, host_has, kernel_gcc
    from tsm_conformance.vm.kernel import VmError, from_deb
    from tsm_conformance.vm.options import cache_dir
    from tsm_conformance.vm.runner import run_vm

    cache = cache_dir(argparse.Namespace(cache=None))
    log: list[str] = []
    try:
        tree = from_deb(KERNEL, cache, log.append, suite_options(cache, SUITE, log.append))
        gcc = kernel_gcc(tree)
        if gcc is not None and not host_has(gcc):
            ensure_chroot(cache, gcc, log.append)
    except VmError as e:
        pytest.skip(f"the Debian 7.x kernel or its toolchain cannot be had here: {e}")
    ko = build_module(tree, cache, log.append)  # a build failure is a failure, not a skip
    res = tmp_path_factory.mktemp("vm-measurements")
    (res / "mr_guest.py").write_text(GUEST)
    py = shlex.quote(sys.executable)

    def cmd(mode: str) -> str:
        return f"{py} $R/mr_guest.py {mode} $R/mr-{mode}.json /mnt/busybox /mnt/{ko.ko.name}"
    rc = run_vm(tree, cache, res / "junit.xml", params=[], keep=res, progress=log.append, timeout=900,
                commands=[("", cmd("group")), ("measurements=0", cmd("nogroup")), ("", cmd("reload"))])
    (res / "progress.log").write_text("\n".join(log) + "\n")
    out = {"rc": rc, "release": tree.release, "results": res, "log": log}
    for mode in ("group", "nogroup", "reload"):
        f = res / f"mr-{mode}.json"
        out[mode] = json.loads(f.read_text()) if f.exists() else None
    return out


def _mode(guest: dict, mode: str) -> dict:
    r = guest[mode]
    assert r is not None, f"the guest wrote no mr-{mode}.json; logs in {guest['results']}:\n" + \
        "\n".join(guest["log"][-30:])
    assert r["errors"] == [], r["errors"]
    return r


def _aux_regs(aux: bytes) -> list[bytes]:
    return [aux[8:56], aux[56:104], aux[104:152], aux[152:184]]


def test_files_and_modes(guest: dict) -> None:
    r = _mode(guest, "group")
    assert sorted(r["files"]) == sorted(NAMES)
    for n in NAMES:
        assert r["files"][n] == [oct(MODES[n]), SIZES[n], 0], n
    assert r["class_link"] and r["devnode"]
    assert r["params"] == {"measurements": "Y", "mr_refreshes": "0"}
    assert r["param_modes"] == {"measurements": "0o444", "mr_refreshes": "0o444"}


def test_initial_values_and_first_refresh(guest: dict) -> None:
    i = _mode(guest, "group")["initial"]
    assert bytes.fromhex(i["mrconfig"]) == MRCONFIG
    assert bytes.fromhex(i["mrstatic:sha384"]) == MRSTATIC
    assert bytes.fromhex(i["rtmr0:sha384"]) == bytes(48)
    assert bytes.fromhex(i["rtmr1:sha256"]) == bytes(32)
    # non-live reads never refresh; the first live read does (in_sync starts false), once
    assert (i["refreshes_before"], i["refreshes_after_static"], i["refreshes_after_first_live"],
            i["refreshes_after_more_live"]) == (0, 0, 1, 1)


def _writes(guest: dict) -> dict[str, dict]:
    return {w["what"]: w for w in _mode(guest, "group")["writes"]}


def _extended(w: dict, data: bytes, h=hashlib.sha384) -> bool:  # noqa: ANN001
    return bytes.fromhex(w["after"]) == h(bytes.fromhex(w["before"]) + data).digest()


def test_write_contract_errnos(guest: dict) -> None:
    w = _writes(guest)
    unchanged = {"47 bytes": ["err", "EINVAL"], "pwrite 48 at 1": ["err", "EINVAL"],
                 "pwrite 48 at 48": ["err", "EFBIG"], "pwrite 0 at 48": ["err", "EFBIG"], "0 bytes": ["ok", 0],
                 "mrstatic O_WRONLY": ["err", "EACCES"], "mrconfig O_WRONLY": ["err", "EACCES"],
                 "rtmr1 31 bytes": ["err", "EINVAL"]}
    for what, want in unchanged.items():
        assert w[what]["result"] == want, what
        assert w[what]["after"] == w[what]["before"], what
        assert (w[what]["refresh_delta_write"], w[what]["refresh_delta_read"]) == (0, 0), what


def test_extend_sha384(guest: dict) -> None:
    w = _writes(guest)
    assert w["48 bytes"]["result"] == ["ok", 48] and _extended(w["48 bytes"], bytes(range(48)))
    long = w["49 bytes then again on the fd"]
    assert long["result"] == ["ok", {"first": 48, "second": ["err", "EFBIG"], "pos": 48}]
    assert _extended(long, bytes(range(100, 148)))  # the first 48 of the 49
    assert w["pwrite 48 at 0"]["result"] == ["ok", 48] and _extended(w["pwrite 48 at 0"], b"\x33" * 48)
    assert w["4096 bytes"]["result"] == ["ok", 48] and _extended(w["4096 bytes"], b"\x44" * 48)
    for what in ("48 bytes", "49 bytes then again on the fd", "pwrite 48 at 0", "4096 bytes"):
        # the write itself does not refresh; the next live read does, exactly once
        assert (w[what]["refresh_delta_write"], w[what]["refresh_delta_read"]) == (0, 1), what


def test_extend_sha256(guest: dict) -> None:
    w = _writes(guest)
    assert w["rtmr1 32 bytes"]["result"] == ["ok", 32]
    assert _extended(w["rtmr1 32 bytes"], bytes(range(200, 232)), hashlib.sha256)
    assert w["rtmr1 48 bytes"]["result"] == ["ok", 32]  # longer: cut to the register, a short write
    assert _extended(w["rtmr1 48 bytes"], bytes(range(32)), hashlib.sha256)


def test_refresh_counter(guest: dict) -> None:
    r = _mode(guest, "group")
    assert r["refresh_delta_5_quiet_reads"] == 0
    g = r["groupwide"]
    # one in_sync flag per group: a write to rtmr1, then a read of rtmr0 refreshes both, once
    assert (g["write"], g["refreshes_after_write"], g["rtmr0_unchanged"], g["refreshes_after_rtmr0_read"],
            g["refreshes_after_rtmr1_read"]) == (32, 0, True, 1, 1)
    w = _writes(guest)
    assert bytes.fromhex(g["rtmr1"]) == hashlib.sha256(bytes.fromhex(w["rtmr1 48 bytes"]["after"])
                                                       + b"\x66" * 32).digest()


def test_report_carries_registers(guest: dict) -> None:
    r = _mode(guest, "group")
    for rep, regs in ((r["report_a2"], r["regs_after_a2"]), (r["report_b"], r["regs_after_b"])):
        aux, out = bytes.fromhex(rep["auxblob"]), bytes.fromhex(rep["outblob"])
        assert len(aux) == 184 and aux[:4] == b"TSMA" and aux[4:8] == out[0x0C:0x10]
        assert _aux_regs(aux) == [bytes.fromhex(regs[n]) for n in NAMES]
    # the report came before any sysfs read of the extend: it shows hw, and made no refresh
    assert r["unread_extend"] == 48 and r["refreshes_during_report"] == 0 and r["refreshes_after_reads"] == 1
    a0 = bytes.fromhex(r["report_a0"]["auxblob"])
    assert _aux_regs(a0) == [MRCONFIG, MRSTATIC, bytes(48), bytes(32)]


def test_report_cached_until_new_inblob(guest: dict) -> None:
    r = _mode(guest, "group")
    a0, again, cached, a2 = r["report_a0"], r["report_a0_again"], r["report_a1_cached"], r["report_a2"]
    assert again == a0 and cached == a0  # extends in between: same bytes, same generation
    assert a2["generation"] == a0["generation"] + 1 and a2["auxblob"] != a0["auxblob"]


def test_reports_never_see_half_an_extend(guest: dict) -> None:
    c = _mode(guest, "group")["concurrent"]
    assert c["child_status"] == 0 and c["off_chain"] == [] and c["final_is_last"], c
    steps = c["steps"]  # how many extends each report had seen: from none to all, never going back
    assert steps[0] == 0 and steps[-1] == 150 and steps == sorted(steps), c


def test_measurements_0_no_group(guest: dict) -> None:
    r = _mode(guest, "nogroup")
    assert r["params"] == {"measurements": "N", "mr_refreshes": "0"}
    assert not r["misc_dir"] and not r["devnode"]
    aux, out = bytes.fromhex(r["report"]["auxblob"]), bytes.fromhex(r["report"]["outblob"])
    assert aux == b"TSMA" + out[0x0C:0x10]


def test_unload_and_reload(guest: dict) -> None:
    r = _mode(guest, "reload")["reload"]
    assert r["extend"] == 48 and r["value_before"] != "00" * 48
    assert r["rmmod"][0] == 0 and all(r["gone"].values()), r
    assert r["read_stale_fd"][0] == "err", r  # the file went with the module
    assert r["insmod"][0] == 0
    assert r["files"] == sorted(NAMES) and r["rtmr0_fresh"] == "00" * 48 and r["rtmr1_fresh"] == "00" * 32
    assert (r["refreshes_fresh"], r["refreshes_after_read"]) == (0, 1)


def test_kernel_log_clean_and_vm_ok(guest: dict) -> None:
    from tsm_conformance.kernlog import bad_dmesg
    res = guest["results"]
    dmesg = (res / "dmesg.txt").read_text(errors="replace")
    console = (res / "console.log").read_text(errors="replace")
    assert bad_dmesg(dmesg) == []
    assert "failed" not in "\n".join(ln for ln in console.splitlines() if "tsm-vm:" in ln)
    for i in range(3):
        assert f"tsm-vm: command {i} exit 0" in console
    assert guest["rc"] == 0, "\n".join(guest["log"][-20:])
