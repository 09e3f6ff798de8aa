"""Our kselftest wrapper run through a kernel tree's own kselftest runner in the guest, and its
KTAP checked with the tree's own parser (`vm --kselftest`): what a KernelCI/LAVA job does
(docs/kernelci.md).

The guest runs ``GUEST_SCRIPT TREE /run/tmp/kselftest > $R/kselftest.log 2>&1`` (vm/runner.py),
which stages our collection beside the tree's runner on the guest's tmpfs; the runner's KTAP is
copied to ``$R/kselftest/ktap.txt``.  ``verdict`` then checks, on the host:

* our own structural check: a KTAP/TAP version line, a plan, and a result line for our test that
  is ``ok`` without ``# SKIP`` (a skip in the VM means the wrapper found no configfs-tsm: the ABI
  the guest was booted to test);
* the tree's parser, ``tools/testing/kunit/kunit_parser.py`` (what ``kunit.py parse`` runs), called
  in a child Python with the tree's kunit directory on its path, never copied: once over the
  runner's document and once over our wrapper's own KTAP nested inside it (the runner prefixes
  the test's output with "# "; the parser strips such a prefix itself).  Any parse error it counts,
  a status other than passed, or a result that disagrees with the runner's line is a problem.
  A tree without the parser is said so in the log, and only the structural check applies.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

GUEST_SCRIPT = Path(__file__).resolve().parents[3] / "kselftest" / "kernel-runner.sh"

COLLECTION = "tsm_conformance"
#: the description kselftest's runner.sh gives our test: "selftests: $DIR: $BASENAME_TEST"
TEST_NAME = f"selftests: {COLLECTION}: {COLLECTION}.sh"
PARSER_DIR = Path("tools/testing/kunit")  # kunit_parser.py, and kunit_printer.py it imports

_VERSION = re.compile(r"(K?TAP) version (\d+)$")
_PLAN = re.compile(r"1\.\.(\d+)")
_RESULT = re.compile(r"(ok|not ok) (\d+) " + re.escape(TEST_NAME) + r"(?: # (.*))?$")
_INNER_SKIP = re.compile(r"# 1\.\.0 # SKIP ?(.*)$")

#: Run in a child Python: argv = [kunit dir, KTAP file].  Prints the parser's own report, then one
#: line "@@ JSON" with the tree it parsed.  Newer parsers take the printer as a second argument
#: (inspected, not assumed); a parser too old to have Test.counts says so in the JSON.
_DRIVER = r"""
import inspect, json, sys
sys.path.insert(0, sys.argv[1])
import kunit_parser
with open(sys.argv[2], errors="replace") as f:
    lines = f.read().splitlines()
args = [lines]
if "printer" in inspect.signature(kunit_parser.parse_run_tests).parameters:
    import kunit_printer
    args.append(kunit_printer.Printer(sys.stdout))
test = kunit_parser.parse_run_tests(*args)
def walk(t):
    if not hasattr(t, "counts"):
        raise SystemExit("@@ " + json.dumps({"unsupported": type(t).__name__}))
    return {"name": t.name.strip(), "status": t.status.name, "errors": t.counts.errors,
            "counts": str(t.counts), "subtests": [walk(s) for s in t.subtests]}
