"""``tsm-conformance report DIR... -o report.html``: one self-contained HTML file of one or more runs
(docs/results.md): each run's verdict, environment, totals and checks by area with their evidence;
with several runs, a checks x runs matrix marking what changed since the first.

The page is rendered by Jinja2 from ``templates/`` with autoescaping on (evidence is whatever a
kernel or a provider wrote) and has no external resource: no scripts, no remote fonts or styles.
The views below turn a ``Run`` into plain values, so the template only lays them out.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup

from .. import __version__
from ..inputs import MiB
from ..outcome import COLUMNS, Outcome
from .model import CheckResult, ResultsError, Run, load_run, read_member

MAX_RUNS = 64  # matrix columns: more is no longer a page anyone reads
EVIDENCE_TOTAL = 64 * MiB  # evidence text embedded per report (each piece is already within EVIDENCE_MAX)
ENV_DEPTH = 6  # environment nesting shown as tables; deeper values are shown as their JSON text

#: environment.json's sections in the order docs/results.md lists them; other keys follow in theirs
ENV_ORDER = ("tool", "python", "host", "target", "kernel_config", "module", "profile", "baselines", "run")
#: results.json's verdicts (docs/results.md) to a CSS class; anything else shows as "other"
VERDICT_CLASS = {"pass": "good", "ok": "good", "fail": "bad", "nothing-ran": "warn", "interrupted": "warn"}
CHANGED = "\u0394"  # the matrix's changed-cell marker (Greek capital delta), explained in the legend

_TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
# C0 controls (but tab, newline, carriage return) and DEL as their visible Control Pictures: a NUL or
# an escape in a kernel log is no character an HTML page may carry, and should not vanish either
_CONTROLS = {c: 0x2400 + c for c in range(0x20) if c not in (9, 10, 13)} | {0x7F: 0x2421}


# ----------------------------------------------------------------------------- views
@dataclass(frozen=True)
class Node:
    """An environment value as the template shows it: text, a key/value table, or a list."""

    kind: str  # "text", "table", "list"
    text: str = ""
    rows: tuple[tuple[str, Node], ...] = ()
    items: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Evidence:
    title: str  # the bundle member it came from
    text: str
    note: str = ""  # why it is cut short or missing


@dataclass(frozen=True)
class Field:
    """One labelled value (a baseline entry's where / reason / link); ``href`` for an http(s) link."""

    name: str
    text: str
    href: str = ""


@dataclass(frozen=True)
class CheckView:
    id: str
    anchor: str
    outcome: str
    column: str
    status: str  # what the status cell says: the column, with the precise outcome when that differs
    duration: str
    reason: str
    details: bool  # an expandable evidence block follows the row
    evidence: tuple[Evidence, ...] = ()
    known: tuple[Field, ...] = ()
    note: str = ""  # why there is no evidence to show


@dataclass(frozen=True)
class AreaView:
    name: str
    checks: tuple[CheckView, ...]


@dataclass(frozen=True)
class RunView:
    n: int  # 1-based, as in anchors and matrix headings
    anchor: str
    label: str
    source: str
    kind: str
    command: str
    verdict: str
    verdict_class: str
    exit_status: int | None
    target: tuple[str, ...]  # kernel release, provider, describe: whichever are known (target_summary)
    env_title: str
    environment: tuple[tuple[str, Node], ...]
    totals: tuple[tuple[str, int], ...]
    areas: tuple[AreaView, ...]
    stale: tuple[tuple[Field, ...], ...]


@dataclass(frozen=True)
class Cell:
    text: str  # the outcome, or "—" for a check this run does not have
    column: str  # the FACES column (CSS class), "" when absent
    href: str
    changed: bool
    title: str


@dataclass(frozen=True)
class MatrixRow:
    id: str
    anchor: str
    cells: tuple[Cell, ...]
    changes: tuple[str, ...] = ()  # "run N (label): outcome" for each changed cell

    @property
    def first(self) -> str:
        return self.cells[0].text if self.cells[0].column else "absent"


@dataclass(frozen=True)
class MatrixArea:
    name: str
    rows: tuple[MatrixRow, ...]


class Budget:
    """The evidence a report may still embed (``EVIDENCE_TOTAL``); what it cut, for the page's note."""

    def __init__(self, total: int = EVIDENCE_TOTAL) -> None:
        self.total = total
        self.left = total
        self.cut = 0

    def take(self, title: str, read: Callable[[], str]) -> Evidence:
        """``read()``'s text within what is left; once nothing is, the file is not even read."""
        if self.left <= 0:
            self.cut += 1
            return Evidence(title, "", f"not embedded: the report's {_size(self.total)} of evidence is used up; "
                                       f"read {title} in the bundle")
        text = read()
        if len(text) <= self.left:
            self.left -= len(text)
            return Evidence(title, text)
        self.cut += 1
        text, self.left = text[:self.left], 0
        return Evidence(title, text, f"truncated: the report's {_size(self.total)} of evidence is used up; "
                                     f"read {title} in the bundle for the rest")


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n} characters"


