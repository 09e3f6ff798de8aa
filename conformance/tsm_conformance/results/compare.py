"""Run-to-run comparison: what changed between two runs, and whether anything new fails
(docs/results.md, "Results you can hand over and compare").

Command line (cli.py wires it to ``main``)::

    tsm-conformance compare OLD NEW [--threshold 0.5] [--min-seconds 0.5] [--json]

OLD and NEW are each a bundle directory, a bundle's ``results.json`` or a JUnit XML file; the two
may be of different kinds, as checks are matched by check id.

``--threshold R``      a check is slower when its new duration is at least (1 + R) times the old
                       one (faster: at most the old one divided by 1 + R); a finite number >= 0
``--min-seconds S``    ... and the two durations differ by at least S seconds (>= 0): a check that
                       went from 1 ms to 3 ms is noise, not a slowdown
``--json``             a JSON document (``"format": "tsm-conformance-compare/1"``) instead of the
                       text report

Exit status: 1 when NEW has a new failure (a check whose outcome fails a run, ``outcome.FACES``,
that did not fail in OLD, or was absent from it; a baseline's ``known`` does not fail a run, so it
is no new failure), else 0; 2 for unreadable input or a bad option (one line on stderr).

Each check lands in at most one of the outcome lists (new failures, fixed, still failing, newly
known, newly skipped, newly running, changed), decided in that order; ``added`` and ``removed`` are
the ids present in one run only, so a check absent from OLD that fails in NEW is in both
``new_failures`` and ``added``.  A failure that became ``known`` (a baseline entry now covers it) is
newly known, not fixed; a ``known`` that fails again is a new failure.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from ..outcome import FACES, Outcome
from .model import CheckResult, ResultsError, Run, load_run

FORMAT = "tsm-conformance-compare/1"  # to_json's "format"

#: environment.json values that say whether two runs ran the same thing on the same target
#: (docs/results.md, environment.json); a dotted path into the file.
ENV_KEYS = ("tool.version", "tool.git_revision", "target.kernel_release", "target.provider", "target.describe",
            "profile.name", "profile.sha256", "module.srcversion", "module.parameters", "baselines")

#: The JUnit suite properties the plugin writes that carry some of those values, so a JUnit file
#: can be compared with a bundle (or another JUnit file) on what it does say.
JUNIT_ENV = {"tool.version": "tsm.suite_version", "target.kernel_release": "tsm.kernel_release",
             "target.provider": "tsm.provider", "target.describe": "tsm.target", "profile.name": "tsm.profile"}

#: The lists of a Comparison, in the order the text report shows them and the last line counts them.
LISTS = (("new_failures", "NEW FAILURES", "new failure(s)"), ("fixed", "FIXED", "fixed"),
         ("still_failing", "STILL FAILING", "still failing"), ("newly_known", "NEWLY KNOWN", "newly known"),
         ("newly_skipped", "NEWLY SKIPPED", "newly skipped"), ("newly_running", "NEWLY RUNNING", "newly running"),
         ("changed", "OTHER OUTCOME CHANGES", "other change(s)"), ("added", "ADDED (only in NEW)", "added"),
         ("removed", "REMOVED (only in OLD)", "removed"), ("slower", "SLOWER", "slower"),
         ("faster", "FASTER", "faster"))

_VALUE_MAX = 160  # characters of one shown environment value or reason: a report line, not a dump


@dataclass(frozen=True)
class Change:
    """One check in one list: its outcome in each run (None: absent from that run)."""

    id: str
    old: str | None  # Outcome value in OLD
    new: str | None  # Outcome value in NEW
    reason: str = ""  # the NEW run's one-line reason (empty when NEW has none, or lacks the check)
    old_seconds: float | None = None  # durations: set in slower / faster
    new_seconds: float | None = None


@dataclass(frozen=True)
class EnvDiff:
    """One environment value that differs: ``key: old -> new`` (``(absent)`` where a run lacks it)."""

    key: str
    old: str
    new: str


@dataclass(frozen=True)
class RunInfo:
    """What the header says about one run."""

    label: str
    source: str
    kind: str  # bundle or junit
    kernel: str
    provider: str
    checks: int


@dataclass
class Comparison:
    old: RunInfo
    new: RunInfo
    threshold: float
    min_seconds: float
    shared: int  # check ids in both runs
    note: str = ""  # one line when something about the inputs looks wrong (no shared check id)
    new_failures: list[Change] = field(default_factory=list)  # fails in NEW; did not fail in OLD, or was absent
    fixed: list[Change] = field(default_factory=list)  # failed in OLD; passes (or xfails) in NEW: ``new`` says which
    still_failing: list[Change] = field(default_factory=list)
    newly_known: list[Change] = field(default_factory=list)  # fail/pass -> known, known -> pass
    newly_skipped: list[Change] = field(default_factory=list)  # ran in OLD (FACES.ran), not in NEW
    newly_running: list[Change] = field(default_factory=list)  # did not run in OLD, ran in NEW
    changed: list[Change] = field(default_factory=list)  # any other outcome change (pass -> xfail, ...)
    added: list[Change] = field(default_factory=list)  # only in NEW
    removed: list[Change] = field(default_factory=list)  # only in OLD
    slower: list[Change] = field(default_factory=list)
    faster: list[Change] = field(default_factory=list)
    environment: list[EnvDiff] = field(default_factory=list)
    stale: list[dict[str, str]] = field(default_factory=list)  # NEW's baseline entries that no longer fail

    @property
    def exit_status(self) -> int:
        return 1 if self.new_failures else 0

    def counts(self) -> dict[str, int]:
        n = {name: len(getattr(self, name)) for name, _, _ in LISTS}
        return {**n, "environment": len(self.environment), "stale_baseline": len(self.stale)}


# ----------------------------------------------------------------------------- comparing
def compare(old: Run, new: Run, threshold: float = 0.5, min_seconds: float = 0.5) -> Comparison:
    """What changed from ``old`` to ``new``, check by check (matched by id)."""
    for name, v in (("threshold", threshold), ("min_seconds", min_seconds)):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, not {v}")
    o, n = _by_id(old.checks), _by_id(new.checks)
    shared = [i for i in n if i in o]
    c = Comparison(old=_info(old), new=_info(new), threshold=threshold, min_seconds=min_seconds,
                   shared=len(shared), note=_note(len(o), len(n), len(shared)),
                   environment=env_diff(old, new), stale=[dict(s) for s in new.stale])
    for i, nc in n.items():
        oc = o.get(i)
        if oc is None:
            c.added.append(_change(None, nc))
            if nc.failed:  # new to this run, and failing: as new a failure as any
                c.new_failures.append(_change(None, nc))
            continue
        lst = _outcome_list(oc.outcome, nc.outcome)
        if lst:
            getattr(c, lst).append(_change(oc, nc))
        _timing(c, oc, nc)
    c.removed = [_change(oc, None) for i, oc in o.items() if i not in n]
    return c


def _by_id(checks: Iterable[CheckResult]) -> dict[str, CheckResult]:
    """Checks by id, in run order; a repeated id keeps its first entry (as ``Run.check`` does)."""
    out: dict[str, CheckResult] = {}
    for c in checks:
        out.setdefault(c.id, c)
    return out


def _outcome_list(old: Outcome, new: Outcome) -> str:
    """The one list a check whose outcome went from ``old`` to ``new`` belongs in ("" for none)."""
    fo, fn = FACES[old].fails_run, FACES[new].fails_run
    if fn:
        return "still_failing" if fo else "new_failures"
    # before "fixed": a failure a baseline now covers is not fixed, it is known
    if new is Outcome.KNOWN and old is not Outcome.KNOWN and (fo or old is Outcome.PASS):
        return "newly_known"
    if old is Outcome.KNOWN and new is Outcome.PASS:
        return "newly_known"
    if fo and FACES[new].ran:
        return "fixed"
    if FACES[old].ran and not FACES[new].ran:
        return "newly_skipped"
    if not FACES[old].ran and FACES[new].ran:
        return "newly_running"
    return "changed" if old is not new else ""


def _change(old: CheckResult | None, new: CheckResult | None) -> Change:
    """One check's entry; at least one of ``old``, ``new`` is given."""
    some = new or old
    assert some is not None
    return Change(id=some.id, old=old.outcome.value if old else None,
                  new=new.outcome.value if new else None, reason=new.reason if new else "")