print("@@ " + json.dumps(walk(test)))
"""


def _read(results: Path) -> tuple[str, str, Path | None]:
    """(the runner's KTAP, the guest's kselftest.log, the KTAP file): ktap.txt, else the log."""
    log_file = results / "kselftest.log"
    log = log_file.read_text(errors="replace") if log_file.exists() else ""
    ktap_file = results / "kselftest" / "ktap.txt"
    if ktap_file.exists():
        return ktap_file.read_text(errors="replace"), log, ktap_file
    return log, log, log_file if log_file.exists() else None


#: what the tree's parser should make of the runner's document, by the runner's line for our test
EXPECTED = {"pass": "SUCCESS", "skip": "SKIPPED", "fail": "FAILURE"}


def structure(ktap: str) -> tuple[list[str], list[str], str]:
    """Our own check of the runner's document: (problems, our test's nested output with the
    runner's "# " prefix kept, what the runner's line says: pass, skip, fail, or "" for no line)."""
    lines = ktap.splitlines()
    top = [i for i, ln in enumerate(lines) if _VERSION.match(ln)]
    if not top:
        return ["no KTAP from the kselftest runner"], [], ""
    problems = []
    if not any(_PLAN.match(ln) for ln in lines[top[0] + 1:]):
        problems.append("the runner's KTAP has no plan")
    results = [(i, m) for i, ln in enumerate(lines) if (m := _RESULT.match(ln))]
    if not results:
        return problems + [f"no result line for {COLLECTION} (the runner did not run it, or was killed)"], [], ""
    if len(results) > 1:
        problems.append(f"{len(results)} result lines for {COLLECTION}")
    end, m = results[0]
    start = max((i for i, ln in enumerate(lines[:end]) if ln == f"# {TEST_NAME}"), default=top[0])
    nested = lines[start + 1:end]
    status, directive = m.group(1), (m.group(3) or "").strip()
    if status == "not ok":
        problems.append(f"{COLLECTION} failed ({directive or 'not ok'})")
        return problems, nested, "fail"
    if directive.upper().startswith("SKIP"):
        why = next((s.group(1) for ln in nested if (s := _INNER_SKIP.match(ln))), "") or "no reason given"
        problems.append(f"{COLLECTION} skipped: {why if len(why) <= 100 else why[:99] + '…'}")
        return problems, nested, "skip"
    if not any(ln.lstrip("# ").startswith("KTAP version") for ln in nested):
        # the runner said ok, but our test's own document never reached it (seen when the
        # collection sat on a 9p share in the guest): nothing was shown to have run
        problems.append(f"{COLLECTION} passed without its own KTAP in the runner's output")
    return problems, nested, "pass"


def kunit_parse(tree: Path, path: Path) -> tuple[dict | None, str]:
    """The tree's kunit_parser over the KTAP in ``path``: (its result tree, or None with the reason
    in the text; the parser's own output)."""
    kunit = tree / PARSER_DIR
    if not (kunit / "kunit_parser.py").is_file():
        return None, f"{tree} has no {PARSER_DIR / 'kunit_parser.py'}: only our structural check applies"
    try:
        p = subprocess.run([sys.executable, "-I", "-c", _DRIVER, str(kunit), str(path)],
                           capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None, "kunit_parser did not finish in 120 s"
    out = p.stdout.splitlines()
    result = [ln[3:] for ln in out if ln.startswith("@@ ")]
    text = "\n".join(ln for ln in out if not ln.startswith("@@ ")) + (f"\n{p.stderr}" if p.stderr else "")
    if p.returncode != 0 or not result:
        return None, f"kunit_parser failed (exit {p.returncode}):\n{text}"
    data = json.loads(result[-1])
    if "unsupported" in data:
        return None, f"{tree}'s kunit_parser is too old (no test counts): only our structural check applies"
    return data, text


def _judge(what: str, data: dict, want: str) -> list[str]:
    """Problems with one parse: parse errors, and a status other than ``want``."""
    problems = []
    if data["errors"]:
        problems.append(f"kunit_parser: {data['errors']} errors in {what}")
    if data["status"] != want:
        problems.append(f"kunit_parser: {what} {data['status']}, expected {want}")
    return problems


def verdict(results: Path, tree: Path) -> tuple[list[str], str]:
    """(problems, log): empty problems when the runner ran our test, it passed, and the tree's
    parser reads both the runner's KTAP and ours without an error."""
    ktap, log, path = _read(results)
    notes: list[str] = []
    problems, nested, said = structure(ktap)
    if path is not None and ktap.strip():
        outer, text = kunit_parse(tree, path)
        notes += [f"--- kunit_parser of {tree} on the runner's KTAP ({path.name}) ---", text]
        if outer is not None:
            problems += _judge("the runner's KTAP", outer, EXPECTED.get(said, "SUCCESS"))
            mine = [t for t in outer["subtests"] if t["name"] == TEST_NAME]
            if not mine and not any("no result line" in p for p in problems):
                problems.append(f"kunit_parser found no test named {TEST_NAME!r}")
        if outer is not None and nested:
            inner_file = path.parent / f"{path.name}.{COLLECTION}"
            inner_file.write_text("\n".join(nested) + "\n")
            inner, text = kunit_parse(tree, inner_file)
            notes += [f"--- kunit_parser on {COLLECTION}'s own KTAP (nested in the runner's) ---", text]
            if inner is not None and said == "pass":  # a failed, killed or skipped run: judged by its line
                problems += _judge(f"{COLLECTION}'s KTAP", inner, "SUCCESS")
    elif path is None:
        problems.append("the guest left no kselftest.log")
    body = log if log.strip() else ktap
    return problems, "\n".join([body.rstrip("\n"), *notes]) + "\n"
