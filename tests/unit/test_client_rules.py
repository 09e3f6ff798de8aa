"""The client rules over synthetic operation traces (issue 17), and the calibration clients under
examples/clients/ (compiled and read, never run here)."""

from __future__ import annotations

import ast
import json
import py_compile
from pathlib import Path
from typing import Any

import pytest

from tsm_conformance.client import rules
from tsm_conformance.client.rules import RULES, RunFacts, judge, load_trace, parse_records
from tsm_conformance.inputs import InputError

CLIENT, JAIL = 4242, 7
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "clients"


class Trace:
    """Builds trace records the way the FUSE frontend writes them: a lookup before mkdir, close
    (FLUSH, the caller's pid) then release (pid 0) for every fd."""

    def __init__(self) -> None:
        self.recs: list[dict[str, Any]] = []
        self.t = 0.0
        self.next_fh = 3

    def add(self, op: str, path: str | None, result: int | str = 0, pid: int = CLIENT, **kw: Any) -> None:
        self.t += 0.001
        self.recs.append({"t": round(self.t, 6), "pid": pid, "op": op, "path": path, **kw, "result": result})

    def mkdir(self, name: str, result: int | str = 0, pid: int = CLIENT) -> Trace:
        self.add("getattr", name, "ENOENT" if result == 0 else 0, pid)
        if result != "EEXIST" or pid != CLIENT:
            self.add("mkdir", name, result, pid)
        return self

    def rmdir(self, name: str, result: int | str = 0, pid: int = CLIENT) -> Trace:
        self.add("getattr", name, 0 if result == 0 else result, pid)
        self.add("rmdir", name, result, pid)
        return self

    def open(self, path: str, flags: str = "O_RDONLY", pid: int = CLIENT) -> int:
        fh, self.next_fh = self.next_fh, self.next_fh + 1
        self.add("open", path, fh, pid, flags=flags)
        return fh

    def write(self, fh: int, path: str, data: bytes, pid: int = CLIENT, result: int | str | None = None) -> None:
        self.add("write", path, len(data) if result is None else result, pid, fh=fh, offset=0, size=len(data),
                 data=data[:256].hex(), sha1="0" * 40, len=len(data))

    def read(self, fh: int, path: str, n: int | str, pid: int = CLIENT) -> None:
        self.add("read", path, n, pid, fh=fh, offset=0, size=4096, **({"len": n} if isinstance(n, int) else {}))

    def close(self, fh: int, path: str, pid: int = CLIENT) -> None:
        self.add("close", path, 0, pid, fh=fh)
        self.add("release", path, 0, 0, fh=fh)

    def put(self, path: str, *chunks: bytes, pid: int = CLIENT) -> Trace:
        fh = self.open(path, "O_WRONLY", pid)
        for c in chunks:
            self.write(fh, path, c, pid)
        self.close(fh, path, pid)
        return self

    def get(self, path: str, n: int | str = 8, pid: int = CLIENT) -> Trace:
        fh = self.open(path, pid=pid)
        self.read(fh, path, n, pid)
        if isinstance(n, int) and n:
            self.read(fh, path, 0, pid)
        self.close(fh, path, pid)
        return self

    def report(self, name: str, nonce: bytes = b"n" * 64, size: int = 1184) -> Trace:
        """The reference client's attempt: generation, inblob, generation, outblob, generation."""
        self.get(f"{name}/generation", 2).put(f"{name}/inblob", nonce).get(f"{name}/generation", 2)
        return self.get(f"{name}/outblob", size).get(f"{name}/generation", 2)

    def records(self) -> list[rules.Record]:
        return parse_records(enumerate(self.recs, 1))


def facts(**kw: Any) -> RunFacts:
    return RunFacts(**{"exit_status": 0, "jail_pid": JAIL, "privlevel_floor": 1, "shows_privlevel": True, **kw})


def reference(name: str = "refclient-4242-abcd") -> Trace:
    t = Trace().mkdir(name)
    t.get(f"{name}/privlevel_floor", 2).put(f"{name}/privlevel", b"1\n")
    return t.report(name).rmdir(name)


