"""A sequential specification model of one report group: what each operation of a single-threaded
sequence must return, written from docs/abi.md (§1-§4, §7) and the profile, never from the
emulator.

``SpecModel.predict(op)`` gives an ``Expect``: an exact value where that is cheap (mkdir, rmdir,
open, close, writes of text attributes and inblob, generation/provider reads, EFBIG/EFAULT/EINVAL/
ENOENT/EEXIST/EACCES/ESPIPE cases), "any of {...}" where the kernel may legitimately differ, and a
predicate for report bytes (which it cannot predict): reports must be consistent with every other
read of the same generation (the cache), per-fd snapshots, the committed nonce and privlevel at the
profile's offsets, the profile's minimum length, and differ between generations where the profile
says reports are fresh.  ``apply(op, result)`` advances the state from what was observed (so an
"any of" outcome is followed, not guessed).

Not modelled (predictions become "anything" or are skipped): the generation wrap guard (2^64
writes), a provider that unregisters, provider errors other than the profile's inblob-length and
service_provider rules, and report lengths beyond the profile's minimum.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..profile.model import Attribute, Profile
from ..seq import FD_OPS, Op
from .parse import kstrtouint, service_provider_value
from .rules import inblob_marks, inblob_put, inblob_write, text_store, text_store_bumps

Judge = Callable[[object], "str | None"]  # why an observation is wrong, or None
#: SpecModel._opening's (item name, attribute name, the profile's Attribute, reads, writes, refused)
_Opening = tuple[str, str, "Attribute | None", bool, bool, bool]


@dataclass(slots=True)  # (not frozen: a frozen dataclass costs several times as much to make)
class Expect:
    """An expectation for one operation: ``text`` as messages show it, the profile key it comes
    from, and either the allowed results or a judge function.  Never changed once made: the
    common ones are shared (``exact``)."""

    text: str
    keypath: str = ""
    allowed: tuple | None = None
    judge: Judge | None = None

    def wrong(self, observed: object) -> str | None:
        if self.allowed is not None:
            return None if observed in self.allowed else "not among the allowed results"
        return self.judge(observed) if self.judge else None


ANY = Expect("anything (not modelled)")


_EXACT: dict[tuple, Expect] = {}  # exact() results: expectations are immutable, most recur


def exact(value: object, keypath: str = "") -> Expect:
    key = (value.__class__, value, keypath)  # the class: 0, False and 0.0 are equal keys
    try:
        return _EXACT[key]
    except KeyError:
        e = Expect(_fmt(value), keypath, (value,))
        if len(_EXACT) < 4096:
            _EXACT[key] = e
        return e
    except TypeError:  # unhashable (a listdir's list)
        return Expect(_fmt(value), keypath, (value,))


def any_of(values: tuple | list | set | frozenset, keypath: str = "") -> Expect:
    vals = tuple(sorted(set(values), key=str))
    text = _fmt(vals[0]) if len(vals) == 1 else "any of {" + ", ".join(sorted(map(_fmt, vals))) + "}"
    return Expect(text, keypath, vals)


def _fmt(v: object) -> str:
    if isinstance(v, bytes):
        return repr(v) if len(v) <= 24 else f"<{len(v)} bytes>"
    return str(v)


_ZERO, _EBADF = exact(0), exact("EBADF")
_ON_FD = frozenset(FD_OPS)  # the operations on an open file


class Blob:
    """What is known about one blob (a report at one generation): fragments by
    offset, and bounds on its length.  Every observation must agree with all earlier ones."""

    def __init__(self) -> None:
        self.frags: dict[int, bytes] = {}
        self.lo = 0  # length is at least this
        self.hi: int | None = None  # and at most this

    def conflict(self, pos: int, n: int, data: bytes) -> str | None:
        end = pos + len(data)
        if data and self.hi is not None and end > self.hi:
            return f"{len(data)} bytes at offset {pos}, past the {self.hi}-byte end seen before"
        if len(data) < n and end < self.lo:
            return f"ends at {end}, before byte {self.lo} seen before"
        for off, frag in self.frags.items():
            a, b = max(off, pos), min(off + len(frag), end)
            if a < b and frag[a - off:b - off] != data[a - pos:b - pos]:
                return f"bytes {a}..{b} differ from an earlier read of the same generation"
        return None

    def add(self, pos: int, n: int, data: bytes) -> None:
        if data:
            self.frags[pos] = max(self.frags.get(pos, b""), data, key=len)
            self.lo = max(self.lo, pos + len(data))
        if len(data) < n:  # a short read: the blob ends right there (an empty one: at or before pos)
            end = pos + len(data)
            self.hi = end if self.hi is None else min(self.hi, end)

    def full(self) -> bytes | None:
        """The whole blob, when it has been seen from 0 to its end."""
        if self.hi is None or self.hi != self.lo:
            return None
        out = bytearray(self.hi)
        have = 0
        for off in sorted(self.frags):
            frag = self.frags[off]
            if off > have:
                return None
            out[off:off + len(frag)] = frag
            have = max(have, off + len(frag))
        return bytes(out) if have >= self.hi else None


@dataclass(eq=False, slots=True)
class Item:
    """One report item instance (a mkdir; a later mkdir of the same name is a new one)."""

    name: str
    gen: int
    inblob: bytes = b""  # committed; empty = inblob_len 0
    privlevel: int | None = 0  # None: unknown (the tree accepted text the grammar rejects)
    service_provider: bytes | None = None
    dead: bool = False
    reports: dict[tuple[str, int], Blob] = field(default_factory=dict)  # (attr, generation)
    inputs: dict[int, tuple[bytes, int | None, bytes | None]] = field(default_factory=dict)  # gen -> desc


@dataclass(eq=False, slots=True)
class Fd:
    item: Item
    attr: str
    kind: str  # text | binary
    rd: bool
    wr: bool
    pos: int = 0
    buf: bytearray | None = None  # pending inblob bytes
    wip: bool = False  # write_in_progress: close commits
    snap: Blob | None = None  # a binary attribute's per-fd read snapshot, once filled
    snap_gen: int = -1
    filled: bool = False  # a text attribute's page was filled by a read: later reads show ``page``
    page: bytes | None = None  # (None: what the attribute shows is not modelled)


class SpecModel:
    """One report group as a single thread sees it; ``r0, r1 ...`` item names, ``fd0 ...`` fds."""

    def __init__(self, profile: Profile, attributes: frozenset[str] | set[str], floor: int | None,
                 provider: str | None = None) -> None:
        self.p = profile
        self.visible = frozenset(attributes)
        self.floor = floor if floor is not None else (profile.privlevel_floor or 0)
        self.provider = provider or profile.provider or ""
        self.items: dict[str, Item] = {}
        self.fds: dict[str, Fd] = {}
        self.nfd = 0
        self.page = profile.limits_text_store_max + 1  # PAGE_SIZE: text st_size and SEEK_END base

    @classmethod
    def from_facts(cls, profile: Profile, facts: ProbedFacts) -> SpecModel:
        """From a probe's Facts (duck-typed): the attribute set is the profile's for the groups
        the probe saw (not what the tree showed: a stray attribute must stay a violation)."""
        return cls(profile, expected_attributes(profile, facts), facts.privlevel_floor, facts.provider)

    # ------------------------------------------------------------------ helpers
    def errs(self, condition: str) -> frozenset[str]:
        return _conditions(self.p)[0](condition)

    def _err(self, condition: str) -> Expect:
        return _conditions(self.p)[1](condition)

    def _attr(self, path: object) -> tuple[str, str]:
        head, _, tail = str(path).partition("/")
        return head, tail

    # ------------------------------------------------------------------ predictions
    def predict(self, op: Op, fd_name: str | None = None) -> Expect:
        a = op.args
        name = op.name
        if name in _ON_FD:  # (first: most operations are on an open file)
            f = self.fds.get(str(a[0]))
            return _EBADF if f is None else self._predict_fd(f, name, a)
        if name == "open":
            return self._open(self._opening(a), fd_name or f"fd{self.nfd}")
        if name == "mkdir":
            head, tail = self._attr(a[0])
            if not tail:
                return self._err("mkdir_duplicate") if head in self.items else exact(0, "errors.mkdir_duplicate")
            if head not in self.items:
                return exact("ENOENT")
            if "/" in tail:
                return ANY
            return exact("EEXIST") if tail in self.visible else self._err("mkdir_inside_item")
        if name == "rmdir":
            head, tail = self._attr(a[0])
            if not tail:
                return exact(0) if head in self.items else exact("ENOENT")
            if head in self.items and tail in self.visible:
                return exact("ENOTDIR")
            return exact("ENOENT") if head in self.items else ANY
        if name == "listdir":
            where = str(a[0]) if a else "."
            if where in ("", "."):
                names = sorted(self.items)
                return Expect(str(names), "attributes", (names,))
            if where in self.items:
                return Expect(str(sorted(self.visible)), "attributes",
                              judge=lambda o: None if o == sorted(self.visible) else "a different attribute set")
            return exact("ENOENT") if "/" not in where else ANY
        if name == "stat":
            return self._stat(str(a[0]))
        if name == "param":
            return any_of((0, "EOPNOTSUPP"))
        return ANY

    def _predict_fd(self, f: Fd, name: str, a: tuple) -> Expect:
        """An operation on open file ``f``."""
        if name == "close":
            return _ZERO
        if name in ("read", "pread"):
            if not f.rd:
                return _EBADF
            return self._read(f, int(a[1]), f.pos if name == "read" else int(a[2]))
        if name in ("write", "pwrite"):
            if not f.wr:
                return _EBADF
            data = bytes(a[1])
            if f.kind == "text":
                return self._text_write(f, data)
            return self._bin_write(f, data, f.pos if name == "write" else int(a[2]))
        if f.kind == "binary":  # lseek
            return self._err("lseek_binary")
        base = {"SEEK_SET": 0, "SEEK_CUR": f.pos, "SEEK_END": self.page}.get(str(a[2]))
        if base is None or base + int(a[1]) < 0:
            return exact("EINVAL")
        return exact(base + int(a[1]))

    def _stat(self, path: str) -> Expect:
        head, tail = self._attr(path)
        if head not in self.items:
            return exact("ENOENT")
        if not tail:
            want = 0o040000 | self.p.item_mode
            return Expect(f"mode {want:06o}", "item_mode", judge=lambda o: None if getattr(o, "mode", None) == want
                          else "a different mode")
        if tail not in self.visible or "/" in tail:
            return exact("ENOENT")
        attr = self.p.attributes.get(tail)
        if attr is None:
            return ANY
        mode = 0o100000 | attr.mode
        size = 0 if attr.kind == "binary" else self.page
        return Expect(f"mode {mode:06o} size {size}", f"attributes.{tail}.mode",
                      judge=lambda o: None if (getattr(o, "mode", None), getattr(o, "size", None)) == (mode, size)
                      else "a different mode or size")

    def _opening(self, a: tuple) -> _Opening:
        """An open's (item name, attribute name, the profile's attribute, reads, writes, whether
        the profile refuses that direction), kept per profile, path and flags (``_OPENINGS``)."""
        key = (id(self.p), a[0], a[1])
        hit = _OPENINGS.get(key)
        if hit is not None and hit[0] is self.p:
            return hit[1]
        head, tail = self._attr(a[0])
        rd, wr = _access(str(a[1]))
        attr = self.p.attributes.get(tail)
        refused = attr is not None and ((rd and not attr.readable) or (wr and not attr.writable))
        o = (head, tail, attr, rd, wr, refused)
        if len(_OPENINGS) >= 4096:
            _OPENINGS.clear()
        _OPENINGS[key] = (self.p, o)
        return o

    def _open(self, o: _Opening, fd: str) -> Expect:
        head, tail, attr, rd, wr, refused = o
        if head not in self.items:
            return exact("ENOENT", "errors.access_after_rmdir")  # the name is gone: the VFS says ENOENT
        if not tail or "/" in tail or tail not in self.visible:
            return exact("ENOENT") if tail and "/" not in tail else ANY
        if attr is None:
            return ANY
        if refused:
            return self._err("open_wrong_direction")
        return exact(fd)

    def _text_write(self, f: Fd, data: bytes) -> Expect:
        if data and f.item.dead:
            return self._err("access_after_rmdir")
        r = text_store(self.p, self.floor, f.attr, data)
        return self._err(r) if isinstance(r, str) else exact(r, "limits.text_store_max")

    def _bin_write(self, f: Fd, data: bytes, pos: int) -> Expect:
        r = inblob_write(self.p, pos, data)
        if isinstance(r, str):
            return self._err(r)
        if f.item.dead:  # only buffered; whether configfs checks frag_dead here is not documented
            return any_of({r} | self.errs("access_after_rmdir"), "errors.access_after_rmdir")
        return exact(r, "limits.inblob_max")

    def _refusal(self, item: Item) -> Expect | None:
        """Why generating a report for the item's current inputs fails, per the profile."""
        if not item.inblob:
            return self._err("read_before_inblob")
        r = self.p.inblob_report_lengths
        if r is not None and len(item.inblob) not in r and self.p.inblob_rejected_length_errno:
            return exact(self.p.inblob_rejected_length_errno, "inblob.rejected_length_errno")
        sp = item.service_provider
        below = self.p.privlevel_below_floor_errno
        if below and sp is None and self._below_floor(item):  # sev_guest's SVSM path ignores privlevel
            return exact(below, "privlevel.below_floor_errno")
        if sp is not None and self.p.service_provider_values and sp.decode("latin-1") not in \
                self.p.service_provider_values and self.p.service_provider_rejected_errno:
            return exact(self.p.service_provider_rejected_errno, "service.rejected_errno")
        return None

    def _read(self, f: Fd, n: int, pos: int) -> Expect:
        item = f.item
        if f.kind == "text":
            if not f.filled and item.dead:
                return self._err("access_after_rmdir")
            text = f.page if f.filled else self._show(item, f.attr)
            if text is None:
                return ANY
            return exact(text[pos:pos + n], "generation" if f.attr == "generation" else "provider")
        if f.snap is not None:
            return self._blob_expect(f.snap, n, pos, f.attr, item, f.snap_gen)
        if item.dead:
            return self._err("access_after_rmdir")
        refusal = self._refusal(item)
        if refusal is not None:
            return refusal
        blob = item.reports.setdefault((f.attr, item.gen), Blob())
        e = self._blob_expect(blob, n, pos, f.attr, item, item.gen)
        if blob.frags or blob.hi is not None:
            return e  # a report of this generation was read: served from the cache, nothing new
        also: set[str] = set()
        # a generation may meet a transient EBUSY (TDX 6.16+: another vCPU holds the TDREPORT operand)
        also |= self.errs("tdreport_operand_busy") & {"EBUSY"}
        if self.p.privlevel_below_floor_errno is None and self._below_floor(item):
            also.add("EINVAL")  # the profile does not say whether the firmware refuses (tsm_test's parameter)
        if not also:
            return e
        return Expect(f"{e.text} or {' or '.join(sorted(also))}", e.keypath,
                      judge=lambda o: None if o in also else e.wrong(o))

    def _below_floor(self, item: Item) -> bool:
        """A report asked below the floor (a fresh item's privlevel 0): SNP firmware refuses it."""
        return item.privlevel is not None and item.privlevel < self.floor

    def _show(self, item: Item, attr: str) -> bytes | None:
        if attr == "generation":
            return b"%d\n" % item.gen
        if attr == "provider":
            return self.provider.encode() + b"\n"
        if attr == "privlevel_floor":
            return b"%d\n" % self.floor
        return None

    def _blob_expect(self, blob: Blob, n: int, pos: int, attr: str, item: Item, gen: int) -> Expect:
        inputs = item.inputs.get(gen, (item.inblob, item.privlevel, item.service_provider))
        prev = self._previous_full(item, attr, gen)

        def judge(o: object) -> str | None:
            if not isinstance(o, bytes):
                return f"{o} instead of report bytes"
            if len(o) > n:
                return f"{len(o)} bytes for a {n}-byte read"
            why = blob.conflict(pos, n, o)
            if why:
                return f"{attr} at generation {gen}: {why}"
            return self._report_rules(attr, pos, n, o, inputs, prev)
        return Expect(f"{attr} bytes of the report at generation {gen}", "report", judge=judge)

    def _previous_full(self, item: Item, attr: str, gen: int) -> bytes | None:
        older = [g for (a, g) in item.reports if a == attr and g < gen and item.reports[(a, g)].full() is not None]
        return item.reports[(attr, max(older))].full() if older else None

    def _report_rules(self, attr: str, pos: int, n: int, data: bytes, inputs: tuple[bytes, int | None, bytes | None],
                      prev: bytes | None) -> str | None:
        """What the profile says about a report's bytes, on the part this read covers."""
        if attr != "outblob":
            return None
        nonce, privlevel, sp = inputs
        end = pos + len(data)
        if len(data) < n and self.p.report_min_length and pos == 0 and end < self.p.report_min_length:
            return f"a {end}-byte outblob, shorter than the profile's {self.p.report_min_length}"
        svsm = self.p.service_attestation == "svsm" and sp is not None  # nonce hashed with the manifest
        fld = self.p.report_nonce
        if fld is not None and not svsm and fld.offset is not None and pos <= fld.offset and \
                fld.offset + fld.length <= end:
            want = nonce.ljust(fld.length, b"\0")[: fld.length]
            got = data[fld.offset - pos: fld.offset - pos + fld.length]
            if got != want:
                return f"report_data at {fld.offset:#x} is not the committed nonce"
        if fld is not None and not svsm and fld.offset is None and pos == 0 and len(data) < n:
            if nonce.ljust(fld.length, b"\0")[: fld.length] not in data:
                return "the committed nonce is not in the report"
        pf = self.p.report_privlevel
        if pf is not None and privlevel is not None and self.p.privlevel_honoured and not svsm and \
                pf.offset is not None and pos <= pf.offset and pf.offset + pf.length <= end:
            got_pl = int.from_bytes(data[pf.offset - pos: pf.offset - pos + pf.length], "little")
            if got_pl != privlevel:
                return f"privlevel field at {pf.offset:#x} is {got_pl}, not the written {privlevel}"
        if prev is not None and self.p.report_fresh_per_generation and pos == 0 and len(data) < n and data == prev:
            return "the same bytes as the previous generation's report (not regenerated)"
        return None

    # ------------------------------------------------------------------ state updates
    def apply(self, op: Op, obs: object, fd_name: str | None = None) -> None:
        a, name = op.args, op.name
        if name in _ON_FD:  # (first, as in predict)
            f = self.fds.get(str(a[0]))
            if f is not None:
                self._apply_fd(f, name, a, obs)
            return
        if name == "open":
            self._opened(self._opening(a), obs, fd_name or f"fd{self.nfd}", fd_name is None)
            return
        if name == "mkdir":
            head, tail = self._attr(a[0])
            if not tail and obs == 0 and head not in self.items:
                self.items[head] = Item(head, self.p.generation_initial)
            return
        if name == "rmdir":
            head, tail = self._attr(a[0])
            if not tail and obs == 0 and head in self.items:
                self.items.pop(head).dead = True

    def _apply_fd(self, f: Fd, name: str, a: tuple, obs: object) -> None:
        """What an operation on open file ``f`` that returned ``obs`` changed."""
        if name == "close":
            del self.fds[str(a[0])]
            if f.kind == "binary" and f.wip and not f.item.dead:  # the inblob commit (docs/abi.md §3)
                self._bump(f.item)
                f.item.inblob = bytes(f.buf or b"")
        elif name in ("read", "pread"):
            if f.rd:
                self._after_read(f, int(a[1]), f.pos if name == "read" else int(a[2]), obs)
                if name == "read" and isinstance(obs, bytes):
                    f.pos += len(obs)
        elif name in ("write", "pwrite"):
            if f.wr:
                data = bytes(a[1])
                pos = f.pos if name == "write" else int(a[2])
                if f.kind == "text":
                    self._after_text_write(f, data, obs)
                else:
                    self._after_bin_write(f, data, pos, obs)
                if name == "write" and isinstance(obs, int) and not isinstance(obs, bool):
                    f.pos += obs
        elif isinstance(obs, int):  # lseek
            f.pos = obs

    def _opened(self, o: _Opening, obs: object, fd: str, numbered: bool) -> None:
        """An open that returned ``obs``: a new ``fd`` on success (``numbered``: its name is the
        next ``fdN``, counted even when the open fails, as the executor names them)."""
        if numbered:
            self.nfd += 1
        if obs.__class__ is str and obs[:2] == "fd":
            head, tail, attr, rd, wr, _ = o
            item = self.items.get(head)
            if item is not None:
                self.fds[fd] = Fd(item, tail, attr.kind if attr else "text", rd, wr)

    def _bump(self, item: Item) -> None:
        item.gen += 1

    def generation(self, name: str) -> int | None:
        """What reading ``name``'s generation must show now (None: no such item)."""
        item = self.items.get(name)
        return item.gen if item is not None else None

    def _after_read(self, f: Fd, n: int, pos: int, obs: object) -> None:
        item = f.item
        if not isinstance(obs, bytes):
            return
        if f.kind == "text":
            if not f.filled:  # one show per fd, then a snapshot (docs/abi.md §3)
                f.filled, f.page = True, self._show(item, f.attr)
            return
        if f.snap is None:
            if not obs and pos == 0:  # an empty blob: configfs keeps trying on later reads
                item.reports.setdefault((f.attr, item.gen), Blob()).add(0, max(n, 1), b"")
                return
            f.snap = item.reports.setdefault((f.attr, item.gen), Blob())
            f.snap_gen = item.gen
            item.inputs.setdefault(item.gen, (item.inblob, item.privlevel, item.service_provider))
        f.snap.add(pos, n, obs)

    def _after_text_write(self, f: Fd, data: bytes, obs: object) -> None:
        item = f.item
        if item.dead or not text_store_bumps(self.p, f.attr, data, obs):
            return
        self._bump(item)
        if type(obs) is not int:
            return  # a service_guid that failed to parse: bumped, nothing else the model tracks
        chunk = data[: self.p.limits_text_store_max]
        if f.attr == "privlevel":
            v = kstrtouint(chunk)
            item.privlevel = v if isinstance(v, int) else None  # accepted text we call invalid: unknown
        elif f.attr == "service_provider":  # bumped before allocation (docs/abi.md §1a)
            item.service_provider = service_provider_value(chunk)

    def _after_bin_write(self, f: Fd, data: bytes, pos: int, obs: object) -> None:
        if not inblob_marks(self.p, obs):
            return  # EBADF, ENOENT: nothing buffered
        f.wip = True
        if f.buf is None:
            f.buf = bytearray()
        inblob_put(f.buf, pos, data, self.p.limits_inblob_max)

    # ------------------------------------------------------------------ both
    def step(self, op: Op, obs: object, fd_name: str | None = None) -> tuple[Expect, str | None]:
        """Predict, judge the observation, advance: (expectation, why it is wrong or None)."""
        name = op.name
        if name in _ON_FD:  # the file looked up once for both halves (most operations)
            a = op.args
            f = self.fds.get(str(a[0]))
            if f is None:
                return _EBADF, _EBADF.wrong(obs)
            want = self._predict_fd(f, name, a)
            why = want.wrong(obs)
            self._apply_fd(f, name, a, obs)
            return want, why
        want = self.predict(op, fd_name)
        why = want.wrong(obs)
        self.apply(op, obs, fd_name)
        return want, why


