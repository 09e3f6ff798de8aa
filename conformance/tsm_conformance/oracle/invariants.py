"""Rules over an executed trace (``seq.Done`` steps, single- or multi-threaded), from the profile
and docs/abi.md §1-§4 and §7.

Single-threaded traces are held to the ``SpecModel`` step by step.  In multi-threaded traces the
order of steps of different threads is unknown beyond their timings, so the rules are the ones
that hold under every interleaving consistent with those timings:

* ``model.*``: items only one thread touches are still held to the SpecModel;
* ``errno.allowed``: every errno is one the profile allows for that operation in some state;
* ``mkdir.one_winner``: two mkdirs of one name cannot both succeed without an rmdir between;
* ``generation.count``: a generation read lies between the accepted writes that had finished
  before it started and those that had started before it ended (writes: inblob commits at
  close, accepted text stores, and every service_guid/service_provider store, docs/abi.md §2, §8.5);
* ``report.binding``: generation g, outblob, generation g on one thread -> the outblob carries
  the nonce committed at g (docs/abi.md §2, §7.6), and two such reads at g are identical (the cache);
* ``listdir.items``: listdir(.) shows exactly the items made and not removed, when no mkdir or
  rmdir of that name overlaps it;
* ``report.length``: a whole outblob read is as long as the report says it is; under a
  concurrent writer this is the known size-then-fill kernel bug (docs/abi.md §8.14) and is marked so;
* ``time.bound``: no step takes longer than the bound (a hang is a failure, not a wait).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter

from ..profile.model import Profile
from ..seq import HUNG, PATH_OPS, Done, Op
from .lengths import declared_length
from .model import SpecModel
from .rules import inblob_marks, inblob_put, text_store_bumps

SIZE_FILL = ("size-then-fill race: configfs sizes a binary read and fills it under separate lock "
             "acquisitions (docs/abi.md §8.14; no upstream fix)")


@dataclass(frozen=True)
class Violation:
    rule: str
    expected: str
    where: str  # the profile's file:line and key that sets the expectation
    observed: str
    step: int  # index of the step in the trace (file order); -1: after the trace
    known: str | None = None  # a known kernel bug this matches: report it, do not fail on it
    related: tuple[int, ...] = ()  # other steps that make up the evidence

    def __str__(self) -> str:
        tag = f" [known: {self.known.split(':')[0]}]" if self.known else ""
        return (f"{self.rule}{tag} at step {self.step + 1}: expected {self.expected}; "
                f"observed {self.observed} ({self.where})")


def _shown(v: object) -> str:
    if isinstance(v, bytes):
        return repr(v) if len(v) <= 24 else f"<{len(v)} bytes>"
    return str(v)


class Trace:
    """A trace with what the rules need precomputed (they ask again and again, and judging a fuzz
    input's trace should cost less than running it): fd -> path, the threads; the rest (each step's
    item, the steps of each item, successful mkdirs and rmdirs by name) at the first asking."""

    def __init__(self, steps: list[Done]) -> None:
        self.steps = sorted(steps, key=attrgetter("index"))
        self.fd_path: dict[str, str] = {}
        self.fd_name: dict[int, str] = {}
        self.threads: set[str] = set()
        fd_path, fd_name, threads = self.fd_path, self.fd_name, self.threads
        # one pass (the cost of a fuzz input's judging): an fd is used after the open that named it
        for d in self.steps:
            if d.thread is not None:
                threads.add(d.thread)
            if d.op.name == "open":
                fd_name[d.index] = fd = f"fd{len(fd_name)}"
                r = d.result
                if r.__class__ is str and r[:2] == "fd":
                    fd_path[fd] = str(d.op.args[0])
        self.writes: dict[str, list[_Write] | None] = {}  # _writes per item name
        self.gen_reads: dict[str, list[tuple[Done, int]]] = {}  # _gen_reads per item name

    def path(self, d: Done) -> str:
        """The attribute path an op acts on (through its fd), or the op's own path."""
        if len(self.threads) > 1:
            return self._paths[d.index]  # (the multi-threaded rules ask again and again)
        return self._path(d)

    def _path(self, d: Done) -> str:
        op, args = d.op.name, d.op.args
        if op in PATH_OPS:
            return str(args[0]) if args else "."
        return "" if op == "param" else self.fd_path.get(str(args[0]), "")

    def item(self, d: Done) -> str:
        return self._items[d.index]

    # What only the rules of multi-threaded traces ask, computed at the first asking.
    @cached_property
    def _paths(self) -> dict[int, str]:
        """Step index -> ``path``."""
        return {d.index: self._path(d) for d in self.steps}

    @cached_property
    def _items(self) -> dict[int, str]:
        """Step index -> the item it acts on ("" for the group and param)."""
        paths = self._paths
        return {i: p.partition("/")[0] for i, p in paths.items()}

    @cached_property
    def by_item(self) -> dict[str, list[Done]]:
        """Item name -> its steps, in file order."""
        out: dict[str, list[Done]] = {}
        for d in self.steps:
            out.setdefault(self._items[d.index], []).append(d)
        return out

    @cached_property
    def names(self) -> list[str]:
        """The items the trace touches, sorted."""
        return sorted(n for n in self.by_item if n not in ("", "."))

    @cached_property
    def made(self) -> list[str]:
        """The item names the trace mkdirs (successfully or not), sorted."""
        return sorted({str(d.op.args[0]) for d in self.steps if d.op.name == "mkdir" and "/" not in str(d.op.args[0])})

    @cached_property
    def events(self) -> dict[str, list[Done]]:
        """Path -> its successful mkdirs and rmdirs, in file order (``_events``)."""
        out: dict[str, list[Done]] = {}
        for d in self.steps:
            if d.op.name in ("mkdir", "rmdir") and d.result == 0:
                out.setdefault(str(d.op.args[0]), []).append(d)
        return out