def verdict(trace: Trace, rule: str, **kw: Any) -> rules.Verdict:
    return judge(trace.records(), facts(**kw))[rule]


def failed(trace: Trace, rule: str, *needles: str, **kw: Any) -> str:
    v = verdict(trace, rule, **kw)
    assert v.status == "fail", v
    text = "\n".join(v.evidence)
    assert f"pid {CLIENT}" in text and "t=" in text and "expected:" in text, text
    for n in needles:
        assert n in text, (n, text)
    return text


def exercised_not(trace: Trace, rule: str, why: str = "", **kw: Any) -> None:
    v = verdict(trace, rule, **kw)
    assert v.status == "not-exercised", v
    assert why in v.evidence[0], v.evidence


# ----------------------------------------------------------------------------- the whole set

def test_rules_are_named_and_described() -> None:
    assert all(r.startswith("client.") for r in RULES)
    assert all(desc and "\n" not in desc for _, desc in RULES.values())
    assert len(RULES) == 14


def test_reference_sequence_passes_every_rule() -> None:
    got = judge(reference().records(), facts())
    assert list(got) == list(RULES)
    assert {r: v.status for r, v in got.items() if v.status == "fail"} == {}
    assert got["client.cleanup.removes_own_items"].status == "pass"
    assert got["client.inblob.one_commit"].status == "pass"
    assert got["client.generation.bracketed"].status == "pass"
    assert got["client.privlevel.text_in_range"].status == "pass"
    # the fault-plan rules have nothing to judge without their plan
    for r in ("client.generation.moved_handled", "client.outblob.empty_rejected", "client.errors.busy_retried",
              "client.items.unique_name"):
        assert got[r].status == "not-exercised", r


def test_the_jails_own_operations_are_not_the_clients() -> None:
    t = reference().mkdir("foreign", pid=JAIL).put("foreign/inblob", b"x", pid=JAIL)
    assert all(v.status != "fail" for v in judge(t.records(), facts()).values())


# ----------------------------------------------------------------------------- item rules

def test_cleanup() -> None:
    t = Trace().mkdir("mine").report("mine")
    assert "never removed" in failed(t, "client.cleanup.removes_own_items", "mkdir(mine) -> 0")
    assert verdict(reference(), "client.cleanup.removes_own_items").status == "pass"
    exercised_not(Trace().mkdir("x", "ENXIO"), "client.cleanup.removes_own_items", "made no item")
    t.recs.append({"op": "#truncated"})
    exercised_not(t, "client.cleanup.removes_own_items", "truncated")


def test_foreign_untouched() -> None:
    t = Trace().mkdir("theirs", pid=JAIL).mkdir("mine").put("theirs/inblob", b"x").rmdir("theirs").rmdir("mine")
    text = failed(t, "client.items.foreign_untouched", "theirs", "write(theirs/inblob", "rmdir(theirs) -> 0")
    assert "mine" not in text.split("expected")[0].replace("mkdir(mine", "")
    # an rmdir of a name never made (voltage-verify's finally after a failed mkdir) is also a touch
    failed(Trace().mkdir("x", "ENXIO").rmdir("x", "ENOENT"), "client.items.foreign_untouched", "rmdir(x)")
    # listing the group and looking names up is not a touch
    ok = reference()
    ok.add("readdir", "")
    ok.add("getattr", "theirs", 0)
    assert verdict(ok, "client.items.foreign_untouched").status == "pass"
    exercised_not(Trace(), "client.items.foreign_untouched", "did nothing")