# ----------------------------------------------------------------------------- helpers
def safe_id(text: str) -> str:
    """``text`` as an HTML id and URL fragment: letters, digits, '.', '_' and '-' kept, any other
    character as ``~xx~`` (its code point in hex), so two different check ids never share an anchor."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else f"~{ord(ch):x}~" for ch in text)


def check_anchor(n: int, check_id: str) -> str:
    return f"run-{n}-check-{safe_id(check_id)}"


def http_link(value: str) -> str:
    """``value`` when it is an absolute http(s) URL with a host (it may become an <a>); "" otherwise."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    return value if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


def visible(value: object) -> object:
    """Jinja's finalize: text with its control characters made visible; other values, and markup the
    template made (a macro's output, already made of finalized values), as they are."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return value.translate(_CONTROLS)
    return value


def _scalar(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def env_node(value: object, depth: int = 0, key: str = "") -> Node:
    """An environment.json value as nested tables, at most ``ENV_DEPTH`` deep (then as JSON text)."""
    if isinstance(value, Mapping | list) and depth >= ENV_DEPTH:
        return Node("text", json.dumps(value, ensure_ascii=False, default=str))
    if isinstance(value, Mapping):
        return Node("table", rows=tuple((str(k), env_node(v, depth + 1, str(k))) for k, v in value.items()))
    if isinstance(value, list):
        # run.command: the command line, as one would type it again
        if key in ("command", "argv") and all(isinstance(v, str) for v in value):
            return Node("text", shlex.join(value))
        if all(not isinstance(v, Mapping | list) for v in value):
            return Node("text", ", ".join(_scalar(v) for v in value) if value else "(none)")
        return Node("list", items=tuple(env_node(v, depth + 1) for v in value))
    return Node("text", _scalar(value))


def environment_view(run: Run) -> tuple[str, tuple[tuple[str, Node], ...]]:
    """The run's environment sections (docs/results.md's order first), or a JUnit file's properties."""
    if run.kind == "junit" and not run.environment:
        return "JUnit suite properties", tuple((k, Node("text", v)) for k, v in run.properties.items())
    env = run.environment
    keys = [k for k in ENV_ORDER if k in env] + [k for k in env if k not in ENV_ORDER]
    return "Environment", tuple((k, env_node(env[k], 1)) for k in keys)


def target_summary(run: Run) -> tuple[str, ...]:
    """What the matrix heads a run's column with besides its label: the target's kernel, provider,
    describe (environment.json's target; a JUnit file's tsm.* suite properties, plugin.py)."""
    target = run.environment.get("target")
    if not isinstance(target, Mapping):
        target = {k: run.properties.get(f"tsm.{p}") for k, p in
                  (("kernel_release", "kernel_release"), ("provider", "provider"), ("describe", "target"))}
    return tuple(str(target[k]) for k in ("kernel_release", "provider", "describe") if target.get(k))


def status_text(c: CheckResult) -> str:
    """The column, and the precise outcome when it says more (skip-not-applicable, known, timeout)."""
    return c.status if c.outcome.value == c.status else f"{c.status} ({c.outcome.value})"


def _fields(entry: Mapping[str, str], first: tuple[str, ...]) -> tuple[Field, ...]:
    keys = [k for k in first if entry.get(k)] + [k for k in entry if k not in first]
    return tuple(Field(k, str(entry[k]), http_link(str(entry[k])) if k == "link" else "") for k in keys)