def _known_seconds(c: CheckResult) -> float | None:
    """A duration worth comparing: ran, finite, not negative (results.json is handed-over input)."""
    ok = FACES[c.outcome].ran and math.isfinite(c.duration) and c.duration >= 0
    return c.duration if ok else None


def _timing(c: Comparison, old: CheckResult, new: CheckResult) -> None:
    a, b = _known_seconds(old), _known_seconds(new)
    if a is None or b is None or abs(b - a) < c.min_seconds:
        return
    k = 1 + c.threshold
    # strict as well: with --threshold 0 --min-seconds 0 an unchanged duration is neither
    if b > a and b >= a * k:
        c.slower.append(Change(new.id, old.outcome.value, new.outcome.value, new.reason, a, b))
    elif b < a and b <= a / k:
        c.faster.append(Change(new.id, old.outcome.value, new.outcome.value, new.reason, a, b))


def _note(n_old: int, n_new: int, shared: int) -> str:
    if shared or not (n_old or n_new):
        return "" if shared else "neither run has any check"
    return (f"OLD ({n_old} check(s)) and NEW ({n_new}) share no check id: likely not two runs of the "
            "same suite (the wrong files?)")


# ----------------------------------------------------------------------------- the environment
def _env_value(run: Run, key: str) -> tuple[bool, Any]:
    """(whether ``run`` can say, its value or None): a bundle says everything environment.json has
    (an absent key is a value: absent); a JUnit file only the suite properties it carries (another
    tool's JUnit carries none)."""
    if run.kind != "bundle":
        prop = JUNIT_ENV.get(key, "")
        return (prop in run.properties, run.properties.get(prop))
    v: Any = run.environment
    for part in key.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return True, v