def check_trace(profile: Profile, steps: list[Done], attributes: frozenset[str] | set[str],
                floor: int | None, provider: str | None = None, time_bound: float = 10.0) -> list[Violation]:
    """Every rule the trace breaks (empty: none)."""
    t = Trace(steps)
    out: list[Violation] = []
    for d in [d for d in t.steps if d.end - d.start > time_bound or d.result == HUNG]:  # (one pass, few found)
        took = "still running at the deadline" if d.result == HUNG else f"took {d.end - d.start:.2f} s"
        out.append(Violation("time.bound", f"{d.op} returns within {time_bound:g} s", profile.path, took,
                             d.index))
    if len(t.threads) <= 1:
        out += _model(profile, t, t.steps, attributes, floor, provider)
    else:
        owners: dict[str, set[str | None]] = {}
        items = t._items
        for d in t.steps:
            if d.op.name not in ("listdir", "param") or (d.op.args and str(d.op.args[0]) not in ("", ".")):
                ths = owners.get(items[d.index])
                if ths is None:
                    owners[items[d.index]] = {d.thread}
                else:
                    ths.add(d.thread)
        for th in sorted(t.threads, key=str):
            mine = {n for n, ths in owners.items() if ths <= {th, None} and th in ths}
            if not mine:
                continue
            sub = [d for d in t.steps if (d.thread is None or d.thread == th) and d.op.name != "param"
                   and items[d.index] in mine]
            if sub:
                out += _model(profile, t, sub, attributes, floor, provider)
        out += _errnos(profile, t)
        out += _one_winner(profile, t)
        out += _generation(profile, t)
        out += _binding(profile, t)
        out += _listdir(profile, t)
    out += _lengths(profile, t)
    return out


def _model(profile: Profile, t: Trace, steps: list[Done], attributes: frozenset[str] | set[str],
           floor: int | None, provider: str | None) -> list[Violation]:
    m = SpecModel(profile, attributes, floor, provider)
    out = []
    step, fds, threaded = m.step, t.fd_name.get, len(t.threads) > 1
    for d in steps:
        if d.result == HUNG:
            break
        if threaded and d.op.name == "listdir" and d.thread is not None and \
                (not d.op.args or str(d.op.args[0]) in ("", ".")):
            continue  # other threads' items show up too
        want, why = step(d.op, d.result, fds(d.index))
        if why:
            out.append(Violation(f"model.{d.op.name}", f"{d.op} -> {want.text}",
                                 f"{profile.where(want.keypath)} {want.keypath}".strip(),
                                 f"{_shown(d.result)} ({why})", d.index))
            break  # later predictions build on a state that no longer matches the tree
    return out


