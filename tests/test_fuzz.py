"""The fuzz targets, their oracles and the runner (tsm-conformance fuzz).

Plain-bytes runs on the faithful emulator (no atheris) must give no Finding; the runner must find
a seeded fault, write a minimised .tsmseq that `tsm-conformance replay` reproduces, and report it
in JUnit; `fuzz all` must pass on the faithful emulator.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tsm_conformance.cli import main as cli_main
from tsm_conformance.emulator import kstrtox
from tsm_fuzz import targets
from tsm_fuzz.api import Finding, TargetContext
from tsm_fuzz.targets.fuzz_privlevel import guid_ok, parse_uint

REPO = Path(__file__).resolve().parents[1]
# tsm_test: floor 1, every text attribute, measurement registers
SPEC_OF = {"privlevel": "tsm_test", "inblob": "tsm_test", "measurements": "tsm_test"}


def _inputs(name: str, n: int, seed: int = 5) -> list[bytes]:
    """Seeds, single-byte mutations of them, and random bytes."""
    seeds = [p.read_bytes() for p in sorted((REPO / "corpora" / name).glob("*"))] or [b""]
    rnd = random.Random(seed)
    out = list(seeds)
    while len(out) < n:
        if rnd.random() < 0.3:
            out.append(bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 90))))
            continue
        d = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 3)):
            if d:
                d[rnd.randrange(len(d))] = rnd.randrange(256)
        out.append(bytes(d))
    return out


@pytest.mark.parametrize("name", targets.names())
def test_target_quiet_on_faithful_emulator(name: str) -> None:
    mod = targets.load(name)
    if targets.unavailable(mod):
        pytest.skip(targets.unavailable(mod))
    spec = SPEC_OF.get(name, "sev_guest")
    one = mod.make(TargetContext(emulate=spec, prefix=f"tsmt-{name[:6]}-"))
    n = 200 if name == "sequences" else 300  # multi-threaded schedules cost ~5 ms each
    for data in _inputs(name, n):
        try:
            one(data)
        except Finding as f:
            pytest.fail(f"{name} on {spec}: false finding for {data!r}: {f}")


# kstrtouint(s, 0) facts from docs/abi.md §1a/§1c, checked against the target's own oracle.
@pytest.mark.parametrize(("text", "want"), [
    (b"3", 3), (b"0x3", 3), (b"03", 3), (b"+3", 3), (b"3\n", 3), (b"0X1f", 31), (b"0", 0),
    (b"4", 4), (b"-1", "EINVAL"), (b"", "EINVAL"), (b"3x", "EINVAL"), (b"08", "EINVAL"), (b"0x", "EINVAL"),
    (b"0xg", "EINVAL"), (b" 3", "EINVAL"), (b"3\n\n", "EINVAL"), (b"++3", "EINVAL"), (b"3\x00junk", 3),
    (b"4294967295", 4294967295), (b"4294967296", "ERANGE"), (b"18446744073709551616", "ERANGE"),
    (b"18446744073709551616x", "ERANGE"), (b"4294967296x", "EINVAL"),
])
def test_oracle_kstrtouint(text: bytes, want: object) -> None:
    assert parse_uint(text) == want


def test_oracle_agrees_with_emulator_kstrtox() -> None:
    """Two encodings of one grammar (the target's oracle never imports the emulator's)."""
    import errno
    rnd = random.Random(11)
    alphabet = b"0123456789abcdefxX+-\n\0 g"
    for _ in range(20000):
        s = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
        try:
            k: object = kstrtox.kstrtouint(s)
        except OSError as e:
            k = errno.errorcode[e.errno]
        assert parse_uint(s) == k, s


def test_oracle_guid() -> None:
    assert guid_ok(b"5a1e9c7e-9e1b-4d3c-a7f2-0123456789ab")
    assert guid_ok(b"5A1E9C7E-9E1B-4D3C-A7F2-0123456789AB\ntrailing")
    assert not guid_ok(b"00000000-0000-0000-0000-000000")  # the ABI doc's malformed null GUID
    assert not guid_ok(b"5a1e9c7e_9e1b-4d3c-a7f2-0123456789ab")
    assert not guid_ok(b"5a1e9c7e-9e1b-4d3c-a7f2-0123456789a\x00b")


def test_privlevel_target_finds_lenient_parser() -> None:
    one = targets.load("privlevel").make(TargetContext(emulate="tsm_test+kstrtouint-lenient"))
    with pytest.raises(Finding) as e:
        one(b"\x003x")
    seq = e.value.sequence
    assert seq is not None and seq.header["emulate"] == "tsm_test+kstrtouint-lenient"
    assert "EINVAL" in seq.header["expected"]


def test_inblob_target_finds_commit_on_write() -> None:
    one = targets.load("inblob").make(TargetContext(emulate="tsm_test+inblob-commit-on-write"))
    seed = (REPO / "corpora" / "inblob")
    with pytest.raises(Finding) as e:
        for p in sorted(seed.glob("*")):
            one(p.read_bytes())
    assert "expected" in e.value.observed


def test_fuzz_list_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["fuzz", "list"]) == 0
    out = capsys.readouterr().out
    assert "inblob" in out and "privlevel" in out and "parse_snp" in out
    assert cli_main(["fuzz", "inblb", "--max-time", "1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'inblob'" in err and "Traceback" not in err
    assert cli_main(["fuzz", "inblob", "--emulate", "sev_guest+nope", "--max-time", "1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_fuzz_argument_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's usage block (6 lines) is replaced by one line naming the bad option; exit 2."""
    for args, says in ((["inblob", "--max-time", "abc"], "argument --max-time: invalid float value: 'abc'"),
                       (["inblob", "--runs", "x"], "argument --runs: invalid int value: 'x'"),
                       (["inblob", "--jobs"], "argument --jobs: expected one argument"),
                       (["--bogus", "inblob"], "unrecognized arguments: --bogus"),
                       ([], "the following arguments are required: TARGET"),
                       (["inblob", "--emulate", "sev_guest", "--root", "/x"], "not allowed with argument"),
                       (["inblob", "--jobs", "0"], "--jobs must be at least 1"),
                       (["inblob", "--minimize-time", "-1"], "--minimize-time 0 or more")):
        assert cli_main(["fuzz", *args]) == 2, args
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tsm-conformance fuzz: ") and says in lines[0], (args, lines)
        assert "usage:" not in captured.err and "Traceback" not in captured.err and captured.out == "", args