def _flatten(key: str, v: Any) -> dict[str, Any]:
    """A mapping's entries as ``key[sub]`` (module.parameters, a per-file profile.sha256), so a
    difference names the one entry that differs."""
    if not isinstance(v, dict) or not v:
        return {key: v}
    out: dict[str, Any] = {}
    for k in sorted(v, key=str):
        out.update(_flatten(f"{key}[{k}]", v[k]))
    return out


def _show(v: Any) -> str:
    if v is None:
        return "(absent)"
    if isinstance(v, str):
        return clean(v)
    if isinstance(v, list):  # baselines: each file as its path and digest
        return clean(", ".join(_show_item(x) for x in v)) or "[]"
    return clean(json.dumps(v, sort_keys=True, default=str))


def _show_item(x: Any) -> str:
    if isinstance(x, dict) and "path" in x:
        return f"{x['path']} ({str(x.get('sha256') or '?')[:12]})"
    return x if isinstance(x, str) else json.dumps(x, sort_keys=True, default=str)


def env_diff(old: Run, new: Run) -> list[EnvDiff]:
    """The ENV_KEYS values that differ, where both runs can say (two bundles: every key)."""
    out = []
    for key in ENV_KEYS:
        (ko, vo), (kn, vn) = _env_value(old, key), _env_value(new, key)
        if not (ko and kn):
            continue
        fo, fn = _flatten(key, vo), _flatten(key, vn)
        for k in [*fo, *(k for k in fn if k not in fo)]:
            a, b = fo.get(k), fn.get(k)
            if a != b:
                out.append(EnvDiff(k, _show(a), _show(b)))
    return out


def _info(run: Run) -> RunInfo:
    kernel = _env_value(run, "target.kernel_release")[1]
    provider = _env_value(run, "target.provider")[1]
    return RunInfo(label=clean(run.label), source=clean(run.source), kind=run.kind,
                   kernel=clean(str(kernel)) if kernel else "?", provider=clean(str(provider)) if provider else "?",
                   checks=len(_by_id(run.checks)))