# ----------------------------------------------------------------------------- one run
def _evidence(run: Run, c: CheckResult, budget: Budget) -> tuple[tuple[Evidence, ...], str]:
    """The check's evidence file and its other files, within the budget; or why there are none."""
    if run.kind != "bundle":
        return (), "a JUnit file carries no evidence beyond the reason line; a bundle (run --bundle DIR) does"
    found = []
    if c.evidence:
        found.append(budget.take(c.evidence, lambda: run.evidence_text(c)))
    for rel in c.files:
        found.append(budget.take(rel, functools.partial(read_member, run.source, rel)))
    return tuple(found), ("" if found else "no evidence file was recorded for this check")


def check_view(run: Run, c: CheckResult, anchor: str, budget: Budget) -> CheckView:
    details = c.failed or c.outcome is Outcome.KNOWN or bool(c.evidence or c.files)
    evidence, note = _evidence(run, c, budget) if details else ((), "")
    return CheckView(
        id=c.id, anchor=anchor, outcome=c.outcome.value, column=c.status, status=status_text(c),
        duration=f"{c.duration:.3f}", reason=c.reason, details=details, evidence=evidence,
        known=_fields(c.known, ("where", "reason", "link")), note=note)


def _anchors(n: int, run: Run) -> list[str]:
    """One anchor per check; a check id seen twice in a run (JUnit) gets a numbered second one."""
    seen: dict[str, int] = {}
    out = []
    for c in run.checks:
        seen[c.id] = seen.get(c.id, 0) + 1
        base = check_anchor(n, c.id)
        out.append(base if seen[c.id] == 1 else f"{base}~{seen[c.id]}")
    return out


def run_view(run: Run, n: int, budget: Budget) -> RunView:
    anchors = _anchors(n, run)
    views = [check_view(run, c, a, budget) for c, a in zip(run.checks, anchors)]
    areas = tuple(AreaView(area, tuple(v for c, v in zip(run.checks, views) if c.area == area))
                  for area in run.areas())
    env_title, env = environment_view(run)
    return RunView(
        n=n, anchor=f"run-{n}", label=run.label, source=run.source, kind=run.kind, command=run.command,
        verdict=run.verdict or "unknown", verdict_class=VERDICT_CLASS.get(run.verdict, "other"),
        exit_status=run.exit_status, target=target_summary(run), env_title=env_title, environment=env,
        totals=tuple(run.totals().items()), areas=areas,
        stale=tuple(_fields(s, ("check", "where", "reason", "link")) for s in run.stale))


# ----------------------------------------------------------------------------- the matrix
def matrix_rows(runs: list[Run]) -> tuple[MatrixArea, ...]:
    """The union of the runs' check ids, grouped by area, both in first-seen order."""
    areas: dict[str, dict[str, None]] = {}
    seen: set[str] = set()
    for run in runs:
        for c in run.checks:
            if c.id not in seen:  # a check keeps the area it was first seen in
                seen.add(c.id)
                areas.setdefault(c.area, {})[c.id] = None
    return tuple(MatrixArea(a, tuple(_row(runs, i) for i in ids)) for a, ids in areas.items())


def _row(runs: list[Run], check_id: str) -> MatrixRow:
    cells = _cells(runs, check_id)
    changes = tuple(f"run {n} ({run.label}): {cell.text if cell.column else 'absent'}"
                    for n, (run, cell) in enumerate(zip(runs, cells), 1) if cell.changed)
    return MatrixRow(check_id, f"matrix-{safe_id(check_id)}", cells, changes)


def _cells(runs: list[Run], check_id: str) -> tuple[Cell, ...]:
    """One cell per run; changed where the outcome is not run 1's, or only one of them has the check
    (a check that went away is a change too: a run cut short, a check dropped)."""
    first = runs[0].check(check_id)
    was = first.outcome.value if first else "absent"
    cells = []
    for n, run in enumerate(runs, 1):
        c = run.check(check_id)
        now = c.outcome.value if c else "absent"
        changed = n > 1 and now != was
        if changed:
            title = f"changed: {check_id}: {now} here, {was} in run 1 ({runs[0].label})"
        else:
            title = f"{check_id}: {status_text(c) if c else 'not in this run'}"
        if c is None:
            cells.append(Cell("—", "", "", changed, title))
        else:
            cells.append(Cell(now, c.status, "#" + check_anchor(n, check_id), changed, title))
    return tuple(cells)


