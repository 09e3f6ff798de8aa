"""vm --kernel-tree / --provider-module / --fuzz / replay --vm: the host-side pieces, without a
kernel build or a boot (tests/test_vm_kernel_tree.py boots a real one when asked to)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tsm_conformance.vm import source
from tsm_conformance.vm.build import Provider, _sources
from tsm_conformance.vm.kernel import KernelTree, VmError
from tsm_conformance.kernlog import same_report
from tsm_conformance.vm.runner import VmRun, guest_script


def test_debug_variants_are_named_and_exclusive() -> None:
    assert source.debug_variants("") == []
    assert source.debug_variants("lockdep,kasan,kasan") == ["kasan", "lockdep"]
    with pytest.raises(VmError, match="unknown .*known: kasan, kcsan, lockdep, ubsan"):
        source.debug_variants("kmsan")
    with pytest.raises(VmError, match="KCSAN excludes KASAN"):
        source.debug_variants("kcsan,kasan")


def test_every_fragment_line_is_checked_after_olddefconfig() -> None:
    frags = source.fragments(["kasan", "lockdep"])
    assert [n for n, _ in frags] == ["base.config", "kasan.config", "lockdep.config"]
    want = source.wanted([t for _, t in frags])
    assert want["CONFIG_TSM_REPORTS"] == "m" and want["CONFIG_KASAN"] == "y" and want["CONFIG_PROVE_LOCKING"] == "y"
    config = "\n".join(f"{k}={v}" for k, v in want.items()) + "\n"
    assert source.not_taken(config, want) == []
    broken = config.replace("CONFIG_TSM_REPORTS=m", "# CONFIG_TSM_REPORTS is not set")
    assert source.not_taken(broken, want) == ["CONFIG_TSM_REPORTS=m (got n)"]
    assert source.wanted(["# CONFIG_X is not set", "CONFIG_Y=\"a b\""]) == {"CONFIG_X": "n", "CONFIG_Y": "\"a b\""}


def _tree(tmp_path: Path, version: tuple[str, str, str] = ("6", "12", "118")) -> Path:
    t = tmp_path / "linux"
    (t / "scripts" / "kconfig").mkdir(parents=True)
    (t / "arch" / "x86").mkdir(parents=True)
    (t / "scripts" / "kconfig" / "merge_config.sh").write_text("#!/bin/sh\n")
    (t / "Makefile").write_text(f"# SPDX\nVERSION = {version[0]}\nPATCHLEVEL = {version[1]}\n"
                                f"SUBLEVEL = {version[2]}\nEXTRAVERSION =\n")
    return t


def test_a_source_tree_is_checked_before_anything_is_built(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    assert source.check_tree(t) == "6.12.118"
    assert source.check_tree(_tree(tmp_path / "b", ("7", "3", "0"))) == "7.3"
    (t / ".config").write_text("CONFIG_X=y\n")
    with pytest.raises(VmError, match="configured in place .* mrproper"):
        source.check_tree(t)
    with pytest.raises(VmError, match="not a kernel source tree"):
        source.check_tree(tmp_path)
    with pytest.raises(VmError, match="no such directory"):
        source.check_tree(tmp_path / "nowhere")


def test_the_build_directory_is_keyed_by_tree_fragments_and_variant(tmp_path: Path) -> None:
    t = _tree(tmp_path)
    a, _ = source.build_dir(t, "6.12.118", [], tmp_path / "cache")
    b, _ = source.build_dir(t, "6.12.118", ["kasan"], tmp_path / "cache")
    c, _ = source.build_dir(_tree(tmp_path / "other"), "6.12.118", [], tmp_path / "cache")
    assert a != b != c != a and a.name.startswith("6.12.118-base-") and b.name.startswith("6.12.118-kasan-")
    assert source.build_dir(t, "6.12.118", [], tmp_path / "cache")[0] == a  # same inputs, same (incremental) build


def test_provider_module_sources(tmp_path: Path) -> None:
    one = tmp_path / "vendor_tsm.c"
    one.write_text("/* a provider */\n")
    assert _sources(one) == [Path("vendor_tsm.c")]
    (tmp_path / "x.h").write_text("")
    with pytest.raises(VmError, match="a directory with a Kbuild or Makefile, or a .c file"):
        _sources(tmp_path / "x.h")
    d = tmp_path / "mod"
    (d / "sub").mkdir(parents=True)
    with pytest.raises(VmError, match="no Kbuild or Makefile"):
        _sources(d)
    for name in ("Kbuild", "prov.c", "sub/regs.h", "prov.o", "prov.ko", ".prov.o.cmd", "modules.order"):
        (d / name).write_text("x")
    assert _sources(d) == [Path("Kbuild"), Path("prov.c"), Path("sub/regs.h")]
    assert Provider(Path("/c/my-prov.ko")).name == "my_prov"


def _run(tmp_path: Path, **kw: object) -> VmRun:
    tree = KernelTree("6.12.118", tmp_path / "bzImage", tmp_path, tmp_path)
    return VmRun(tree, ["privlevel_floor=0 size_step=4096"], tmp_path, **kw)  # type: ignore[arg-type]


def test_guest_script_fuzzes_or_replays_with_the_given_provider(tmp_path: Path) -> None:
    run = _run(tmp_path, provider=Provider(tmp_path / "vendor_tsm.ko"), fuzz=["sequences", "inblob"], max_time=120.0,
               profile="sev_guest")
    text = guest_script(run, ["tsm"])
    assert "insmod /mnt/vendor_tsm.ko privlevel_floor=0 size_step=4096" in text and "rmmod vendor_tsm" in text
    assert "cli fuzz sequences inblob --root /sys/kernel/config/tsm/report --profile sev_guest --max-time 120 " \
           "--junit $R/fuzz-0.xml --artifacts $R/fuzz-0/artifacts --corpus $R/fuzz-0/corpora" in text
    assert " run --root" not in text and "tsm_test" not in text
    text = guest_script(_run(tmp_path, replay=True), ["tsm"])
    assert "cli replay $R/replay.tsmseq --root /sys/kernel/config/tsm/report" in text and "fuzz" not in text


def test_a_kernel_report_is_matched_without_addresses_and_times() -> None:
    found = "BUG: KASAN: slab-out-of-bounds in tt_planted_overflow+0x6e/0xa0 [tsm_test]"
    assert same_report(found, "[  12.3456] BUG: KASAN: slab-out-of-bounds in tt_planted_overflow+0x71/0xa0 [tsm_test]")
    assert not same_report(found, "[ 1.0] BUG: KASAN: use-after-free in tt_planted_overflow+0x6e/0xa0 [tsm_test]")
    assert not same_report(found, "[ 1.0] WARNING: CPU: 0 PID: 1 at fs/configfs/file.c:1")
    assert not same_report("", "anything")


def test_replay_vm_verdict_of_a_kernel_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fuzz finding's .tsmseq names its check (fuzz.inblob) and its rule (kernel.kasan): replay
    --vm reproduces it when the fresh guest's kernel log shows the same report again."""
    from tsm_conformance.vm.runner import replay_verdict
    seq = tmp_path / "inblob-1.tsmseq"
    seq.write_text("# tsmseq 1\n# check: fuzz.inblob\n# rule: kernel.kasan\n"
                   "# observed: kernel log: BUG: KASAN: slab-out-of-bounds in tt_planted_overflow+0xa6/0xc0 "
                   "[tsm_test]; taint 4096 (O: out-of-tree module) -> 4128 (B: bad page, O: out-of-tree module)\n"
                   "# kernel-report: [ 25.7] BUG: KASAN: slab-out-of-bounds in tt_planted_overflow+0xa6/0xc0 "
                   "[tsm_test]\nmkdir(r0)  # 0\n")
    again = "[ 9.1] BUG: KASAN: slab-out-of-bounds in tt_planted_overflow+0xa6/0xc0 [tsm_test]\n"
    assert replay_verdict(seq, tmp_path, again, ["1"], print) == 0  # the steps' own results do not matter
    assert "reproduced: kernel.kasan observed" in capsys.readouterr().out
    assert replay_verdict(seq, tmp_path, "[ 9.1] nothing\n", ["0"], print) == 1
    assert "not reproduced: kernel.kasan" in capsys.readouterr().out
    plain = tmp_path / "p.tsmseq"
    plain.write_text("# tsmseq 1\n# check: inblob.oversize.efbig\nmkdir(r0)  # 0\n")
    assert replay_verdict(plain, tmp_path, "", ["0"], print) == 0 and replay_verdict(plain, tmp_path, "", ["1"],
                                                                                   print) == 1