def test_fuzz_without_the_extra_is_one_line(tmp_path: Path) -> None:
    """An install without the [fuzz] extra: atheris and junit_xml cannot be imported, here or in any
    process started from here (a sitecustomize's meta-path finder refuses them).  One line naming
    what to install, exit 2, no worker started (it printed a 'worker exited 1' error per target and
    then a junit_xml traceback).  Listing the targets needs no extra."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class NotInstalled:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in ('atheris', 'junit_xml'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NotInstalled())\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site), str(REPO / "conformance"), str(REPO / "fuzz"), os.environ.get("PYTHONPATH", "")]))
    for args in (["all"], ["inblob", "--junit", "f.xml"], ["parse_snp", "--no-instrument", "--runs", "5"]):
        p = subprocess.run([sys.executable, "-m", "tsm_conformance.cli", "fuzz", *args, "--max-time", "5"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, (args, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
        assert p.stdout == "" and "Traceback" not in p.stderr, (args, p.stdout[-2000:], p.stderr[-2000:])
        assert p.stderr.splitlines() == ["tsm-conformance fuzz: fuzzing needs the [fuzz] extra; atheris, junit-xml "
                                         "cannot be imported (pip install 'configfs-tsm-conformance[fuzz]')"], p.stderr
    assert sorted(os.listdir(tmp_path)) == ["site"]  # no artifacts, no JUnit file
    p = subprocess.run([sys.executable, "-m", "tsm_conformance.cli", "fuzz", "list"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "inblob" in p.stdout and p.stderr == "", p.stdout + p.stderr


def _tsm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tsm_conformance.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=240)


def test_fuzz_finds_inblob_truncate_and_replay_reproduces(tmp_path: Path) -> None:
    spec = "sev_guest+inblob-truncate"
    res = _tsm("fuzz", "inblob", "--emulate", spec, "--max-time", "20", "--junit", "f.xml",
               "--minimize-time", "3", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    case = ET.parse(tmp_path / "f.xml").getroot().find(".//testcase[@name='inblob']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None and "EFBIG" in failure.get("message", "")
    body = failure.text or ""
    assert body.startswith("# tsmseq 1") and "replay    : tsm-conformance replay" in body
    seq_file = next(line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("sequence  :"))
    rep = _tsm("replay", seq_file, "--emulate", spec, cwd=tmp_path)
    assert rep.returncode == 0 and "0 differ" in rep.stdout, rep.stdout + rep.stderr
    fixed = _tsm("replay", seq_file, "--emulate", "sev_guest", cwd=tmp_path)
    assert fixed.returncode == 1 and "EFBIG" in fixed.stdout


def test_fuzz_all_passes_on_faithful_emulator(tmp_path: Path) -> None:
    """Every target passes; ``measurements`` (sev_guest has no registers) does not fail the run: it
    is skipped with its reason where the runner hands targets the tree (``targets.unavailable``),
    or until then runs a function that does nothing, after printing the reason into its log."""
    res = _tsm("fuzz", "all", "--emulate", "sev_guest", "--max-time", "3", "--junit", "all.xml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    root = ET.parse(tmp_path / "all.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None and int(suite.get("tests", "0")) == len(targets.names())
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    case = root.find(".//testcase[@name='measurements']")
    assert case is not None
    skipped, log = case.find("skipped"), tmp_path / "fuzz-artifacts" / "measurements.log"
    reason = "sev_guest has no measurement registers"
    assert (skipped is not None and reason in skipped.get("message", "")) or \
        (log.exists() and reason in log.read_text()), res.stdout[-3000:]