def test_unique_name_adopting_fails() -> None:
    # fixed name, mkdir(exist_ok=True): the VFS refuses after the lookup, so the trace shows the
    # lookup succeeding and the client going on inside the other owner's item
    t = Trace().mkdir("attest", pid=JAIL)
    t.add("getattr", "attest", 0)
    t.report("attest").rmdir("attest")
    failed(t, "client.items.unique_name", "getattr(attest) -> 0", "write(attest/inblob", "rmdir(attest)",
           fault_plan=rules.PLAN_FOREIGN_NAME, claimed=("attest",))
    # one misuse, one rule: the adopted item is not also client.items.foreign_untouched's
    assert verdict(t, "client.items.foreign_untouched", fault_plan=rules.PLAN_FOREIGN_NAME,
                   claimed=("attest",)).status != "fail"


def test_unique_name_another_name_passes() -> None:
    t = Trace().mkdir("refclient-1", pid=JAIL).mkdir("refclient-1", "EEXIST")
    t.recs[-1]["result"] = 0  # the lookup finds the name taken
    t.add("mkdir", "refclient-1", "EEXIST")
    t.mkdir("refclient-2").report("refclient-2").rmdir("refclient-2")
    assert verdict(t, "client.items.unique_name", fault_plan=rules.PLAN_FOREIGN_NAME).status == "pass"


def test_unique_name_not_exercised() -> None:
    exercised_not(reference(), "client.items.unique_name", "never met it", fault_plan=rules.PLAN_FOREIGN_NAME)


# ----------------------------------------------------------------------------- inblob

def test_one_commit_read_before_close() -> None:
    t = Trace().mkdir("r")
    t.get("r/generation", 2)
    fh = t.open("r/inblob", "O_WRONLY")
    t.write(fh, "r/inblob", b"a" * 32)
    t.write(fh, "r/inblob", b"b" * 32)
    t.get("r/generation", 2).get("r/outblob", "EINVAL")
    t.close(fh, "r/inblob")
    t.get("r/generation", 2).rmdir("r")
    failed(t, "client.inblob.one_commit", "still open", f"open(r/inblob, O_WRONLY) -> fh {fh}",
           "read(r/outblob")


def test_one_commit_no_inblob_at_all() -> None:
    t = Trace().mkdir("r").get("r/generation", 2).get("r/outblob", "EINVAL").get("r/generation", 2).rmdir("r")
    failed(t, "client.inblob.one_commit", "no inblob commit")


def test_one_commit_a_new_item_of_the_same_name_needs_its_own() -> None:
    t = reference("x").mkdir("x").get("x/generation", 2).get("x/outblob", "EINVAL").get("x/generation", 2).rmdir("x")
    failed(t, "client.inblob.one_commit", "no inblob commit")


def test_one_commit_passes_and_not_exercised() -> None:
    assert verdict(reference(), "client.inblob.one_commit").status == "pass"
    # release (pid 0, asynchronous) credited to the opener: a close alone is the commit point
    t = reference()
    assert any(r["op"] == "release" and r["pid"] == 0 for r in t.recs)
    exercised_not(Trace().mkdir("r").rmdir("r"), "client.inblob.one_commit", "no report")


def test_no_empty_write() -> None:
    t = Trace().mkdir("r").put("r/inblob", b"").report("r").rmdir("r")
    failed(t, "client.inblob.no_empty_write", "write(r/inblob", "0 bytes")
    assert verdict(reference(), "client.inblob.no_empty_write").status == "pass"
    exercised_not(Trace().mkdir("r").rmdir("r"), "client.inblob.no_empty_write", "no inblob")


# ----------------------------------------------------------------------------- generation

def test_bracketed_never() -> None:
    t = Trace().mkdir("r").put("r/inblob", b"n" * 64).get("r/outblob", 1184).rmdir("r")
    failed(t, "client.generation.bracketed", "never read r/generation", "read(r/outblob")


def test_bracketed_only_before() -> None:
    t = Trace().mkdir("r").get("r/generation", 2).put("r/inblob", b"n" * 64).get("r/outblob", 1184).rmdir("r")
    failed(t, "client.generation.bracketed", "only before")


def test_bracketed_passes_and_not_exercised() -> None:
    assert verdict(reference(), "client.generation.bracketed").status == "pass"
    exercised_not(Trace().mkdir("r").put("r/inblob", b"x").rmdir("r"), "client.generation.bracketed")