# ---------------------------------------------------------------------------- errno sets
def _allowed(profile: Profile, t: Trace, d: Done) -> set[str]:
    def e(*conds: str) -> set[str]:
        return {x for c in conds if c in profile.errors for x in profile.errno(c)}
    name = d.op.name
    if name == "mkdir":
        return {"ENOENT", "EEXIST"} | e("mkdir_duplicate", "mkdir_inside_item")
    if name == "rmdir":
        return {"ENOENT", "ENOTDIR"} | e("rmdir_report_group")
    if name in ("listdir", "stat"):
        return {"ENOENT"}
    if name == "param":
        return {"EOPNOTSUPP"}
    if name == "open":
        return {"ENOENT"} | e("open_wrong_direction", "access_after_rmdir")
    attr = t.path(d).partition("/")[2]
    a = profile.attributes.get(attr)
    base = {"EBADF"} | e("access_after_rmdir")
    if name == "close":
        return {"EBADF"}
    if name == "lseek":
        return base | {"EINVAL"} | e("lseek_binary")
    binary = a is not None and a.kind == "binary"
    if name in ("read", "pread"):
        if not binary:
            return base
        extra = {x for x in (profile.inblob_rejected_length_errno, profile.service_provider_rejected_errno) if x}
        return base | extra | e("read_before_inblob", "blob_over_limit")
    if binary:
        return base | e("inblob_oversize", "write_zero_length")
    return base | e("write_zero_length", "privlevel_invalid", "privlevel_out_of_range", "privlevel_overflow",
                    "service_guid_invalid", "service_manifest_version_invalid")


#: (id of the profile, op, attribute) -> (the profile, what _allowed says): the same few sets for
#: every trace of a run (the profile is kept, so its id is not reused meanwhile)
_ALLOWED: dict[tuple[int, str, str], tuple[Profile, set[str]]] = {}


def _errnos(profile: Profile, t: Trace) -> list[Violation]:
    out = []
    for d in t.steps:
        r = d.result
        if isinstance(r, str) and r.startswith("E") and r != HUNG:
            key = (id(profile), d.op.name, t.path(d).partition("/")[2])
            hit = _ALLOWED.get(key)
            if hit is None or hit[0] is not profile:
                if len(_ALLOWED) >= 1024:
                    _ALLOWED.clear()
                hit = _ALLOWED[key] = (profile, _allowed(profile, t, d))
            ok = hit[1]
            if r not in ok:
                out.append(Violation("errno.allowed", f"{d.op} -> success or one of {{{', '.join(sorted(ok))}}}",
                                     f"{profile.where('errors')} errors", r, d.index))
    return out


# ---------------------------------------------------------------------------- mkdir / listdir
def _events(t: Trace, name: str) -> list[Done]:
    """Successful mkdirs and rmdirs of ``name``, in file order."""
    return t.events.get(name, [])


def _one_winner(profile: Profile, t: Trace) -> list[Violation]:
    out = []
    for n in t.made:
        ev = _events(t, n)
        made = [d for d in ev if d.op.name == "mkdir"]
        gone = [d for d in ev if d.op.name == "rmdir"]
        for i, a in enumerate(made):
            for b in made[i + 1:]:
                # both succeeded: some successful rmdir must fit between them, in one order or the other
                if not any((r.end >= a.start and r.start <= b.end) or (r.end >= b.start and r.start <= a.end)
                           for r in gone):
                    out.append(Violation("mkdir.one_winner", f"mkdir({n}) succeeds once until an rmdir",
                                         f"{profile.where('errors.mkdir_duplicate')} errors.mkdir_duplicate",
                                         f"steps {a.index + 1} and {b.index + 1} both -> 0", b.index,
                                         related=(a.index,)))
                    return out
    return out


def _listdir(profile: Profile, t: Trace) -> list[Violation]:
    out = []
    names = t.made
    for d in t.steps:
        if (d.op.name != "listdir" or (d.op.args and str(d.op.args[0]) not in ("", "."))
                or not isinstance(d.result, list)):
            continue
        for n in names:
            ev = _events(t, n)
            if any(e.start <= d.end and e.end >= d.start for e in ev):
                continue  # racing: either answer is right
            before = [e for e in ev if e.end < d.start]
            last = max(before, key=lambda e: e.end) if before else None
            if last is not None and any(e.end > last.start and e.op.name != last.op.name for e in before):
                continue  # the last two changes overlap each other: either may have come last
            present = last is not None and last.op.name == "mkdir"
            if present != (n in d.result):
                out.append(Violation("listdir.items", f"listdir(.) {'shows' if present else 'omits'} {n}",
                                     f"{profile.where('errors.mkdir_duplicate')} (docs/abi.md §4)",
                                     _shown(d.result), d.index))
    return out