# ----------------------------------------------------------------------------- rendering
def environment() -> jinja2.Environment:
    """The report's Jinja2 environment: templates beside this module, autoescaped, strict."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
        finalize=visible, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render(runs: list[Run], evidence_total: int = EVIDENCE_TOTAL) -> str:
    """One self-contained HTML5 document of ``runs``; with several, a checks x runs matrix first.
    At most ``evidence_total`` characters of evidence are embedded; past that, each piece says so."""
    budget = Budget(evidence_total)
    views = [run_view(run, n, budget) for n, run in enumerate(runs, 1)]
    if len(runs) == 1:
        title = f"tsm-conformance report: {runs[0].label}: {views[0].verdict}"
    else:
        title = f"tsm-conformance report: {len(runs)} runs"
    matrix = matrix_rows(runs) if len(runs) > 1 else ()
    context: dict[str, Any] = {
        "title": title, "version": __version__, "runs": views, "columns": COLUMNS, "matrix": matrix,
        "changes": [row for area in matrix for row in area.rows if row.changes], "changed_marker": CHANGED,
        "cut": budget.cut, "evidence_total": _size(evidence_total),
    }
    return environment().get_template("report.html.j2").render(context)


# ----------------------------------------------------------------------------- the command
def _error(msg: str) -> int:
    print(f"tsm-conformance: {msg}", file=sys.stderr)
    return 2


def _output_problem(output: str) -> str:
    """Why ``output`` cannot be written (one line), or ""; checked before any input is read."""
    if not output:
        return "report: give an output file with -o (- for standard output)"
    if os.path.isdir(output):
        return f"{output}: is a directory (give the report's file name)"
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        return f"{output}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{output}: directory {parent} is not writable"
    return ""


def _overwrites_input(output: str, paths: list[str]) -> str:
    """Why writing ``output`` would change an input (a JUnit file given, a file in a bundle given:
    bundle verify would then fail), or ""."""
    out = os.path.realpath(output)
    for path in paths:
        real = os.path.realpath(path)
        if out == real:
            return f"{output}: is an input of this report (write the report elsewhere)"
        if os.path.isdir(real) and out.startswith(real.rstrip(os.sep) + os.sep):
            return f"{output}: inside the bundle {path} (a file there changes the bundle; write the report elsewhere)"
    return ""


def write_atomically(output: str, text: str) -> None:
    """``text`` as ``output``, replacing it in one step (a temporary file beside it, then rename):
    a reader never sees half a report, and a failed write leaves the old one."""
    parent = os.path.dirname(os.path.abspath(output))
    tmp = os.path.join(parent, f".{os.path.basename(output)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # the new name never points at a file a crash left empty
        os.replace(tmp, output)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _to_stdout(text: str) -> None:
    out = sys.stdout
    try:
        if hasattr(out, "buffer"):  # UTF-8 whatever the locale's encoding: the page says charset utf-8
            out.flush()
            out.buffer.write(text.encode("utf-8"))
            out.buffer.flush()
        else:
            out.write(text)
    except BrokenPipeError:  # `report -o - | head`: the reader took what it wanted (pipes.py)
        try:  # the rest to /dev/null, so the interpreter's final flush does not fail either
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


def write_report(paths: list[str], output: str) -> int:
    """``tsm-conformance report PATH... -o OUTPUT``: 0 when the report was written (whatever its
    verdict), 2 with one line on stderr when an input cannot be read or the output written; on 2
    nothing is written.  ``-`` writes to standard output."""
    if not paths:
        return _error("report: give at least one bundle directory or JUnit file")
    if len(paths) > MAX_RUNS:
        return _error(f"report: at most {MAX_RUNS} runs in one report ({len(paths)} given)")
    if output != "-" and (problem := _output_problem(output) or _overwrites_input(output, paths)):
        return _error(problem)
    runs = []
    for path in paths:
        try:
            runs.append(load_run(path))
        except ResultsError as e:
            return _error(str(e))
    text = render(runs)
    if output == "-":
        _to_stdout(text)
        return 0
    try:
        write_atomically(output, text)
    except OSError as e:
        return _error(f"{output}: cannot write ({e.strerror or e})")
    return 0
