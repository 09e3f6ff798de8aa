"""``tsm-conformance vm``: kernel -> module -> initramfs -> QEMU -> the suite in the guest -> JUnit.

Each parameter set is one insmod of tsm_test and one suite run against the real
/sys/kernel/config/tsm/report; the guest's dmesg comes back and any oops, BUG or WARNING fails the
run.  All results land in one JUnit file on the host.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import tsm_conformance

from . import qemu
from .build import build_module
from .differential import compare, divergence_file, era_of, write_sequences
from .initramfs import build_initramfs
from .kernel import KernelTree

from ..kernlog import BAD_DMESG, bad_dmesg  # noqa: F401  (the one kernel-log policy)
# Floor 0; floor 2 refusing reports below it as SNP firmware does (what a guest under an SVSM
# has); floor 1 with a large outblob.
DEFAULT_PARAMS = ("privlevel_floor=0", "privlevel_floor=2 refuse_below_floor=1",
                  "privlevel_floor=1 outblob_size=32768")


@dataclass
class VmRun:
    tree: KernelTree
    params: list[str]
    results: Path
    pytest_args: list[str] = field(default_factory=list)
    timeout: float = 600.0
    accel: str = "auto"  # auto: KVM if a probe boot works here, else TCG
    differential: int = 0  # number of sequences to compare against the emulator (0: none)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (module params, shell command)


def guest_script(run: VmRun, core_order: list[str]) -> str:
    """The shell script the guest runs in the host root (chroot), one suite run per parameter set."""
    pkg_parent = Path(tsm_conformance.__file__).resolve().parent.parent
    py = shlex.quote(sys.executable)
    extra = " ".join(shlex.quote(a) for a in run.pytest_args)
    lines = [
        "B=/mnt/busybox; R=/run/tsm-results",
        "export HOME=/run TMPDIR=/run/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=" + shlex.quote(str(pkg_parent)),
        "echo \"tsm-vm: kernel $(uname -r)\"",
        *[f"$B insmod /mnt/{m}.ko || echo 'tsm-vm: insmod {m} failed'" for m in core_order],
        "mount -t configfs configfs /sys/kernel/config 2>/dev/null || $B mount -t configfs configfs /sys/kernel/config",
        "cd /run",
    ]
    for i, params in enumerate(run.params):
        lines += [
            f"echo 'tsm-vm: run {i} insmod tsm_test {params}'",
            f"$B insmod /mnt/tsm_test.ko {params} || echo 'tsm-vm: insmod tsm_test failed'",
            f"{py} -m tsm_conformance.cli run --root /sys/kernel/config/tsm/report --profile tsm_test "
            f"--module /mnt/tsm_test.ko --junit $R/junit-{i}.xml {('-- ' + extra) if extra else ''} "
            f"> $R/suite-{i}.log 2>&1",
            f"echo $? > $R/rc-{i}",
            f"echo \"tsm-vm: run {i} exit $(cat $R/rc-{i})\"",
            f"tail -n 3 $R/suite-{i}.log | sed 's/^/tsm-vm:   /'",
            f"grep -E '^(FAILED|ERROR|XFAIL|XPASS)' $R/suite-{i}.log | cut -c1-150 | sed 's/^/tsm-vm:   /'",
            "$B rmmod tsm_test || echo 'tsm-vm: rmmod tsm_test failed'",
        ]
    for i, (params, command) in enumerate(run.commands):
        lines += [
            f"$B insmod /mnt/tsm_test.ko {params} || echo 'tsm-vm: insmod tsm_test failed'",
            f"echo 'tsm-vm: command {i}'",
            f"({command}) > $R/command-{i}.log 2>&1; echo \"tsm-vm: command {i} exit $?\"",
            "$B rmmod tsm_test || echo 'tsm-vm: rmmod tsm_test failed'",
        ]
    if run.differential:
        lines += [
            f"echo 'tsm-vm: differential: {run.differential} sequences'",
            f"{py} -m tsm_conformance.vm.diffguest $R/seqs.json $R/diff.json /mnt/busybox /mnt/tsm_test.ko "
            "> $R/diff.log 2>&1",
            "echo \"tsm-vm: differential guest exit $?\"",
        ]
    lines += ["dmesg > $R/dmesg.txt", "echo 'tsm-vm: done'"]
    return "\n".join(lines) + "\n"


def _differential(run: VmRun, seqs: list[dict], junit: Path, progress) -> int:  # noqa: ANN001
    out = run.results / "diff.json"
    kernel = json.loads(out.read_text()) if out.exists() else []
    era = era_of(run.tree.release)
    divs, errors = compare(seqs, kernel, era)
    report = [d.render() for d in divs] + errors
    for d in divs:  # each divergence as a replayable file: `tsm-conformance replay FILE` shows it
        out_dir = run.results / "divergences"
        out_dir.mkdir(exist_ok=True)
        (out_dir / f"seq{d.seq_id:04d}.tsmseq").write_text(divergence_file(d, era, run.tree.release))
    (run.results / "differential.txt").write_text("\n\n".join(report) + "\n")
    for text in report[:10]:
        print(text)
    progress(f"differential: {len(seqs)} sequences, {sum(len(q['ops']) for q in seqs)} operations, "
             f"emulator era {era}: {len(divs)} divergences, {len(errors)} not run")
    root = ET.parse(junit).getroot()
    n = differential_junit(root, seqs, divs, errors)
    ET.ElementTree(root).write(junit, encoding="utf-8", xml_declaration=True)
    return n


def init_on_alloc(tree: KernelTree) -> str:
    cfg = tree.headers / ".config"
    text = cfg.read_text(errors="replace") if cfg.exists() else ""
    return "y" if "CONFIG_INIT_ON_ALLOC_DEFAULT_ON=y" in text else ("n" if text else "unknown")


def merge_junit(run: VmRun, dmesg: str, console: str, out: Path) -> tuple[int, int]:
    """One JUnit document: each run's suite (named with its parameters) plus a kernel-log case."""
    root = ET.Element("testsuites", name="tsm-conformance vm")
    failures = 0
    for i, params in enumerate(run.params):
        f = run.results / f"junit-{i}.xml"
        if not f.exists():
            s = ET.SubElement(root, "testsuite", name=f"tsm-conformance[{params}]", tests="1", errors="1")
            case = ET.SubElement(s, "testcase", classname="tsm.vm", name="vm.suite.ran")
            log = run.results / f"suite-{i}.log"
            ET.SubElement(case, "error", message="the suite did not produce JUnit in the guest").text = \
                log.read_text(errors="replace") if log.exists() else console[-20000:]
            failures += 1
            continue
        for s in ET.parse(f).getroot().iter("testsuite"):
            s.set("name", f"{s.get('name')}[{params}]")
            props = s.find("properties")
            if props is None:
                props = ET.SubElement(s, "properties")
            ET.SubElement(props, "property", name="tsm.vm.module_params", value=params)
            ET.SubElement(props, "property", name="tsm.vm.kernel_release", value=run.tree.release)
            # with init_on_alloc off, the size-then-fill race leaks uninitialised memory (docs/abi.md §8.14)
            ET.SubElement(props, "property", name="tsm.vm.init_on_alloc_default", value=init_on_alloc(run.tree))
            failures += int(s.get("failures", "0")) + int(s.get("errors", "0"))
            root.append(s)
    bad = bad_dmesg(dmesg)
    s = ET.SubElement(root, "testsuite", name="tsm-conformance vm kernel", tests="1",
                      failures=str(int(bool(bad))))
    case = ET.SubElement(s, "testcase", classname="tsm.vm.kernel", name="vm.kernel.log_clean")
    if bad:
        ET.SubElement(case, "failure", message=f"{len(bad)} oops/BUG/WARNING lines in dmesg").text = "\n".join(bad)
        failures += 1
    ET.SubElement(s, "system-err").text = dmesg
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return failures, len(bad)


