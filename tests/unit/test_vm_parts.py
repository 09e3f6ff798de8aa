"""The VM target's host-side pieces, without booting anything."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tsm_conformance.vm import kernel as K
from tsm_conformance.vm.cpio import Newc
from tsm_conformance.vm.initramfs import depends, load_order, module_index
from tsm_conformance.vm.runner import VmRun, bad_dmesg, guest_script, merge_junit


def parse_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    out, i = {}, 0
    while True:
        assert data[i:i + 6] == b"070701"
        f = [int(data[i + 6 + 8 * k:i + 14 + 8 * k], 16) for k in range(13)]
        mode, size, nlen = f[1], f[6], f[11]
        name = data[i + 110:i + 110 + nlen - 1].decode()
        j = i + 110 + nlen
        j += -j % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data[j:j + size])
        i = j + size + (-(j + size) % 4)


def test_newc_round_trip() -> None:
    c = Newc()
    c.dir("bin")
    c.file("bin/x", b"abc", 0o755)
    c.file("init", b"#!/bin/sh\n" * 3, 0o755)
    c.symlink("sh", "bin/x")
    entries = parse_newc(gzip.decompress(c.gz()))
    assert entries["bin/x"] == (0o100755, b"abc") and entries["sh"][1] == b"bin/x"
    assert entries["bin"][0] == 0o040755


def fake_ko(deps: str) -> bytes:
    return b"\x7fELF....\0license=GPL\0depends=" + deps.encode() + b"\0vermagic=x\0"


def test_module_dependencies_and_order(tmp_path: Path) -> None:
    mods = tmp_path / "lib/modules/6.12.0"
    for name, deps in (("9p", "netfs,9pnet"), ("9pnet", "netfs"), ("netfs", ""), ("9pnet_virtio", "9pnet")):
        (mods / "kernel").mkdir(parents=True, exist_ok=True)
        (mods / "kernel" / f"{name}.ko").write_bytes(fake_ko(deps))
    assert depends(fake_ko("a,b-c")) == ["a", "b_c"] and depends(b"nothing") == []
    order = [n for n, _ in load_order(["9pnet_virtio", "9p"], module_index(mods), set())]
    assert order == ["netfs", "9pnet", "9pnet_virtio", "9p"]
    assert [n for n, _ in load_order(["9p", "configfs"], module_index(mods), {"configfs"})] == ["netfs", "9pnet", "9p"]
    with pytest.raises(K.VmError, match="neither in the module tree nor built in"):
        load_order(["tsm"], module_index(mods), set())


def test_header_relocation(tmp_path: Path) -> None:
    h = tmp_path / "usr/src/linux-headers-7.3.4+deb13-amd64"
    h.mkdir(parents=True)
    (h / "Makefile").write_text("KBUILD_OUTPUT=/usr/src/linux-headers-7.3.4+deb13-amd64\n"
                                "include /usr/src/linux-headers-7.3.4+deb13-common/Makefile\n")
    K._relocate_headers(tmp_path, h)
    text = (h / "Makefile").read_text()
    assert text.count(f"{tmp_path}/usr/src/") == 2 and "\n/usr/src" not in text


def test_package_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    deps = {"linux-image-7.3-amd64": ["linux-image-7.3.4+deb13-amd64"],
            "linux-image-7.3.4+deb13-amd64": ["dracut", "linux-base-7.3.4+deb13-amd64",
                                              "linux-binary-7.3.4+deb13-amd64", "linux-modules-7.3.4+deb13-amd64"],
            "linux-headers-7.3.4+deb13-amd64": ["linux-base", "linux-headers-7.3.4+deb13-common",
                                                "linux-kbuild-7.3.4+deb13", "gcc-14"]}
    monkeypatch.setattr(K, "_depends", lambda p, apt: deps.get(p, []))
    monkeypatch.setattr(K.subprocess, "run", lambda *a, **k: type("P", (), {"returncode": 0})())
    got = K.resolve_packages("linux-image-7.3-amd64", [])
    assert set(got) == {"linux-image-7.3-amd64", "linux-image-7.3.4+deb13-amd64", "linux-base-7.3.4+deb13-amd64",
                        "linux-binary-7.3.4+deb13-amd64", "linux-modules-7.3.4+deb13-amd64",
                        "linux-headers-7.3.4+deb13-amd64", "linux-headers-7.3.4+deb13-common",
                        "linux-kbuild-7.3.4+deb13"}


def tree(tmp_path: Path) -> K.KernelTree:
    return K.KernelTree("6.12.117+deb12-amd64", tmp_path / "vmlinuz", tmp_path, tmp_path)


def test_guest_script(tmp_path: Path) -> None:
    run = VmRun(tree(tmp_path), ["privlevel_floor=1", "privlevel_floor=0"], tmp_path, ["-x"], differential=5)
    text = guest_script(run, ["configfs", "tsm"])
    assert "insmod /mnt/configfs.ko" in text and "insmod /mnt/tsm.ko" in text
    assert text.count("insmod /mnt/tsm_test.ko") == 2 and "--module /mnt/tsm_test.ko" in text
    assert "--junit $R/junit-1.xml -- -x" in text and "tsm_conformance.vm.diffguest" in text


def test_dmesg_policy_and_junit_merge(tmp_path: Path) -> None:
    assert bad_dmesg("[1.0] tsm_test: loading out-of-tree module taints kernel.\n") == []
    assert bad_dmesg("[2.0] WARNING: CPU: 0 PID: 1 at fs/configfs/file.c:1\n[2.1] Call Trace:\n")
    (tmp_path / "junit-0.xml").write_text(
        '<testsuites><testsuite name="tsm-conformance" tests="1" failures="0" errors="0">'
        '<testcase classname="tsm.tsm_test.gen" name="gen.fresh.initial"/></testsuite></testsuites>')
    run = VmRun(tree(tmp_path), ["privlevel_floor=1", "privlevel_floor=2"], tmp_path)
    out = tmp_path / "all.xml"
    failures, bad = merge_junit(run, "[3.0] BUG: kernel NULL pointer dereference\n", "console", out)
    assert (failures, bad) == (2, 1)  # run 1 produced no JUnit; the kernel log is not clean
    root = ET.parse(out).getroot()
    names = [c.get("name") for c in root.iter("testcase")]
    assert names == ["gen.fresh.initial", "vm.suite.ran", "vm.kernel.log_clean"]
    assert root.find(".//property[@name='tsm.vm.module_params']").get("value") == "privlevel_floor=1"


def test_accelerator_choice_is_probed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tsm_conformance.vm import qemu
    image, initrd = tmp_path / "vmlinuz-x", tmp_path / "initrd"
    monkeypatch.setattr(qemu.os, "access", lambda p, m: False)
    assert qemu.choose_accel(image, initrd, tmp_path, print) == "tcg"  # no usable /dev/kvm
    monkeypatch.setattr(qemu.os, "access", lambda p, m: True)
    calls = []
    monkeypatch.setattr(qemu, "qemu_command", lambda *a, **k: ["qemu"])
    monkeypatch.setattr(qemu, "run",
                        lambda cmd, log, t, on_line: (calls.append(1), on_line("tsm-vm: kvm-ok"), (0, 1.0))[2])
    assert qemu.choose_accel(image, initrd, tmp_path, print) == "kvm"
    assert qemu.choose_accel(image, initrd, tmp_path, print) == "kvm" and len(calls) == 1  # cached


def _deb(tmp: Path, name: str, files: dict[str, str]) -> Path:
    """A minimal binary package holding ``files`` (dpkg-deb --build, no root needed)."""
    import subprocess
    root = tmp / f"pkg-{name}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(f"Package: {name}\nVersion: 1\nArchitecture: all\n"
                                             "Maintainer: t <t@t>\nDescription: t\n")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    out = tmp / f"{name}_1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(out)], check=True,
                   capture_output=True)
    return out


@pytest.mark.skipif(not Path("/usr/bin/dpkg-deb").exists(), reason="needs dpkg-deb (Debian-like host)")
def test_from_deb_unpacks_into_a_cache_that_does_not_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh machine's cache is empty or absent: from_deb must create every directory it unpacks
    into (dpkg -x makes only the last component; the tier failed on every new machine)."""
    rel = "6.12.0-test-amd64"
    debs = {
        "linux-image-test": _deb(tmp_path, "linux-image-test", {f"boot/vmlinuz-{rel}": "image",
                                                                f"lib/modules/{rel}/kernel/x.ko": "ko"}),
        "linux-headers-test": _deb(tmp_path, "linux-headers-test", {
            f"usr/src/linux-headers-{rel}/Makefile": "include /usr/src/linux-headers-common/Makefile\n"}),
    }
    monkeypatch.setattr(K, "resolve_packages", lambda package, apt: list(debs))
    real_run = K._run

    def fake_run(cmd: list[str], cwd: Path | None = None) -> str:
        if cmd[:2] == ["apt-get", "download"]:  # no network in tests: the archive is tmp_path
            for p in cmd[2:]:
                (Path(cwd or ".") / debs[p].name).write_bytes(debs[p].read_bytes())
            return ""
        return real_run(cmd, cwd)
    monkeypatch.setattr(K, "_run", fake_run)
    cache = tmp_path / "fresh" / "cache"  # neither exists
    tree = K.from_deb("linux-image-test", cache, lambda msg: None)
    assert tree.release == rel and tree.image.read_text() == "image"
    assert f"{cache}/kernels/linux-image-test/usr/src/" in (tree.headers / "Makefile").read_text()
    assert not list((cache / "kernels").glob("*.partial"))
    # a second call finds it unpacked (the stamp) and does not unpack again
    monkeypatch.setattr(K, "_run", lambda cmd, cwd=None: pytest.fail(f"ran {cmd}"))
    assert K.from_deb("linux-image-test", cache, lambda msg: None) == tree