def test_symbols_a_tree_does_not_declare_are_told_apart(tmp_path: Path) -> None:
    """A fragment line for a symbol the tree's Kconfig lacks (PROC_SYSCTL went in 7.x) is left out
    with a note; one the tree declares but did not honour is an error."""
    t = _tree(tmp_path)
    (t / "fs").mkdir()
    (t / "fs" / "Kconfig").write_text("config CONFIGFS_FS\n\ttristate\nmenuconfig NETWORK_FILESYSTEMS\n\tbool\n")
    (t / "Kconfig.debug").write_text("  config DEBUG_KERNEL\n")
    assert source.kconfig_symbols(t) == {"CONFIGFS_FS", "NETWORK_FILESYSTEMS", "DEBUG_KERNEL"}


def test_vm_and_replay_take_the_kernel_options() -> None:
    from tsm_conformance.cli import parser
    a = parser().parse_args(["vm", "--kernel-tree", "/src/linux", "--debug", "kasan", "--kselftest", "--junit", "j.xml",
                             "--fuzz", "sequences,inblob", "--max-time", "30", "--provider-module", "kmod/x"])
    assert (a.kernel_tree, a.debug, a.kselftest, a.junit, a.fuzz, a.max_time, a.provider_module) == \
        ("/src/linux", "kasan", True, "j.xml", "sequences,inblob", 30.0, "kmod/x")
    assert parser().parse_args(["vm", "--kernel-deb", "k", "--kselftest", "/src/linux"]).kselftest == "/src/linux"
    r = parser().parse_args(["replay", "f.tsmseq", "--vm", "--kernel-source-deb", "linux-source-6.12",
                             "--params", "plant_bug=1"])
    assert r.vm and r.kernel_source_deb == "linux-source-6.12" and r.params == ["plant_bug=1"]