def test_moved_handled() -> None:
    plan = {"fault_plan": rules.PLAN_GENERATION_BUMP}
    once = Trace().mkdir("r").report("r").rmdir("r")
    failed(once, "client.generation.moved_handled", "without reading the report again", **plan)
    blind = Trace().mkdir("r").put("r/inblob", b"n" * 64).get("r/outblob", 1184).rmdir("r")
    # one misuse, one rule: never reading generation is client.generation.bracketed's
    exercised_not(blind, "client.generation.moved_handled", "bracketed", **plan)
    retried = Trace().mkdir("r").report("r").report("r").rmdir("r")
    assert verdict(retried, "client.generation.moved_handled", **plan).status == "pass"
    assert verdict(once, "client.generation.moved_handled", exit_status=1, **plan).status == "pass"
    exercised_not(once, "client.generation.moved_handled", "fault plan")
    exercised_not(Trace().mkdir("r").rmdir("r"), "client.generation.moved_handled", "no outblob", **plan)


# ----------------------------------------------------------------------------- outblob, errors

def test_empty_outblob() -> None:
    plan = {"fault_plan": rules.PLAN_EMPTY_OUTBLOB}
    t = Trace().mkdir("r").report("r", size=0).rmdir("r")
    failed(t, "client.outblob.empty_rejected", "empty", "read(r/outblob, fh", "-> 0", **plan)
    assert verdict(t, "client.outblob.empty_rejected", exit_status=1, **plan).status == "pass"
    again = Trace().mkdir("r").report("r", size=0).report("r").rmdir("r")
    assert verdict(again, "client.outblob.empty_rejected", **plan).status == "pass"
    exercised_not(reference(), "client.outblob.empty_rejected", "empty-outblob", **plan)


def test_busy_retried() -> None:
    plan = {"fault_plan": rules.PLAN_BUSY_ONCE}
    gave_up = Trace().mkdir("r").get("r/generation", 2).put("r/inblob", b"n" * 64).get("r/generation", 2)
    gave_up.get("r/outblob", "EBUSY").rmdir("r")
    failed(gave_up, "client.errors.busy_retried", "never read r/outblob again", "exited 1", "-> EBUSY",
           exit_status=1, **plan)
    t = Trace().mkdir("r").get("r/generation", 2).put("r/inblob", b"n" * 64).get("r/generation", 2)
    t.get("r/outblob", "EBUSY").get("r/outblob", 1184).get("r/generation", 2).rmdir("r")
    assert verdict(t, "client.errors.busy_retried", **plan).status == "pass"
    exercised_not(reference(), "client.errors.busy_retried", "busy-once", **plan)


def test_eintr_retried() -> None:
    plan = {"fault_plan": rules.PLAN_EINTR_ONCE}
    gave_up = Trace().mkdir("r").get("r/generation", 2).put("r/inblob", b"n" * 64).get("r/generation", 2)
    gave_up.get("r/outblob", "EINTR").rmdir("r")
    failed(gave_up, "client.errors.eintr_retried", "never read r/outblob again", "-> EINTR", exit_status=1, **plan)
    t = Trace().mkdir("r").get("r/generation", 2).put("r/inblob", b"n" * 64).get("r/generation", 2)
    t.get("r/outblob", "EINTR").get("r/outblob", 1184).get("r/generation", 2).rmdir("r")
    assert verdict(t, "client.errors.eintr_retried", **plan).status == "pass"
    exercised_not(reference(), "client.errors.eintr_retried", "eintr-once", **plan)


def test_a_failed_read_takes_no_snapshot() -> None:
    """EBUSY, then the same fd read again: the second read is the report (configfs asks again)."""
    t = Trace().mkdir("r").get("r/generation", 2).put("r/inblob", b"n" * 64).get("r/generation", 2)
    fh = t.open("r/outblob")
    t.read(fh, "r/outblob", "EBUSY")
    t.read(fh, "r/outblob", 0)
    t.close(fh, "r/outblob")
    t.get("r/generation", 2).rmdir("r")
    assert verdict(t, "client.errors.busy_retried").status == "pass"
    failed(t, "client.outblob.empty_rejected", "-> 0")
    assert verdict(t, "client.generation.bracketed").status == "pass"


