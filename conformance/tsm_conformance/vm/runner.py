"""``tsm-conformance vm``: kernel -> provider module -> initramfs -> QEMU -> work in the guest -> JUnit.

Each parameter set is one insmod of the provider module (tsm_test unless --provider-module) and
one piece of work against the real /sys/kernel/config/tsm/report: the suite, the fuzz targets
(--fuzz), or a replay of one .tsmseq (replay --vm).  The guest's dmesg comes back and any oops,
BUG, WARNING or sanitizer report fails the run.  All results land in one JUnit file on the host.
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
from .build import Provider, build_module
from .differential import compare, divergence_file, era_of, write_sequences
from .initramfs import build_initramfs
from .kernel import KernelTree

from ..kernlog import BAD_DMESG, bad_dmesg, same_report  # noqa: F401  (the one kernel-log policy)
# Floor 0; floor 2 refusing reports below it as SNP firmware does (what a guest under an SVSM
# has); floor 1 with a large outblob.
DEFAULT_PARAMS = ("privlevel_floor=0", "privlevel_floor=2 refuse_below_floor=1",
                  "privlevel_floor=1 outblob_size=32768")
# Fuzzing tsm_test: reports whose length changes with every generation (size_step), so the
# size-then-fill race can show (docs/abi.md §8.14) and is recognised as the known bug.
FUZZ_PARAMS = ("privlevel_floor=0 size_step=4096",)
ROOT = "/sys/kernel/config/tsm/report"
REPLAY_FILE = "replay.tsmseq"  # where the .tsmseq to replay sits in the results share


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
    provider: Provider = field(default_factory=lambda: Provider(Path("/mnt/tsm_test.ko")))
    profile: str | None = None  # None: tsm_test for our module, else what the tree's probe picks
    fuzz: list[str] = field(default_factory=list)  # fuzz targets: the guest fuzzes instead of the suite
    max_time: float = 60.0  # seconds per fuzz target
    replay: bool = False  # the guest replays results/REPLAY_FILE instead of the suite
    kselftest: Path | None = None  # a kernel source tree: also run our wrapper through its kselftest runner
    bundle: bool = False  # each guest run writes a result bundle (vm --bundle: vm/bundle.py gathers them)

    @property
    def mode(self) -> str:
        return "fuzz" if self.fuzz else "replay" if self.replay else "suite"


def _work(run: VmRun, i: int, py: str, ko: str) -> list[str]:
    """The guest's commands for parameter set ``i`` in the run's mode; each leaves $R/rc-i."""
    profile = f"--profile {shlex.quote(run.profile)} " if run.profile else ""
    bundle = f"--bundle $R/bundle-{i} " if run.bundle else ""
    if run.mode == "fuzz":
        return [
            f"{py} -m tsm_conformance.cli fuzz {' '.join(shlex.quote(t) for t in run.fuzz)} --root {ROOT} "
            f"{profile}{bundle}--max-time {run.max_time:g} --junit $R/fuzz-{i}.xml --artifacts $R/fuzz-{i}/artifacts "
            f"--corpus $R/fuzz-{i}/corpora > $R/fuzz-{i}.log 2>&1",
            f"echo $? > $R/rc-{i}",
            f"echo \"tsm-vm: run {i} fuzz exit $(cat $R/rc-{i})\"",
            f"grep -E '^(tsm-fuzz|  [a-z_]+ +(PASS|FAIL|ERROR|SKIP))' $R/fuzz-{i}.log | cut -c1-200 "
            "| sed 's/^/tsm-vm:   /'",
        ]
    if run.mode == "replay":
        return [
            f"{py} -m tsm_conformance.cli replay $R/{REPLAY_FILE} --root {ROOT} > $R/replay-{i}.log 2>&1",
            f"echo $? > $R/rc-{i}",
            f"sed 's/^/tsm-vm:   /' $R/replay-{i}.log | tail -n 20",
        ]
    extra = " ".join(shlex.quote(a) for a in run.pytest_args)
    return [
        f"{py} -m tsm_conformance.cli run --root {ROOT} {profile or '--profile tsm_test '}"
        f"--module {ko} --junit $R/junit-{i}.xml {bundle}{('-- ' + extra) if extra else ''} > $R/suite-{i}.log 2>&1",
        f"echo $? > $R/rc-{i}",
        f"echo \"tsm-vm: run {i} exit $(cat $R/rc-{i})\"",
        f"tail -n 3 $R/suite-{i}.log | sed 's/^/tsm-vm:   /'",
        f"grep -E '^(FAILED|ERROR|XFAIL|XPASS)' $R/suite-{i}.log | cut -c1-150 | sed 's/^/tsm-vm:   /'",
    ]


def guest_script(run: VmRun, core_order: list[str]) -> str:
    """The shell script the guest runs in the host root (chroot), one piece of work per parameter set."""
    pkg_parent = Path(tsm_conformance.__file__).resolve().parent.parent
    py = shlex.quote(sys.executable)
    name = run.provider.name
    ko = f"/mnt/{name}.ko"
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
            f"echo 'tsm-vm: run {i} insmod {name} {params}'",
            f"$B insmod {ko} {params} || echo 'tsm-vm: insmod {name} failed'",
            *_work(run, i, py, ko),
            f"$B rmmod {name} || echo 'tsm-vm: rmmod {name} failed'",
        ]
    for i, (params, command) in enumerate(run.commands):
        lines += [
            f"$B insmod {ko} {params} || echo 'tsm-vm: insmod {name} failed'",
            f"echo 'tsm-vm: command {i}'",
            f"({command}) > $R/command-{i}.log 2>&1; echo \"tsm-vm: command {i} exit $?\"",
            f"$B rmmod {name} || echo 'tsm-vm: rmmod {name} failed'",
        ]
    if run.kselftest:  # our kselftest wrapper through the tree's own runner (vm/kselftest.py)
        from .kselftest import GUEST_SCRIPT
        lines += [
            f"$B insmod {ko} {run.params[0] if run.params else ''} || echo 'tsm-vm: insmod {name} failed'",
            "echo 'tsm-vm: kselftest through the kernel tree runner'",
            # staged on the guest's tmpfs: run from the 9p results share, the runner showed our
            # test as ok with none of its output
            f"TSM_CONFORMANCE='{py} -m tsm_conformance.cli' sh {shlex.quote(str(GUEST_SCRIPT))} "
            f"{shlex.quote(str(run.kselftest))} /run/tmp/kselftest > $R/kselftest.log 2>&1",
            "echo \"tsm-vm: kselftest exit $?\"",
            "mkdir -p $R/kselftest && cp /run/tmp/kselftest/ktap.txt $R/kselftest/ 2>/dev/null",
            f"$B rmmod {name} || echo 'tsm-vm: rmmod {name} failed'",
        ]
    if run.differential:
        lines += [
            f"echo 'tsm-vm: differential: {run.differential} sequences'",
            f"{py} -m tsm_conformance.vm.diffguest $R/seqs.json $R/diff.json /mnt/busybox {ko} "
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
    junit, logname = ("fuzz", "fuzz") if run.mode == "fuzz" else ("junit", "suite")
    for i, params in enumerate(run.params if run.mode != "replay" else []):
        f = run.results / f"{junit}-{i}.xml"
        if not f.exists():
            s = ET.SubElement(root, "testsuite", name=f"tsm-conformance[{params}]", tests="1", errors="1")
            # named by its parameter set as the runs' own cases are (results/model.testcases: ID[PARAMS])
            ET.SubElement(ET.SubElement(s, "properties"), "property", name="tsm.vm.module_params", value=params)
            case = ET.SubElement(s, "testcase", classname="tsm.vm", name=f"vm.{run.mode}.ran")
            log = run.results / f"{logname}-{i}.log"
            ET.SubElement(case, "error", message=f"the {run.mode} run did not produce JUnit in the guest").text = \
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
           commands: list[tuple[str, str]] | None = None, accel: str = "auto", provider_src: Path | None = None,
           profile: str | None = None, fuzz: list[str] | None = None, max_time: float = 60.0,
           fuzz_out: Path | None = None, replay: Path | None = None, kselftest: Path | None = None,
           bundle: Path | None = None) -> int:
    """Boot once and do the work; 0 when every run passed and the kernel log is clean, else 1.
    ``fuzz_out``: where a fuzz run's corpora and findings come home (default ./vm-fuzz); ``bundle``:
    write a result bundle there (vm/bundle.py)."""
    t0 = time.monotonic()
    from ..results.environment import now
    started = now()
    provider = build_module(tree, cache, progress, provider_src)
    results = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="tsm-vm-"))
    results.mkdir(parents=True, exist_ok=True)
    default = FUZZ_PARAMS if fuzz and provider_src is None else ("",) if fuzz or replay or provider_src \
        else DEFAULT_PARAMS
    run = VmRun(tree, list(default if params is None else params), results, list(pytest_args or []),
                timeout, accel=accel, differential=differential, commands=list(commands or []),
                provider=provider, profile=profile, fuzz=list(fuzz or []), max_time=max_time, replay=bool(replay),
                kselftest=kselftest, bundle=bundle is not None and replay is None)
    if replay:
        shutil.copy(replay, results / REPLAY_FILE)
    seqs = write_sequences(results, differential, seed, tree.release) if differential else []
    initrd, core_order = build_initramfs(tree, provider.ko, cache, progress)
    (results / "guest.sh").write_text(guest_script(run, core_order))
    if run.accel == "auto":
        run.accel = qemu.choose_accel(tree.image, initrd, cache, progress)
    cmd = qemu.qemu_command(tree.image, initrd, results, run.accel)
    progress(f"boot {tree.release} (QEMU {run.accel}, {len(run.params)} {run.mode} run(s), {provider.name})")
    rc, secs, console = _boot(cmd, results, timeout, progress)
    dmesg_file = results / "dmesg.txt"
    dmesg = dmesg_file.read_text(errors="replace") if dmesg_file.exists() else console
    if rc is None:
        dmesg += f"\n[host] QEMU killed after the {timeout:.0f} s timeout\n"
    failures, bad = merge_junit(run, dmesg, console, junit)
    if differential:
        failures += _differential(run, seqs, junit, progress)
    if run.mode == "fuzz":
        bring_home(run, fuzz_out or Path("vm-fuzz"), progress)
    if run.kselftest:
        failures += _kselftest(run, junit, progress)
    rcs = [(results / f"rc-{i}").read_text().strip() if (results / f"rc-{i}").exists() else "missing"
           for i in range(len(run.params))]
    ok = rc is not None and all(r in ("0", "4") for r in rcs) and not bad and not failures
    kept = f"; logs {results}" if keep or not ok else ""
    progress(f"guest exit codes {rcs}; dmesg problems {bad}; VM {secs:.1f} s; total {time.monotonic() - t0:.1f} s; "
             f"JUnit {junit}{kept}")
    if rc is None:
        progress(f"timeout: the VM did not finish within {timeout:.0f} s")
    if run.mode == "replay":
        return 1 if rc is None else replay_verdict(replay, results, dmesg, rcs, progress)  # type: ignore[arg-type]
    status = 1 if rc is None or any(r not in ("0", "4") for r in rcs) or bad or failures else 0
    if bundle is not None:
        from .bundle import write_vm_bundle
        write_vm_bundle(run, bundle, junit, dmesg, status, list(sys.argv), started)
        progress(f"bundle {bundle} (tsm-conformance bundle verify {bundle})")
    if status == 0 and not keep:  # logs stay behind only when something failed (or --keep asked for them)
        shutil.rmtree(results, ignore_errors=True)
    return status



def _kselftest(run: VmRun, junit: Path, progress) -> int:  # noqa: ANN001
    """One JUnit case for our wrapper run through the tree's kselftest runner, its KTAP checked by
    the tree's own parser (vm/kselftest.py)."""
    from .kselftest import verdict
    assert run.kselftest is not None
    problems, log = verdict(run.results, run.kselftest)
    root = ET.parse(junit).getroot()
    s = ET.SubElement(root, "testsuite", name="tsm-conformance vm kselftest", tests="1",
                      failures=str(int(bool(problems))))
    case = ET.SubElement(s, "testcase", classname="tsm.vm.kselftest", name="vm.kselftest.runner")
    if problems:
        ET.SubElement(case, "failure", message="; ".join(problems)[:500]).text = log
    ET.SubElement(s, "system-out").text = log
    ET.ElementTree(root).write(junit, encoding="utf-8", xml_declaration=True)
    progress("kselftest through the kernel tree's runner: " + ("; ".join(problems) if problems else "ok"))
    return int(bool(problems))