def clean(s: str, limit: int = _VALUE_MAX) -> str:
    """One printable line: the files compared come from elsewhere, and a terminal must not act on
    their control characters (escape sequences)."""
    s = " ".join("".join(ch if ch.isprintable() else " " for ch in str(s)).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ----------------------------------------------------------------------------- reporting
def _run_line(tag: str, r: RunInfo) -> str:
    where = f"  [{r.source}]" if r.source not in (r.label, ".") else ""
    return f"{tag} {r.label} ({r.kind}; kernel {r.kernel}, provider {r.provider}; {r.checks} checks){where}"


def _entry(name: str, ch: Change) -> list[str]:
    if name in ("slower", "faster"):
        return [f"  {ch.id}  {ch.old_seconds:.3f}s -> {ch.new_seconds:.3f}s"]
    mark = "!! " if name == "new_failures" else ""
    lines = [f"  {mark}{ch.id}  {ch.old or '(absent)'} -> {ch.new or '(absent)'}"]
    if ch.reason and name in ("new_failures", "still_failing", "newly_known", "newly_skipped", "changed"):
        lines.append(f"      {clean(ch.reason)}")
    return lines


def summary_line(c: Comparison) -> str:
    """``compare: N new failure(s), M fixed, ...``: the first two always, the rest when not zero."""
    n = c.counts()
    parts = [f"{n[name]} {words}" for name, _, words in LISTS if name in ("new_failures", "fixed") or n[name]]
    if c.environment:
        parts.append(f"{len(c.environment)} environment difference(s)")
    if c.stale:
        parts.append(f"{len(c.stale)} stale baseline entr{'y' if len(c.stale) == 1 else 'ies'}")
    return "compare: " + ", ".join(parts)


def format_text(c: Comparison) -> str:
    """The human report: both runs, the note if any, one section per non-empty list (new failures
    first), the environment, stale baseline entries, and the counts as the last line."""
    lines = [_run_line("OLD", c.old), _run_line("NEW", c.new),
             f"{c.shared} check(s) in both, {len(c.removed)} only in OLD, {len(c.added)} only in NEW"]
    if c.note:
        lines.append(f"note: {c.note}")
    for name, title, _ in LISTS:
        entries: list[Change] = getattr(c, name)
        if entries:
            bar = " " + "=" * 20 if name == "new_failures" else ""
            lines += ["", f"{title} ({len(entries)}){bar}"]
            for ch in entries:
                lines += _entry(name, ch)
    if c.environment:
        lines += ["", f"ENVIRONMENT ({len(c.environment)})"]
        lines += [f"  {clean(d.key)}: {d.old} -> {d.new}" for d in c.environment]
    if c.stale:
        lines += ["", f"STALE BASELINE ENTRIES in NEW ({len(c.stale)})"]
        lines += [f"  {clean(s.get('check', '?'))}  {clean(s.get('where', ''))}  {clean(s.get('reason', ''))}".rstrip()
                  for s in c.stale]
    return "\n".join([*lines, "", summary_line(c)]) + "\n"


def to_json(c: Comparison) -> str:
    """The comparison for machines: every list in full, the counts and the exit status."""
    d = asdict(c)
    return json.dumps({"format": FORMAT, **d, "counts": c.counts(), "exit_status": c.exit_status}, indent=2) + "\n"


# ----------------------------------------------------------------------------- the command
def _problem(threshold: float, min_seconds: float) -> str:
    for opt, v in (("--threshold", threshold), ("--min-seconds", min_seconds)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            return f"compare: {opt} must be a finite number >= 0 (got {v})"
    return ""


def _load(path: str) -> Run:
    try:
        return load_run(path)
    except OSError as e:  # environment.json unreadable: load_run leaves that one to us
        raise ResultsError(f"{path}: {e.strerror or e}") from None
    except (TypeError, AttributeError) as e:  # a results.json whose "checks" or "stale_baseline" is no list
        raise ResultsError(f"{path}: malformed results file ({type(e).__name__}: {e})") from None


def main(old: str, new: str, threshold: float = 0.5, min_seconds: float = 0.5, as_json: bool = False,
         out: TextIO | None = None) -> int:
    """``compare OLD NEW``: print the report to ``out`` (stdout); 1 on a new failure, else 0; 2 with
    one line on stderr for a bad option or input."""
    problem = _problem(threshold, min_seconds)
    if not problem:
        try:
            runs = _load(old), _load(new)
        except ResultsError as e:
            problem = clean(str(e), 1000)
    if problem:
        print(f"tsm-conformance: {problem}", file=sys.stderr)
        return 2
    c = compare(*runs, threshold=threshold, min_seconds=min_seconds)
    (out if out is not None else sys.stdout).write(to_json(c) if as_json else format_text(c))
    return c.exit_status