def test_a_vm_bundle_gathers_the_guest_bundles_and_verifies(tmp_path: Path) -> None:
    """vm --bundle without a VM: run 0's guest bundle is a real (emulated) run's, run 1 left none;
    the host's bundle lists run 0's checks as ID[PARAMS], the merged JUnit's others as they are,
    and bundle verify passes on it, runs/0 included; one edited byte in runs/0 fails it."""
    import json
    import subprocess
    import sys

    from tsm_conformance.results.bundle import verify
    from tsm_conformance.vm.bundle import guest_bundle, write_vm_bundle
    res = tmp_path / "results"
    res.mkdir()
    params = ["privlevel_floor=1", "privlevel_floor=2"]
    subprocess.run([sys.executable, "-m", "tsm_conformance.cli", "run", "--emulate", "tsm_test:privlevel_floor=1",
                    "-q", "--bundle", str(guest_bundle(res, 0)), "--junit", str(res / "junit-0.xml"),
                    "--", "--tsm-check", "gen.*"], check=False, capture_output=True, timeout=300, cwd=tmp_path)
    run = VmRun(tree(tmp_path), params, res)
    junit = tmp_path / "merged.xml"
    merge_junit(run, "[1.0] all quiet\n", "console", junit)
    out = tmp_path / "bundle"
    write_vm_bundle(run, out, junit, "[1.0] all quiet\n", 1, ["tsm-conformance", "vm"], "2026-12-07T00:00:00Z")
    assert verify(str(out)) == []
    results = json.loads((out / "results.json").read_text())
    ids = [c["id"] for c in results["checks"]]
    assert "gen.fresh.initial[privlevel_floor=1]" in ids and "vm.suite.ran[privlevel_floor=2]" in ids
    assert "vm.kernel.log_clean" in ids and results["verdict"] == "fail" and results["exit_status"] == 1
    env = json.loads((out / "environment.json").read_text())
    assert env["vm"]["params"] == params and env["runs"][0]["bundle"] == "runs/0"
    with open(out / "runs" / "0" / "summary.txt", "a") as f:
        f.write(" ")
    problems = verify(str(out))
    assert any(p.startswith("runs/0/summary.txt") for p in problems)