def differential_junit(root: ET.Element, seqs: list[dict], divs: list, errors: list[str]) -> int:
    bad = {d.seq_id: d for d in divs}
    s = ET.SubElement(root, "testsuite", name="tsm-conformance vm differential", tests=str(len(seqs)),
                      failures=str(len(bad)), errors=str(len(errors)))
    for q in seqs:
        case = ET.SubElement(s, "testcase", classname="tsm.vm.differential", name=f"differential.seq{q['id']:04d}")
        if q["id"] in bad:
            ET.SubElement(case, "failure", message="kernel and emulator diverge").text = bad[q["id"]].render()
    if errors:
        case = ET.SubElement(s, "testcase", classname="tsm.vm.differential", name="differential.guest")
        ET.SubElement(case, "error", message=f"{len(errors)} sequences did not run").text = "\n".join(errors)
    return len(bad) + len(errors)


def run_vm(tree: KernelTree, cache: Path, junit: Path, params: list[str] | None = None,
           pytest_args: list[str] | None = None, timeout: float = 600.0, keep: Path | None = None,
           progress=print, differential: int = 0, seed: int = 1,  # noqa: ANN001
           commands: list[tuple[str, str]] | None = None, accel: str = "auto") -> int:
    t0 = time.monotonic()
    ko = build_module(tree, cache, progress)
    results = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="tsm-vm-"))
    results.mkdir(parents=True, exist_ok=True)
    run = VmRun(tree, list(DEFAULT_PARAMS if params is None else params), results, list(pytest_args or []),
                timeout, accel=accel, differential=differential, commands=list(commands or []))
    seqs = write_sequences(results, differential, seed) if differential else []
    initrd, core_order = build_initramfs(tree, ko, cache, progress)
    (results / "guest.sh").write_text(guest_script(run, core_order))
    if run.accel == "auto":
        run.accel = qemu.choose_accel(tree.image, initrd, cache, progress)
    cmd = qemu.qemu_command(tree.image, initrd, results, run.accel)
    progress(f"boot {tree.release} (QEMU {run.accel}, {len(run.params)} run(s))")

    def on_line(line: str) -> None:
        if "tsm-vm:" in line:
            progress(line[line.index("tsm-vm:") + 8:])
        elif BAD_DMESG.search(line):
            progress(f"kernel: {line.strip()}")
    for attempt in (1, 2):
        rc, secs = qemu.run(cmd, results / "console.log", timeout, on_line)
        console = (results / "console.log").read_text(errors="replace")
        if "tsm-vm: guest up" in console or attempt == 2:
            break
        # The kernel died before our init ran (seen once under TCG: an int3 oops in
        # sched_clock_cpu at 1.4 s): an emulation hiccup, not a finding.  Boot once more.
        (results / "console-failed-boot.log").write_text(console)
        progress("the guest died before init ran; booting again (console-failed-boot.log kept)")
    dmesg_file = results / "dmesg.txt"
    dmesg = dmesg_file.read_text(errors="replace") if dmesg_file.exists() else console
    if rc is None:
        dmesg += f"\n[host] QEMU killed after the {timeout:.0f} s timeout\n"
    failures, bad = merge_junit(run, dmesg, console, junit)
    if differential:
        failures += _differential(run, seqs, junit, progress)
    rcs = [(results / f"rc-{i}").read_text().strip() if (results / f"rc-{i}").exists() else "missing"
           for i in range(len(run.params))]
    ok = rc is not None and all(r in ("0", "4") for r in rcs) and not bad and not failures
    kept = f"; logs {results}" if keep or not ok else ""
    progress(f"guest exit codes {rcs}; dmesg problems {bad}; VM {secs:.1f} s; total {time.monotonic() - t0:.1f} s; "
             f"JUnit {junit}{kept}")
    if rc is None:
        progress(f"timeout: the VM did not finish within {timeout:.0f} s")
        return 1
    if any(r not in ("0", "4") for r in rcs) or bad or failures:
        return 1
    if not keep:  # logs stay behind only when something failed (or --keep asked for them)
        shutil.rmtree(results, ignore_errors=True)
    return 0