def _boot(cmd: list[str], results: Path, timeout: float, progress) -> tuple[int | None, float, str]:  # noqa: ANN001
    """Run the guest, passing its tsm-vm lines and kernel reports on as they come: (exit status or
    None on timeout, seconds, the console)."""
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
    return rc, secs, console


def bring_home(run: VmRun, out: Path, progress) -> None:  # noqa: ANN001
    """Copy each fuzz run's corpora and findings (with their kernel-log excerpts) to ``out``."""
    for i, params in enumerate(run.params):
        src = run.results / f"fuzz-{i}"
        if not src.is_dir():
            continue
        dst = out / f"run-{i}"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        (dst / "module-params.txt").write_text(f"{run.provider.name} {params}\n{run.tree.release}\n")
        log = run.results / f"fuzz-{i}.log"
        if log.exists():
            shutil.copy(log, dst / "fuzz.log")
        found = sorted(p.name for p in (dst / "artifacts").rglob("*.tsmseq")) if (dst / "artifacts").is_dir() else []
        progress(f"run {i}: corpora and findings in {dst}" + (f"; findings: {', '.join(found)}" if found else ""))


def replay_verdict(seqfile: Path, results: Path, dmesg: str, rcs: list[str], progress) -> int:  # noqa: ANN001
    """Whether the replay in the guest reproduced the finding: its steps as recorded and, for a
    kernel-log finding (header ``check: kernel.*``), a kernel report of the same kind and place."""
    from ..seq import load_tsmseq
    header = load_tsmseq(str(seqfile)).header
    log = results / "replay-0.log"
    if log.exists():
        print(log.read_text(errors="replace").rstrip())
    # a fuzz finding names its rule apart from the check (``check: fuzz.inblob``, ``rule: kernel.kasan``)
    rule = header.get("rule") or header.get("check", "")
    if not rule.startswith("kernel."):
        return 0 if rcs == ["0"] else 1
    line = header.get("kernel-report", "")  # the report's first line (fuzz worker); none for a taint finding
    bad = bad_dmesg(dmesg)
    seen = [ln for ln in bad if same_report(line, ln)] if line else bad  # a taint finding: any kernel report
    if seen:
        print(f"reproduced: {rule} observed {seen[0].strip()}")
        return 0
    print(f"not reproduced: {rule} ({line or header.get('observed', '')}) did not appear in the fresh guest's "
          "kernel log")
    return 1