#: (id of the profile, path, flags) -> (the profile, SpecModel._opening's answer): the same few
#: opens recur in every trace of a run (the profile is kept, so its id is not reused meanwhile)
_OPENINGS: dict[tuple[int, object, object], tuple[Profile, _Opening]] = {}


@functools.lru_cache(maxsize=64)
def _access(flags: str) -> tuple[bool, bool]:
    """``O_WRONLY|O_APPEND`` -> (reads, writes): the access mode of open flags' text."""
    parts = {x.strip() for x in flags.split("|")}
    if "O_RDWR" in parts:
        return True, True
    wr = "O_WRONLY" in parts
    return not wr, wr


_CONDITIONS: dict[int, tuple[Profile, Callable[[str], frozenset[str]], Callable[[str], Expect]]] = {}


def _conditions(p: Profile) -> tuple[Callable[[str], frozenset[str]], Callable[[str], Expect]]:
    """For one profile, cached (a model is made per trace): condition -> its errno names, and
    condition -> the Expect of failing with one of them."""
    hit = _CONDITIONS.get(id(p))
    if hit is None or hit[0] is not p:  # the profile is kept in the entry, so its id is not reused
        @functools.cache
        def errs(condition: str) -> frozenset[str]:
            return frozenset(p.errno(condition)) if condition in p.errors else frozenset()

        @functools.cache
        def err(condition: str) -> Expect:
            return any_of(errs(condition), f"errors.{condition}")
        if len(_CONDITIONS) > 64:
            _CONDITIONS.clear()
        hit = _CONDITIONS[id(p)] = (p, errs, err)
    return hit[1], hit[2]


class ProbedFacts(Protocol):
    """What the oracle reads of a probe's facts (checks.base.Facts, which it may not import)."""

    @property
    def privlevel_floor(self) -> int | None: ...
    @property
    def provider(self) -> str: ...
    def groups_present(self, profile: Profile) -> dict[str, bool]: ...


def expected_attributes(profile: Profile, facts: ProbedFacts) -> frozenset[str]:
    """The attributes a fresh item must show: the profile's, given the visibility groups the probe
    found present (``Facts.groups_present``)."""
    return frozenset(profile.visible_attributes(facts.groups_present(profile)))


def open_flags(text: str) -> int:
    """``O_WRONLY|O_APPEND`` -> the os flag value (for callers that drive a tree directly)."""
    v = 0
    for part in text.split("|"):
        v |= getattr(os, part.strip())
    return v