def test_a_failed_build_is_one_line_naming_missing_packages(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("  LEX     scripts/kconfig/lexer.lex.c\n/bin/sh: 1: flex: not found\nmake[3]: *** Error 127\n")
    with pytest.raises(VmError, match=r"configuring x failed \(apt-get install flex bison bc libelf-dev libssl-dev\): "
                                      r".*flex: not found \| make\[3\]"):
        source._failed("configuring x", log)
    log.write_text("drivers/x.c:1: error: boom\n")
    with pytest.raises(VmError, match=r"^kernel build failed: drivers/x.c:1: error: boom \(log "):
        source._failed("kernel build", log)


def test_a_provider_that_does_not_compile_is_one_line_with_the_compiler_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from tsm_conformance.vm import build
    src = tmp_path / "bad_tsm.c"
    src.write_text("int x = ;\n")
    failed = subprocess.CompletedProcess([], 2, "  CC [M]  bad_tsm.o\n", "bad_tsm.c:1:9: error: expected expression\n"
                                         "make[2]: *** [scripts/Makefile.build:234: bad_tsm.o] Error 1\n")
    monkeypatch.setattr(build.subprocess, "run", lambda *a, **k: failed)
    tree = KernelTree("6.12.118", tmp_path / "bzImage", tmp_path, tmp_path / "headers")
    with pytest.raises(VmError, match=r"^module build of .*bad_tsm.c failed for 6.12.118: bad_tsm.c:1:9: error: "
                                      r"expected expression \(log .*build.log\)$"):
        build.build_module(tree, tmp_path / "cache", lambda m: None, src)


def test_a_failed_tool_is_named_by_its_last_line() -> None:
    from tsm_conformance.vm.kernel import last_line
    assert last_line("W: a warning\nE: Couldn't find any package by regex 'linux-source-9.9'\n") == \
        "E: Couldn't find any package by regex 'linux-source-9.9'"
    assert last_line("") == last_line(None) == "(no output)"