# ---------------------------------------------------------------------------- generation
@dataclass
class _Write:
    thread: str | None
    start: float
    end: float
    nonce: bytes | None  # the committed inblob for inblob commits, else None
    index: int


class _Pending:
    """An inblob fd's buffered bytes and position (``rules.inblob_put``)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0


def _writes(profile: Profile, t: Trace, name: str) -> list[_Write] | None:
    """Accepted state changes of item `name` in each thread's program order; None when the name is
    made more than once or removed (instances would have to be told apart)."""
    if name not in t.writes:
        t.writes[name] = _writes_of(profile, t, name)
    return t.writes[name]


def _writes_of(profile: Profile, t: Trace, name: str) -> list[_Write] | None:
    ev = _events(t, name)
    if [e.op.name for e in ev] != ["mkdir"]:
        return None
    fds: dict[str, _Pending] = {}
    out: list[_Write] = []
    for d in t.by_item.get(name, ()):
        if d.op.name in ("mkdir", "rmdir", "open", "stat", "listdir"):
            continue
        fd = str(d.op.args[0])
        attr = t.path(d).partition("/")[2]
        if d.op.name in ("write", "pwrite") and attr == "inblob":
            if inblob_marks(profile, d.result):  # EFBIG/EFAULT mark the fd too (§3)
                p = fds.setdefault(fd, _Pending())
                pos = int(d.op.args[2]) if d.op.name == "pwrite" else p.pos
                inblob_put(p.buf, pos, bytes(d.op.args[1]), profile.limits_inblob_max)
                if d.op.name == "write" and type(d.result) is int:
                    p.pos += d.result
        elif d.op.name == "close" and attr == "inblob" and fd in fds:
            out.append(_Write(d.thread, d.start, d.end, bytes(fds.pop(fd).buf), d.index))
        elif d.op.name in ("write", "pwrite") and text_store_bumps(profile, attr, bytes(d.op.args[1]), d.result):
            out.append(_Write(d.thread, d.start, d.end, None, d.index))
    return out


def _gen_reads(t: Trace, name: str) -> list[tuple[Done, int]]:
    """First reads of generation fds of `name` that returned the whole ``"%d\\n"``."""
    if name not in t.gen_reads:
        t.gen_reads[name] = _gen_reads_of(t, name)
    return t.gen_reads[name]


def _gen_reads_of(t: Trace, name: str) -> list[tuple[Done, int]]:
    seen: set[str] = set()
    out = []
    path = f"{name}/generation"
    for d in t.by_item.get(name, ()):
        if d.op.name == "read" and t.path(d) == path and str(d.op.args[0]) not in seen:
            seen.add(str(d.op.args[0]))
            r = d.result
            if isinstance(r, bytes) and r.endswith(b"\n") and r[:-1].isdigit():
                out.append((d, int(r)))
    return out


def _generation(profile: Profile, t: Trace) -> list[Violation]:
    out = []
    for name in t.names:
        w = _writes(profile, t, name)
        if w is None:
            continue
        for d, g in _gen_reads(t, name):
            lo = profile.generation_initial + sum(1 for x in w if x.end < d.start)
            hi = profile.generation_initial + sum(1 for x in w if x.start < d.end)
            if not lo <= g <= hi:
                want = str(lo) if lo == hi else f"{lo}..{hi}"
                out.append(Violation("generation.count", f"generation of {name} = {want} (accepted writes so far)",
                                     f"{profile.where('generation')} generation", str(g), d.index))
                break
    return out


def _binding(profile: Profile, t: Trace) -> list[Violation]:
    fld = profile.report_nonce
    if fld is None:
        return []
    out = []
    threads = sorted({d.thread for d in t.steps}, key=str)
    for name in t.names:
        w = _writes(profile, t, name)
        if w is None or (profile.service_attestation and any(
                t.path(d) == f"{name}/service_provider" for d in t.by_item[name])):
            continue  # an SVSM report binds SHA-512(nonce || manifest), not the nonce
        writers = {x.thread for x in w}
        at_gen: dict[int, bytes] | None = None
        if len(writers) <= 1:  # one writer: its k-th accepted write made generation initial + k
            at_gen, cur = {profile.generation_initial: b""}, b""
            for k, x in enumerate(w, start=1):
                cur = x.nonce if x.nonce is not None else cur
                at_gen[profile.generation_initial + k] = cur
        candidates = {x.nonce for x in w if x.nonce}
        seen: dict[int, tuple[bytes, int]] = {}
        for th in threads:
            for g, blob, d in _brackets(t, name, th):
                want = at_gen.get(g) if at_gen is not None else None
                ok = _carries(fld.offset, fld.length, blob, want) if want is not None else \
                    any(_carries(fld.offset, fld.length, blob, c) for c in candidates) or not candidates
                if not ok:
                    out.append(Violation("report.binding", f"the outblob read between two generation reads of "
                                         f"{g} carries the nonce committed at generation {g}",
                                         f"{profile.where('report.nonce')} report.nonce",
                                         "the nonce of another commit or item", d.index))
                    return out
                if g in seen and seen[g][0] != blob:
                    out.append(Violation("report.binding", f"reads of {name}/outblob at generation {g} are identical "
                                         "(one cached report per generation)",
                                         f"{profile.where('report.fresh_per_generation')} report",
                                         f"differs from step {seen[g][1] + 1}", d.index, related=(seen[g][1],)))
                    return out
                seen.setdefault(g, (blob, d.index))
    return out


def _carries(offset: int | None, length: int, blob: bytes, nonce: bytes) -> bool:
    want = nonce.ljust(length, b"\0")[:length]
    return want in blob if offset is None else blob[offset:offset + length] == want


def _whole_reads(t: Trace, name: str, thread: str | None, attr: str = "outblob") -> dict[int, bytes]:
    """Step index -> blob for outblob fds whose first read at offset 0 returned the whole blob."""
    seen: set[str] = set()
    out = {}
    path = f"{name}/{attr}"
    for d in t.by_item.get(name, ()):
        if d.thread == thread and d.op.name == "read" and t.path(d) == path:
            fd = str(d.op.args[0])
            if fd not in seen:
                seen.add(fd)
                if isinstance(d.result, bytes) and len(d.result) < int(d.op.args[1]):
                    out[d.index] = d.result
    return out


def _brackets(t: Trace, name: str, thread: str | None) -> list[tuple[int, bytes, Done]]:
    """(generation, blob, read step) for gen read g, whole outblob read, gen read g on one thread."""
    gens = [(d, g) for d, g in _gen_reads(t, name) if d.thread == thread]
    if len(gens) < 2:
        return []
    reads = _whole_reads(t, name, thread)
    by_index = {d.index: d for d in t.by_item[name]}
    out = []
    for (d1, g1), (d2, g2) in zip(gens, gens[1:]):
        if g1 != g2:
            continue
        for i, blob in reads.items():
            if d1.index < i < d2.index:
                out.append((g1, blob, by_index[i]))
    return out


# ---------------------------------------------------------------------------- lengths
def _lengths(profile: Profile, t: Trace) -> list[Violation]:
    out = []
    seen: set[str] = set()
    for d in t.steps:
        data = d.result
        if d.op.name != "read" or not isinstance(data, bytes):
            continue
        fd = str(d.op.args[0])
        if fd in seen:
            continue
        seen.add(fd)
        path = t.path(d)
        if not path.endswith("/outblob") or len(data) >= int(d.op.args[1]):
            continue  # only the first, whole read of an outblob fd is one report
        want = declared_length(profile, data)
        if want is None or want == len(data):
            continue
        name = path.split("/")[0]
        racing = any(x.thread != d.thread and x.start <= d.end and x.end >= d.start and
                     (x.op.name == "param" or (t.item(x) == name and x.op.name in ("close", "write", "pwrite")))
                     for x in t.steps)
        out.append(Violation("report.length", f"a read of {name}/outblob is one whole {want}-byte report",
                             f"{profile.where('report')} report", f"{len(data)} bytes", d.index,
                             known=SIZE_FILL if racing else None))
    return out


def ops_of(steps: list[Done]) -> list[Op]:
    return [d.op for d in sorted(steps, key=lambda d: d.index)]