def test_no_use_after_rmdir() -> None:
    t = Trace().mkdir("old").report("old").rmdir("old").mkdir("new")
    t.add("getattr", "old", "ENOENT")  # open(old/generation): the lookup of old fails
    t.rmdir("new")
    failed(t, "client.errors.no_use_after_rmdir", "used old after removing it", "rmdir(old) -> 0",
           "getattr(old) -> ENOENT")
    # an fd opened before the rmdir, written after it
    t2 = Trace().mkdir("r")
    fh = t2.open("r/inblob", "O_WRONLY")
    t2.rmdir("r")
    t2.write(fh, "r/inblob", b"n" * 64, result="ENOENT")
    failed(t2, "client.errors.no_use_after_rmdir", "write(r/inblob")
    # making the same name again is a new item
    again = reference("x")
    again.recs += reference("x").recs
    assert verdict(again, "client.errors.no_use_after_rmdir").status == "pass"
    exercised_not(Trace().mkdir("r"), "client.errors.no_use_after_rmdir", "removed no item")


# ----------------------------------------------------------------------------- privlevel

@pytest.mark.parametrize(("data", "floor", "why"), [
    (b"\x00", 1, "other than decimal text"),
    (b"\x01", 0, "other than decimal text"),
    (b"0", 1, "privlevel 0, outside [1, 3]"),
    (b"4\n", 0, "privlevel 4, outside [0, 3]"),
    (b"01", 0, "other than decimal text"),
    (b"1\n\n", 0, "other than decimal text"),
])
def test_privlevel_refused(data: bytes, floor: int, why: str) -> None:
    t = Trace().mkdir("r").put("r/privlevel", data).report("r").rmdir("r")
    failed(t, "client.privlevel.text_in_range", why, "write(r/privlevel", privlevel_floor=floor)


@pytest.mark.parametrize(("data", "floor"), [(b"1\n", 1), (b"3", 0), (b"2", 2), (b"0\n", 0)])
def test_privlevel_accepted(data: bytes, floor: int) -> None:
    t = Trace().mkdir("r").put("r/privlevel", data).report("r").rmdir("r")
    assert verdict(t, "client.privlevel.text_in_range", privlevel_floor=floor).status == "pass"


def test_privlevel_where_not_shown_and_not_exercised() -> None:
    failed(reference(), "client.privlevel.text_in_range", "does not show", shows_privlevel=False)
    exercised_not(Trace().mkdir("r").report("r").rmdir("r"), "client.privlevel.text_in_range")


# ----------------------------------------------------------------------------- bounded

def test_no_spin() -> None:
    t = Trace().mkdir("r").put("r/inblob", b"n" * 64)
    for _ in range(60):
        t.get("r/generation", 2)
    t.get("r/outblob", 1184).get("r/generation", 2).rmdir("r")
    failed(t, "client.bounded.no_spin", "61 times for 1 report read", "read(r/generation")
    assert verdict(reference(), "client.bounded.no_spin").status == "pass"
    exercised_not(Trace().mkdir("r").rmdir("r"), "client.bounded.no_spin")


def test_finishes() -> None:
    failed(reference(), "client.bounded.finishes", "did not finish", exit_status="timeout")
    assert verdict(reference(), "client.bounded.finishes", exit_status=3).status == "pass"


# ----------------------------------------------------------------------------- load_trace

def test_load_trace_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "trace.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in reference().recs) + '{"op":"#truncated"}\n')
    recs = load_trace(str(p))
    assert recs[0].op == "getattr" and recs[-1].op == "#truncated"
    assert [r.owner for r in recs if r.op == "release"] == [CLIENT] * 7


