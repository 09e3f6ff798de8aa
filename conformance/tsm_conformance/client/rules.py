"""The client rules (``client.*``): what a client of the report ABI must and must not do, judged
from the operation trace of one run (frontend/trace.py's JSON lines) and a few facts about the run.

The rules follow docs/abi.md §1-§4 and §7-§8 and the findings in docs/clients-findings.md; each is
a function ``(records, facts) -> list[Violation] | NotExercised``.  ``judge`` runs them all and
gives one ``Verdict`` per rule: pass, fail (with evidence quoting the offending records, their pid
and time, and what was expected) or not-exercised (the run gave the rule nothing to judge).

What a FUSE trace can and cannot show (docs/fuse.md):

* the kernel looks a path up (``getattr``) before mkdir, open or rmdir; a mkdir of a name that
  exists is refused by the VFS after that lookup, so it may appear only as a successful
  ``getattr(NAME)``; an open of a missing path only as a ``getattr`` with ENOENT;
* ``release`` (the last close) is asynchronous and carries pid 0: it is credited to the process
  that opened the handle, and ``close`` (FLUSH, synchronous) ends an fd's use as far as ordering
  goes;
* a 0-byte ``write()`` may never reach the filesystem.

Operations by the jail pid (``RunFacts.jail_pid``) are the harness's own (foreign items made before
the client started); every other pid is the client's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..inputs import TRACE_MAX, TRACE_RECORDS, InputError, read_bounded, utf8

OPS = frozenset({"mkdir", "rmdir", "open", "read", "write", "close", "release", "readdir", "getattr"})
TRUNCATED = "#truncated"

#: The fault plans some rules need (RunFacts.fault_plan): the emulator's ``client_fault`` values
#: (emulator/params.py), and foreign-name, the runner's pre-made foreign items.
PLAN_GENERATION_BUMP = "generation-bump"
PLAN_EMPTY_OUTBLOB = "empty-outblob"
PLAN_BUSY_ONCE = "busy-once"
PLAN_ENXIO_READ = "enxio-read"
PLAN_FOREIGN_NAME = "foreign-name"
PLAN_EINTR_ONCE = "eintr-once"
PLAN_SLOW = "slow"
PLAN_NAME_TAKEN = "name-taken"

REPORT_BLOBS = ("outblob", "auxblob")
SPIN_BOUND = 50  # generation reads per report read


@dataclass(frozen=True)
class Record:
    """One trace line.  ``pid`` and ``path`` are as recorded; ``owner`` and ``where`` are resolved
    (a release's pid 0 and an fd operation's missing path come from the handle's open)."""

    line: int
    t: float
    pid: int
    op: str
    path: str | None
    result: int | str
    fh: int | None = None
    flags: str | None = None
    offset: int | None = None
    size: int | None = None
    data: str | None = None
    sha1: str | None = None
    len: int | None = None
    owner: int = 0
    where: str = ""

    @property
    def ok(self) -> bool:
        return isinstance(self.result, int)

    @property
    def item(self) -> str:
        return self.where.split("/", 1)[0]

    @property
    def attr(self) -> str:
        return self.where.split("/", 1)[1] if "/" in self.where else ""

    def data_bytes(self) -> bytes | None:
        return bytes.fromhex(self.data) if self.data is not None else None

    def text(self) -> str:
        """``line 7, t=0.0123 s, pid 42: write(r1/inblob, fh 3, 64 bytes b'...') -> 64``."""
        args = [self.where or '""']
        if self.fh is not None and self.op != "open":
            args.append(f"fh {self.fh}")
        if self.op == "open" and self.flags:
            args.append(self.flags)
        if self.op == "read" and self.size is not None:
            args.append(f"{self.size} bytes at {self.offset or 0}")
        if self.op == "write":
            n = self.len if self.len is not None else self.size
            shown = self.data_bytes()
            args.append(f"{n} byte{'' if n == 1 else 's'}" + (f" {_show(shown, n)}" if shown is not None else ""))
        result = self.result if not self.ok else (f"fh {self.result}" if self.op == "open" else self.result)
        who = f"pid {self.owner}" + (f" (recorded as pid {self.pid})" if self.pid != self.owner else "")
        return f"line {self.line}, t={self.t:.4f} s, {who}: {self.op}({', '.join(args)}) -> {result}"


def _show(data: bytes, n: int | None) -> str:
    cut = "..." if n is not None and n > len(data) else ""
    if data and all(32 <= b < 127 or b in (9, 10) for b in data) and len(data) <= 64:
        return repr(data.decode("ascii")) + cut
    return f"0x{data[:16].hex()}{'...' if len(data) > 16 or cut else ''}"


@dataclass(frozen=True)
class RunFacts:
    """What the run itself says: the client's exit status (an int, or ``"timeout"``), the jail's
    pid, the fault plan's name (None: no fault), and the provider's floor and privlevel file."""

    exit_status: int | str
    jail_pid: int
    fault_plan: str | None = None
    privlevel_floor: int = 0
    shows_privlevel: bool = True
    claimed: tuple[str, ...] = ()  # names the fault plan made first because the client uses them


@dataclass(frozen=True)
class Violation:
    rule: str
    evidence: str


@dataclass(frozen=True)
class NotExercised:
    why: str


@dataclass(frozen=True)
class Verdict:
    status: str  # "pass", "fail", "not-exercised"
    evidence: list[str] = field(default_factory=list)


RuleResult = list[Violation] | NotExercised
RuleFn = Callable[[list[Record], RunFacts], RuleResult]


# ----------------------------------------------------------------------------- loading

_INT_FIELDS = ("fh", "offset", "size", "len")
_STR_FIELDS = ("flags", "sha1")


def load_trace(path: str) -> list[Record]:
    """The records of a trace file, with ``owner``/``where`` resolved; ``InputError`` (a one-line
    ``ValueError``) for a file over the bounds or a malformed line.  A closing ``#truncated`` line
    is kept as a record of that op."""
    text = utf8(read_bounded(path, TRACE_MAX, "client trace"), path)
    lines = text.splitlines()
    if len(lines) > TRACE_RECORDS + 1:
        raise InputError(path, f"more than {TRACE_RECORDS} records, the bound for a client trace "
                               f"({len(lines)} lines)")
    raw = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(path, f"not a JSON object ({e.msg} at column {e.colno})", n) from None
        raw.append((n, obj))
    return parse_records(raw, path)


def parse_records(raw: Iterable[tuple[int, Any]], source: str = "trace") -> list[Record]:
    """Records from ``(line number, decoded JSON)`` pairs (load_trace's second half; tests build
    traces with it)."""
    out: list[Record] = []
    for n, obj in raw:
        if not isinstance(obj, dict):
            raise InputError(source, "a record is a JSON object", n)
        if obj.get("op") == TRUNCATED:
            out.append(Record(line=n, t=out[-1].t if out else 0.0, pid=0, op=TRUNCATED, path=None, result=0))
            continue
        out.append(_record(obj, n, source))
    return resolve(out)


def _record(obj: dict[str, Any], n: int, source: str) -> Record:
    def bad(why: str) -> InputError:
        return InputError(source, why, n)

    t, pid, op, path, result = (obj.get(k) for k in ("t", "pid", "op", "path", "result"))
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise bad(f"'t' must be a number of seconds, not {t!r}")
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise bad(f"'pid' must be an integer, not {pid!r}")
    if op not in OPS:
        raise bad(f"unknown op {op!r} (known: {', '.join(sorted(OPS))})")
    if path is not None and not isinstance(path, str):
        raise bad(f"'path' must be a string or null, not {path!r}")
    if isinstance(result, bool) or not isinstance(result, int | str):
        raise bad(f"'result' must be an integer or an errno name, not {result!r}")
    if isinstance(result, str) and not re.fullmatch(r"E[A-Z0-9]+|-?[0-9]+", result):
        raise bad(f"'result' {result!r} is not an errno name")
    extra: dict[str, Any] = {}
    for k in _INT_FIELDS:
        v = obj.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise bad(f"'{k}' must be an integer, not {v!r}")
        extra[k] = v
    for k in _STR_FIELDS:
        v = obj.get(k)
        if v is not None and not isinstance(v, str):
            raise bad(f"'{k}' must be a string, not {v!r}")
        extra[k] = v
    data = obj.get("data")
    if data is not None:
        if not isinstance(data, str) or len(data) > 512 or not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", data):
            raise bad("'data' must be hex of at most 256 bytes")
    return Record(line=n, t=float(t), pid=pid, op=op, path=path, result=result, data=data, **extra)


def resolve(records: list[Record]) -> list[Record]:
    """Each record's ``owner`` (the opener's pid for a handle's release) and ``where`` (the
    handle's path when the record has none)."""
    opened: dict[int, Record] = {}
    out = []
    for r in records:
        owner, where = r.pid, r.path
        if r.fh is not None and r.op != "open" and r.fh in opened:
            o = opened[r.fh]
            if owner == 0:
                owner = o.owner
            if where is None:
                where = o.where
        r = dataclasses.replace(r, owner=owner, where=where or "")
        if r.op == "open" and r.ok:
            opened[int(r.result)] = r
        out.append(r)
    return out


# ----------------------------------------------------------------------------- helpers

def _client(r: Record, facts: RunFacts) -> bool:
    return r.op != TRUNCATED and r.owner not in (facts.jail_pid, 0)


def _ops(records: list[Record], facts: RunFacts) -> list[Record]:
    return [r for r in records if _client(r, facts)]


def _states(records: list[Record], facts: RunFacts) -> list[str]:
    """For each record, the state of its item just before it: ``client`` (the client made it and
    it is there), ``removed`` (the client made it and removed it), ``foreign`` (someone else made
    it), or ``""`` (not seen made: absent, or there before the trace began)."""
    state: dict[str, str] = {}
    out = []
    for r in records:
        name = r.item
        out.append(state.get(name, "") if name else "")
        if not name or "/" in r.where or not r.ok:
            continue
        if r.op == "mkdir":
            state[name] = "client" if _client(r, facts) else "foreign"
        elif r.op == "rmdir":
            if _client(r, facts) and state.get(name) == "client":
                state[name] = "removed"
            else:
                state.pop(name, None)
    return out


def _is_lookup(r: Record) -> bool:
    """The VFS's lookup of the item itself (before a mkdir, rmdir or open), or a listing."""
    return r.op == "readdir" or (r.op == "getattr" and "/" not in r.where)


def _snapshots(records: list[Record], facts: RunFacts, attrs: tuple[str, ...]) -> list[tuple[Record, Record]]:
    """The first and last read of each client fd on one of ``attrs`` (one snapshot each, abi.md §3).
    A failed read takes no snapshot (the next read on the fd asks again): it is an entry of its own."""
    current: dict[tuple[int | None, str], int] = {}
    out: list[tuple[Record, Record]] = []
    for r in records:
        if r.op == "read" and _client(r, facts) and r.attr in attrs:
            key = (r.fh, r.where)
            if not r.ok:
                out.append((r, r))
            elif r.fh is None or key not in current:
                current[key] = len(out)
                out.append((r, r))
            else:
                out[current[key]] = (out[current[key]][0], r)
        elif r.op == "open" and r.ok:
            current.pop((int(r.result), r.where), None)
    return out


def _reads_of(records: list[Record], facts: RunFacts, attrs: tuple[str, ...]) -> list[Record]:
    """The first read of each client fd on one of ``attrs``."""
    return [first for first, _ in _snapshots(records, facts, attrs)]


def _generation_reads(records: list[Record], facts: RunFacts) -> list[Record]:
    return [r for r in _reads_of(records, facts, ("generation",)) if r.ok]


def _some(rs: list[Record], n: int = 5) -> list[Record]:
    """At most ``n`` records: the first of each kind of operation, in trace order (an open, a
    write, a read, an rmdir: what matters to the item's owner)."""
    kinds: dict[str, Record] = {}
    for r in rs:
        kinds.setdefault(r.op, r)
    return sorted(kinds.values(), key=lambda r: r.line)[:n]


def _v(rule: str, what: str, expected: str, recs: Iterable[Record] = ()) -> Violation:
    quoted = "".join(f"\n    {r.text()}" for r in recs)
    return Violation(rule, f"{what}{quoted}\n  expected: {expected}")


def _exit_text(facts: RunFacts) -> str:
    return "timed out" if facts.exit_status == "timeout" else f"exited {facts.exit_status}"


# ----------------------------------------------------------------------------- rules

def cleanup_removes_own_items(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.cleanup.removes_own_items"
    made: dict[str, Record] = {}
    for r, s in zip(records, _states(records, facts)):
        if _client(r, facts) and r.ok and "/" not in r.where and r.item:
            if r.op == "mkdir":
                made[r.item] = r
            elif r.op == "rmdir" and s == "client":
                made.pop(r.item, None)
    if not any(r.op == "mkdir" and r.ok and _client(r, facts) for r in records):
        return NotExercised("the client made no item")
    if any(r.op == TRUNCATED for r in records):
        return NotExercised("the trace was truncated, so its end is unknown")
    return [_v(rule, f"the client made {name} and never removed it", "an rmdir of every item the client made, "
               "before it exits (in a finally)", [r]) for name, r in made.items()]


def items_foreign_untouched(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.items.foreign_untouched"
    bad: dict[str, list[Record]] = {}
    touched = False
    # an item whose name the client chose itself and met taken is client.items.unique_name's case
    # (one misuse, one rule): here only items it reached otherwise
    own_names = set(_collisions(records, facts))
    for r, s in zip(records, _states(records, facts)):
        if not _client(r, facts) or not r.item:
            continue
        touched = True
        if s in ("client", "removed") or r.op in ("mkdir", "close", "release") or _is_lookup(r) \
                or r.item in own_names:
            continue
        bad.setdefault(r.item, []).append(r)
    if not touched:
        return NotExercised("the client did nothing to any item")
    return [_v(rule, f"the client operated on {name}, an item it did not make"
               + ("" if len(rs) <= 4 else f" ({len(rs)} operations, among them:)"),
               "no open, read, write or rmdir on an item the client did not make itself", _some(rs))
            for name, rs in bad.items()]


def _collisions(records: list[Record], facts: RunFacts, states: list[str] | None = None) -> dict[str, Record]:
    """Items the client met taken under a name it chose: its mkdir got EEXIST, or its lookup of
    the name found someone else's item (a mkdir of an existing name can show only as the lookup);
    name -> the first such record."""
    met: dict[str, Record] = {}
    for r, s in zip(records, states if states is not None else _states(records, facts)):
        if not _client(r, facts) or not r.item or s == "client":
            continue
        # a path walk looks every item up, so a lookup is a collision only for a name the plan
        # made because the client uses it (facts.claimed)
        collision = (r.op == "mkdir" and r.result == "EEXIST") or (r.item in facts.claimed and r.op == "getattr"
                                                                   and "/" not in r.where and r.ok)
        if collision and r.item not in met and s in ("foreign", ""):
            met[r.item] = r
    return met


def items_unique_name(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.items.unique_name"
    states = _states(records, facts)
    met = _collisions(records, facts, states)
    out = []
    for r, s in zip(records, states):
        if not _client(r, facts) or not r.item or s == "client":
            continue
        if r.item in met and r.line > met[r.item].line and r.op in ("open", "read", "write", "rmdir") \
                and s != "removed":
            out.append((r.item, r))
    if not met:
        why = "no foreign item had the client's name"
        if facts.fault_plan in (PLAN_FOREIGN_NAME, PLAN_NAME_TAKEN):
            why += f" (the fault plan {facts.fault_plan} made one, but the client never met it)"
        return NotExercised(why)
    by_name: dict[str, list[Record]] = {}
    for name, r in out:
        by_name.setdefault(name, []).append(r)
    return [_v(rule, f"{name} already existed (someone else's item) and the client used it as its own",
               "after EEXIST (or finding the name taken), another name or a failure; never a write, read "
               "or rmdir on the other owner's item", [met[name], *_some(rs)]) for name, rs in by_name.items()]


def inblob_one_commit(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.inblob.one_commit"
    committed: dict[str, Record] = {}
    wrote: dict[int, Record] = {}       # fh -> the inblob open with a write on it
    open_fds: dict[int, Record] = {}    # inblob fh -> its open, until close/release
    reads = set(id(r) for r in _reads_of(records, facts, REPORT_BLOBS))
    out = []
    for r in records:
        if not _client(r, facts):
            continue
        if r.op == "mkdir" and r.ok:
            committed.pop(r.item, None)  # a new item of that name has no inblob
        elif r.attr == "inblob":
            if r.op == "open" and r.ok:
                open_fds[int(r.result)] = r
            elif r.op == "write" and r.ok and r.fh is not None and r.fh in open_fds:
                wrote[r.fh] = open_fds[r.fh]
            elif r.op in ("close", "release") and r.fh is not None and r.fh in open_fds:
                del open_fds[r.fh]
                if r.fh in wrote:
                    del wrote[r.fh]
                    committed[r.item] = r
        elif id(r) in reads:
            pending = [o for o in open_fds.values() if o.item == r.item]
            if pending:
                out.append(_v(rule, f"the client read {r.where} while an inblob fd of {r.item} was still open",
                              "inblob written and closed (one commit) before the report is read",
                              [*pending, r]))
            elif r.item not in committed:
                out.append(_v(rule, f"the client read {r.where} with no inblob commit of its own before it",
                              "an inblob write and close on the item before its report is read", [r]))
    if not reads:
        return NotExercised("the client read no report")
    return out


def inblob_no_empty_write(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.inblob.no_empty_write"
    writes = [r for r in _ops(records, facts) if r.op == "write" and r.attr == "inblob"]
    if not writes:
        return NotExercised("the client wrote no inblob")
    empty = [r for r in writes if (r.len if r.len is not None else r.size) == 0]
    return [_v(rule, "the client wrote 0 bytes to inblob", "1 to 64 bytes of report data in one write "
               "(an empty write empties inblob at close, abi.md §3)", [r]) for r in empty]


def generation_bracketed(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.generation.bracketed"
    snaps = [(first, last) for first, last in _snapshots(records, facts, ("outblob",)) if first.ok]
    if not snaps:
        return NotExercised("the client read no outblob")
    gens: dict[str, list[int]] = {}
    for g in _generation_reads(records, facts):
        gens.setdefault(g.item, []).append(g.line)
    out = []
    for r, last in snaps:
        lines = gens.get(r.item, [])
        before = bool(lines) and lines[0] < r.line
        after = bool(lines) and lines[-1] > last.line
        if not before and not after:
            out.append(_v(rule, f"the client never read {r.item}/generation around this report read",
                          "generation read before the inblob commit (or before the read) and again after "
                          "the read, compared, so a concurrent writer is noticed (abi.md §7.6, §8.14)", [r]))
        elif not before or not after:
            out.append(_v(rule, f"the client read {r.item}/generation only {'after' if after else 'before'} "
                          "this report read", "a generation read on each side of the report read", [r]))
    return out


def generation_moved_handled(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.generation.moved_handled"
    if facts.fault_plan != PLAN_GENERATION_BUMP:
        return NotExercised(f"the fault plan is not {PLAN_GENERATION_BUMP}")
    reads = [r for r in _reads_of(records, facts, ("outblob",)) if r.ok]
    if not reads:
        return NotExercised("the client read no outblob, so the bump met nothing")
    if not _generation_reads(records, facts):  # one misuse, one rule: client.generation.bracketed
        return NotExercised("the client never reads generation (client.generation.bracketed says so)")
    if facts.exit_status != 0:
        return []
    first = reads[0]
    gens = [g for g in _generation_reads(records, facts) if g.line > first.line]
    retried = any(later.line > g.line for g in gens for later in reads[1:])
    if retried:
        return []
    what = ("the client exited 0 after a report read whose generation had moved, and never read generation "
            "after it" if not gens else "the client exited 0 after a report read whose generation had moved, "
            "without reading the report again after its generation read")
    return [_v(rule, what, "a retry (a new report read after a generation read shows the change) or a "
               "non-zero exit", [first, *gens[:2]])]


def outblob_empty_rejected(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.outblob.empty_rejected"
    reads = [r for r in _reads_of(records, facts, ("outblob",)) if r.ok]
    empty = [r for r in reads if r.result == 0]
    if not empty:
        return NotExercised("no outblob read by the client was empty"
                            + (f" (fault plan {PLAN_EMPTY_OUTBLOB})" if facts.fault_plan == PLAN_EMPTY_OUTBLOB
                               else ""))
    if facts.exit_status != 0 or any(r.line > empty[-1].line and r.result != 0 for r in reads):
        return []
    return [_v(rule, "the client exited 0 although its report was empty (0 bytes)",
               "an empty outblob refused: a non-zero exit, or a new report that is not empty", empty[:3])]


_DECIMAL = re.compile(rb"(0|[1-9][0-9]{0,9})\n?")


def privlevel_text_in_range(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.privlevel.text_in_range"
    recs = [r for r in _ops(records, facts) if r.attr == "privlevel" and (r.op == "write" or (
        r.op == "open" and r.flags is not None and not r.flags.startswith("O_RDONLY")))]
    if not recs:
        return NotExercised("the client wrote no privlevel")
    if not facts.shows_privlevel:
        return [_v(rule, "the client wrote privlevel, which this provider does not show",
                   "privlevel written only where the item has the file", recs[:3])]
    floor = facts.privlevel_floor
    out = []
    for r in recs:
        if r.op != "write":
            continue
        data, n = r.data_bytes(), (r.len if r.len is not None else r.size)
        m = _DECIMAL.fullmatch(data) if data is not None and n == len(data) else None
        if m is None:
            out.append(_v(rule, "the client wrote privlevel as something other than decimal text",
                          f"ASCII decimal text of a value in [{floor}, 3], optionally with a newline", [r]))
        elif not floor <= int(m.group(1)) <= 3:
            out.append(_v(rule, f"the client wrote privlevel {int(m.group(1))}, outside [{floor}, 3] (the "
                          f"provider's privlevel_floor is {floor})",
                          f"a value from privlevel_floor ({floor}) to 3 (abi.md §7.7)", [r]))
    return out


def errors_busy_retried(records: list[Record], facts: RunFacts) -> RuleResult:
    return _retried(records, facts, "EBUSY", "client.errors.busy_retried", PLAN_BUSY_ONCE,
                    "EBUSY: a report in flight, abi.md §5.2")


def errors_eintr_retried(records: list[Record], facts: RunFacts) -> RuleResult:
    return _retried(records, facts, "EINTR", "client.errors.eintr_retried", PLAN_EINTR_ONCE,
                    "EINTR: a signal while the provider waited for its host, abi.md §5.2")


def _retried(records: list[Record], facts: RunFacts, code: str, rule: str, plan: str, why: str) -> RuleResult:
    """A transient errno on an outblob read is followed by another read of the same item."""
    reads = [r for r in _ops(records, facts) if r.op == "read" and r.attr == "outblob"]
    hit = [r for r in reads if r.result == code]
    if not hit:
        return NotExercised(f"no outblob read by the client met {code}"
                            + (f" (fault plan {plan})" if facts.fault_plan == plan else ""))
    last_read = {r.item: r.line for r in reads}
    out = []
    for b in hit:
        if last_read[b.item] == b.line:
            out.append(_v(rule, f"after {code} the client never read {b.item}/outblob again, and "
                          f"{_exit_text(facts)}", f"another read of the same item after a short wait ({why})", [b]))
    if not out and facts.exit_status != 0:
        last = reads[-1]
        if last.result == code:
            out.append(_v(rule, f"the client gave up after {code} and {_exit_text(facts)}",
                          f"bounded retries on {code} until the report is read", [hit[0], last]))
    return out


def errors_no_use_after_rmdir(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.errors.no_use_after_rmdir"
    states = _states(records, facts)
    if not any(r.op == "rmdir" and r.ok and s == "client" and _client(r, facts) for r, s in zip(records, states)):
        return NotExercised("the client removed no item of its own")
    out: dict[str, list[Record]] = {}
    removed_by: dict[str, Record] = {}
    for i, (r, s) in enumerate(zip(records, states)):
        if not _client(r, facts) or s != "removed" or r.op in ("mkdir", "readdir", "close", "release"):
            if r.op == "rmdir" and r.ok and s == "client" and _client(r, facts):
                removed_by[r.item] = r
            continue
        if r.op == "getattr" and "/" not in r.where:
            nxt = next((x for x in records[i + 1:i + 64] if x.owner == r.owner and x.item == r.item), None)
            if nxt is not None and nxt.op == "mkdir":  # the lookup of a new mkdir of the name
                continue
        out.setdefault(r.item, []).append(r)
    return [_v(rule, f"the client used {name} after removing it", "nothing on an item after its rmdir "
               "(a retry makes a new item first)", [removed_by[name], *_some(rs)]) for name, rs in out.items()]


def bounded_no_spin(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.bounded.no_spin"
    gens = [r for r in _reads_of(records, facts, ("generation",))]
    if not gens:
        return NotExercised("the client read no generation")
    reports = len(_reads_of(records, facts, ("outblob",)))
    bound = SPIN_BOUND * max(reports, 1)
    if len(gens) <= bound:
        return []
    return [_v(rule, f"the client read generation {len(gens)} times for {reports} report read(s); the first "
               f"two and the one past the bound:", f"at most {SPIN_BOUND} generation reads per report read "
               "(a bounded wait, not a poll)", [gens[0], gens[1], gens[bound]])]


def bounded_finishes(records: list[Record], facts: RunFacts) -> RuleResult:
    rule = "client.bounded.finishes"
    if facts.exit_status != "timeout":
        return []
    last = [r for r in records if _client(r, facts)][-1:]
    return [_v(rule, "the client did not finish before the run's timeout; its last operation:",
               "a client that ends by itself: bounded retries and waits", last)]


RULES: dict[str, tuple[RuleFn, str]] = {
    "client.cleanup.removes_own_items": (cleanup_removes_own_items,
                                         "every item the client made is removed by the end"),
    "client.items.foreign_untouched": (items_foreign_untouched,
                                       "no operation on an item the client did not make"),
    "client.items.unique_name": (items_unique_name,
                                 "a name someone else already has is not adopted"),
    "client.inblob.one_commit": (inblob_one_commit,
                                 "each report read follows an inblob write and close, no inblob fd open"),
    "client.inblob.no_empty_write": (inblob_no_empty_write, "never a 0-byte write to inblob"),
    "client.generation.bracketed": (generation_bracketed,
                                    "generation read before and after each outblob read"),
    "client.generation.moved_handled": (generation_moved_handled,
                                        "a generation that moved under the read means a retry or a failure"),
    "client.outblob.empty_rejected": (outblob_empty_rejected, "an empty outblob is not a success"),
    "client.privlevel.text_in_range": (privlevel_text_in_range,
                                       "privlevel written as decimal text in [floor, 3], only where shown"),
    "client.errors.busy_retried": (errors_busy_retried, "EBUSY on outblob is retried on the same item"),
    "client.errors.eintr_retried": (errors_eintr_retried, "EINTR on outblob is retried on the same item"),
    "client.errors.no_use_after_rmdir": (errors_no_use_after_rmdir, "nothing on an item after its rmdir"),
    "client.bounded.no_spin": (bounded_no_spin, f"at most {SPIN_BOUND} generation reads per report read"),
    "client.bounded.finishes": (bounded_finishes, "the client finishes before the run's timeout"),
}


def judge(records: list[Record], facts: RunFacts) -> dict[str, Verdict]:
    """One verdict per rule, in ``RULES`` order."""
    out = {}
    for rule_id, (fn, _) in RULES.items():
        res = fn(records, facts)
        if isinstance(res, NotExercised):
            out[rule_id] = Verdict("not-exercised", [res.why])
        else:
            out[rule_id] = Verdict("fail" if res else "pass", [v.evidence for v in res])
    return out