@pytest.mark.parametrize(("text", "why"), [
    ("not json\n", r"trace.jsonl:1: not a JSON object"),
    ('{"t": 0, "pid": 1, "op": "open", "path": "r", "result": 0}\n[1]\n', r":2: a record is a JSON object"),
    ('{"t": 0, "pid": 1, "op": "chmod", "path": "r", "result": 0}\n', r":1: unknown op 'chmod'"),
    ('{"t": 0, "pid": "1", "op": "open", "path": "r", "result": 0}\n', r":1: 'pid' must be an integer"),
    ('{"t": 0, "pid": 1, "op": "write", "path": "r", "result": 0, "data": "xyz"}\n', r"'data' must be hex"),
    ('{"t": 0, "pid": 1, "op": "read", "path": "r", "result": "oops"}\n', r"is not an errno name"),
])
def test_load_trace_refuses_malformed(tmp_path: Path, text: str, why: str) -> None:
    p = tmp_path / "trace.jsonl"
    p.write_text(text)
    with pytest.raises(InputError, match=why) as info:
        load_trace(str(p))
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


def test_load_trace_refuses_huge(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as f:
        f.truncate(65 << 20)  # sparse: refused by its size before it is read
    with pytest.raises(InputError, match=r"larger than .*client trace") as info:
        load_trace(str(big))
    assert "\n" not in str(info.value)
    many = tmp_path / "many.jsonl"
    many.write_text("{}\n" * 100_002)
    with pytest.raises(InputError, match=r"more than 100000 records") as info:
        load_trace(str(many))
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- the calibration clients

def _breaks(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    lines = [ln.removeprefix("breaks: ") for ln in doc.splitlines() if ln.startswith("breaks: ")]
    assert len(lines) == 1, (path.name, doc)
    return lines[0]


def test_calibration_clients_compile(tmp_path: Path) -> None:
    files = sorted(EXAMPLES.glob("*.py"))
    assert EXAMPLES / "reference.py" in files and len(files) >= 10
    for f in files:
        py_compile.compile(str(f), cfile=str(tmp_path / (f.name + "c")), doraise=True)


def test_each_wrong_client_breaks_one_named_rule_in_one_place() -> None:
    assert _breaks(EXAMPLES / "reference.py") == "nothing"
    ref = (EXAMPLES / "reference.py").read_text()
    assert '"/sys/kernel/config/tsm/report"' in ref and "--nonce" in ref
    seen = set()
    for f in sorted(EXAMPLES.glob("wrong_*.py")):
        rule = _breaks(f)
        assert rule in RULES, (f.name, rule)
        assert f.name == "wrong_" + rule.removeprefix("client.").replace(".", "_") + ".py", f.name
        tree = ast.parse(f.read_text())
        imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "reference"]
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
        # the reference's client with one step overridden: one subclass, a method or two (and a field)
        assert len(imports) == 1 and len(classes) == 1, f.name
        assert [ast.unparse(b) for b in classes[0].bases] == ["Client"], f.name
        steps = [n for n in classes[0].body if not isinstance(n, ast.Expr)]
        assert 1 <= len(steps) <= 3, (f.name, [ast.unparse(s)[:40] for s in steps])
        seen.add(rule)
    assert len(seen) == len(list(EXAMPLES.glob("wrong_*.py")))


def test_the_table_heads_each_column_with_the_whole_plan_name() -> None:
    from pathlib import Path

    from tsm_conformance.client.plans import PlanResult, table
    from tsm_conformance.client.rules import RULES, Verdict
    from tsm_conformance.client.runner import ClientRun
    rule = next(iter(RULES))
    results = [PlanResult(plan, ClientRun(0, 0.1, Path("t"), None, None), {rule: Verdict(status)})
               for plan, status in (("none", "pass"), ("generation-bump", "fail"))]
    lines = table(results)
    assert lines[0].split() == ["rule", "none", "generation-bump"]
    assert lines[1].split() == [rule, "pass", "FAIL"] and len({len(x) for x in lines}) == 1
