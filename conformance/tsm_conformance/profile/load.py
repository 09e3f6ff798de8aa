"""Find, validate, resolve and build provider profiles (shared/style.md §5.4).

Pipeline for one profile:

1. YAML is *composed* (not constructed) so every key keeps its ``line:col``; plain data plus a
   mark per dotted keypath (``attributes.inblob.mode``, ``errors.x.0.errno``) come out of it.
2. Each file is checked against ``profile.schema.json`` on its own, so an error cites that file.
3. ``extends:`` is resolved by name (the including file's directory first, then the search path)
   and deep-merged: mappings recursively, lists and scalars replaced by the child.
4. Cross-key rules the schema cannot express run on the merged data (errno names via
   ``errnos.known``, group references, completeness, sizes that must fit each other).
5. The frozen ``model.Profile`` is built; its ``marks`` say which file and line set each key.

Every problem is one ``ProfileError`` whose ``str()`` is a single line
``FILE:LINE:COL: KEYPATH: message`` that names the bad value and what is allowed.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .. import errnos
from ..suggest import did_you_mean
from .model import Alternative, Attribute, ExpectedFailure, Field, Profile, Range

SCHEMA_VERSION = "tsm-profile/1"
ENTRY_POINT_GROUP = "tsm_conformance.profiles"
#: Checkout or editable install: <repo>/conformance/tsm_conformance/profile/ -> <repo>/profiles
REPO_PROFILES = Path(__file__).resolve().parents[3] / "profiles"
#: Keys that describe one file and are never inherited through ``extends:``.
_PER_FILE_KEYS = ("name", "abstract", "extends")
#: Cap on YAML nodes per file: alias chains ("billion laughs") must not hang the loader.
_MAX_NODES = 20_000


# --------------------------------------------------------------------------- errors

class ProfileError(Exception):
    """A profile problem, located at ``file:line:col`` and a dotted ``keypath``."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 col: int | None = None, keypath: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.keypath = keypath

    def __str__(self) -> str:
        if not self.file:
            return _one_line(self.message)
        if not self.line:  # the file itself is the problem (unreadable, missing)
            return _one_line(f"{self.file}: {self.message}")
        where = f"{self.file}:{self.line}:{self.col or 1}"
        return _one_line(f"{where}: {self.keypath or '(top level)'}: {self.message}")


class ProfileLookupError(ProfileError, LookupError):
    """No profile by that name, or none (or several) fit the probed provider."""


@dataclass(frozen=True)
class _Mark:
    file: str
    line: int
    col: int

    def short(self) -> str:
        return f"{self.file}:{self.line}"


Marks = dict[str, _Mark]


def _one_line(s: str) -> str:
    return " ".join(s.split())


_suggest = did_you_mean


def _show(v: object) -> str:
    """A value as the user wrote it, shortened for one-line messages."""
    if isinstance(v, bool):
        s = "true" if v else "false"
    elif v is None:
        s = "null"
    elif isinstance(v, dict):
        s = "a mapping {" + ", ".join(map(str, v)) + "}"
    elif isinstance(v, list):
        s = f"a list of {len(v)} item(s)"
    else:
        s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _join(kp: str, key: object) -> str:
    return f"{kp}.{key}" if kp else str(key)


def _error_at(marks: Marks, keypath: str, message: str) -> ProfileError:
    """Error at the mark of ``keypath`` (or its nearest marked ancestor)."""
    k = keypath
    while k not in marks and k:
        k = k.rpartition(".")[0]
    m = marks.get(k) or marks[""]
    return ProfileError(message, file=m.file, line=m.line, col=m.col, keypath=keypath)


# --------------------------------------------------------------------------- YAML with marks

class _Builder:
    """Turns a composed YAML node tree into plain data, recording a mark per keypath."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.marks: Marks = {}
        self._scalars = yaml.SafeLoader("")  # only its constructor is used, for scalar typing
        self._count = 0
        self._open: set[int] = set()

    def mark(self, node: Node) -> _Mark:
        return _Mark(self.display, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node: Node, kp: str, message: str) -> ProfileError:
        m = self.mark(node)
        return ProfileError(message, file=m.file, line=m.line, col=m.col, keypath=kp)

    def build(self, node: Node, kp: str) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise self.fail(node, kp, f"profile too large (more than {_MAX_NODES} YAML nodes)")
        if isinstance(node, ScalarNode):
            try:
                return self._scalars.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, OverflowError) as e:  # e.g. 2024-13-45 as a date
                why = getattr(e, "problem", None) or e
                raise self.fail(node, kp, f"cannot read value: {why}") from None
        if id(node) in self._open:  # an alias pointing at its own ancestor
            raise self.fail(node, kp, "recursive YAML alias")
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                out_list = []
                for i, item in enumerate(node.value):
                    self.marks[_join(kp, i)] = self.mark(item)
                    out_list.append(self.build(item, _join(kp, i)))
                return out_list
            assert isinstance(node, MappingNode)
            out: dict[str, Any] = {}
            first_line: dict[str, int] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, ScalarNode):
                    raise self.fail(knode, kp, "mapping keys must be plain names")
                if knode.tag == "tag:yaml.org,2002:merge":
                    raise self.fail(knode, kp, "YAML merge keys ('<<') are not supported; "
                                               "use extends:")
                key = str(knode.value)  # keys stay text: `on:` or `0x10:` must not change type
                sub = _join(kp, key)
                if key in out:
                    raise self.fail(knode, sub, f"duplicate key '{key}' (first set at line "
                                                f"{first_line[key]})")
                self.marks[sub] = self.mark(knode)
                first_line[key] = self.marks[sub].line
                out[key] = self.build(vnode, sub)
            return out
        finally:
            self._open.discard(id(node))


def _read_yaml(path: Path, display: str) -> tuple[dict[str, Any], Marks]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ProfileError(f"cannot read profile: {why}", file=display) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        what = str(e.problem or e)
        if e.context:  # where the construct began often matters more than where it broke
            cm = e.context_mark
            what += f" ({e.context}" + (f" that starts at line {cm.line + 1})" if cm else ")")
        raise ProfileError(f"YAML syntax error: {what}", file=display,
                           line=m.line + 1 if m else 1, col=m.column + 1 if m else 1) from None
    except yaml.YAMLError as e:  # e.g. ReaderError: control characters in the file
        pos = getattr(e, "position", 0) or 0
        raise ProfileError(f"YAML error: {e}", file=display, line=text.count("\n", 0, pos) + 1,
                           col=1) from None
    if root is None:
        raise ProfileError(f"empty profile; expected a mapping starting with "
                           f"'schema: {SCHEMA_VERSION}'", file=display, line=1, col=1)
    b = _Builder(display)
    b.marks[""] = b.mark(root)
    data = b.build(root, "")
    if not isinstance(data, dict):
        raise b.fail(root, "", f"the top level must be a mapping of profile keys, got "
                               f"{_show(data)}")
    return data, b.marks


# --------------------------------------------------------------------------- JSON Schema

@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The profile JSON Schema shipped next to this module."""
    text = resources.files(__package__).joinpath("profile.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "an empty value"}


def _type_word(v: object) -> str:
    for name, test in (("boolean", lambda x: isinstance(x, bool)),
                       ("integer", lambda x: isinstance(x, int)), ("null", lambda x: x is None),
                       ("string", lambda x: isinstance(x, str)),
                       ("object", lambda x: isinstance(x, dict)),
                       ("array", lambda x: isinstance(x, list)),
                       ("number", lambda x: isinstance(x, float))):
        if test(v):
            return _TYPE_WORDS[name]
    return type(v).__name__


def _branch_words(sub: Mapping[str, Any]) -> str:
    if "title" in sub:
        return str(sub["title"])
    if "const" in sub:
        return repr(sub["const"])
    t = sub.get("type", "a value")
    return " or ".join(_TYPE_WORDS.get(x, x) for x in (t if isinstance(t, list) else [t]))


def _descend(err: jsonschema.ValidationError) -> tuple[jsonschema.ValidationError, list[str]]:
    """Step into oneOf/anyOf to the branch whose type fits, keeping the other branches' names
    (they are alternatives only for that same value, not for a value nested inside it)."""
    others: list[str] = []
    while err.validator in ("oneOf", "anyOf") and err.context:
        branches = err.validator_value
        mismatched = {c.relative_schema_path[0] for c in err.context
                      if c.validator == "type" and not c.relative_path}
        fitting = [i for i in range(len(branches)) if i not in mismatched]
        if not fitting:
            break
        i = fitting[0]
        sub = [c for c in err.context if c.relative_schema_path[0] == i]
        best = jsonschema.exceptions.best_match(sub) or sub[0]
        if best.relative_path:  # the problem is inside the value: other branches do not apply
            others = []
        else:
            others += [_branch_words(b) for j, b in enumerate(branches) if j != i]
        err = best
    return err, others


def _schema_message(err: jsonschema.ValidationError, marks: Marks) -> ProfileError:
    err, others = _descend(err)
    kp = ".".join(str(p) for p in err.absolute_path)
    v, inst, sch, val = err.validator, err.instance, err.schema, err.validator_value
    # The schema's description explains scalar formats ("0444", "6.10"); skip it for containers.
    scalar = isinstance(sch, dict) and sch.get("type") not in ("object", "array")
    hint = f" ({sch['description']})" if scalar and "description" in sch else ""
    alt = "".join(f", or {o}" for o in others)
    if v == "additionalProperties" and isinstance(inst, dict):
        props = list(sch.get("properties", {}))
        pats = list(sch.get("patternProperties", {}))
        extra = [k for k in inst if k not in props and not any(re.search(p, k) for p in pats)]
        key = extra[0] if extra else "?"
        if props:
            msg = (f"unknown key '{key}'{_suggest(key, props) or ';'} allowed keys: "
                   f"{', '.join(props)}")
        else:
            msg = f"key '{key}' is not allowed: names must match {' or '.join(pats)}"
        return _error_at(marks, _join(kp, key), msg)
    if v == "required" and isinstance(inst, dict):
        missing = [r for r in val if r not in inst]
        return _error_at(marks, kp, f"missing required key '{missing[0]}' (required: "
                                    f"{', '.join(val)})")
    if v == "const":
        msg = f"{_show(inst)} is not allowed; expected {val!r}{alt}"
    elif v == "enum":
        allowed = ", ".join(repr(x) for x in val)
        msg = f"{_show(inst)} is not allowed; expected one of {allowed}{alt}{_suggest(inst, val)}"
    elif v == "type":
        want = " or ".join(_TYPE_WORDS.get(t, t) for t in (val if isinstance(val, list) else [val]))
        msg = f"expected {want}{alt}, got {_show(inst)} ({_type_word(inst)}){hint}"
    elif v in ("oneOf", "anyOf"):  # every branch failed on type
        words = " or ".join(_branch_words(b) for b in val)
        msg = f"expected {words}, got {_show(inst)} ({_type_word(inst)})"
    elif v == "pattern":
        msg = f"{_show(inst)} does not match {val}{hint}"
    elif v == "minimum":
        msg = f"{_show(inst)} is below the minimum {val}"
    elif v == "maximum":
        msg = f"{_show(inst)} is above the maximum {val}"
    elif v == "minItems":
        msg = f"needs at least {val} item(s)"
    elif v == "uniqueItems":
        msg = f"list has duplicate items: {_show(inst)}"
    elif v == "minLength":
        msg = "must not be empty"
    else:
        msg = err.message
    return _error_at(marks, kp, msg)


def _check_schema(data: dict[str, Any], marks: Marks) -> None:
    # A different format version makes every other complaint noise: say that first.
    if "schema" in data and data["schema"] != SCHEMA_VERSION:
        raise _error_at(marks, "schema", f"unsupported schema {_show(data['schema'])}; this "
                                         f"loader reads '{SCHEMA_VERSION}'")
    errors = [_schema_message(e, marks) for e in _validator().iter_errors(data)]
    if errors:  # report the one the user meets first reading top to bottom
        raise min(errors, key=lambda e: (e.line or 0, e.col or 0))


# --------------------------------------------------------------------------- search path

def _display(p: Path) -> str:
    """Relative to the working directory when below it (messages carry no host paths)."""
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _entry_point_dirs() -> list[Path]:
    out = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # a broken vendor plugin must not hide the built-in profiles
            warnings.warn(f"profile entry point {ep.name!r} ({ep.value}) failed to load: {e}",
                          stacklevel=2)
            continue
        f = getattr(obj, "__file__", None)
        if isinstance(obj, (str, Path)):  # an attribute naming the directory itself
            out.append(Path(obj).resolve())
        elif f:
            out.append(Path(f).resolve().parent)
        else:  # namespace package
            out += [Path(p).resolve() for p in getattr(obj, "__path__", [])]
    return out


def _packaged_dir() -> Path | None:
    try:
        p = Path(str(resources.files("tsm_conformance").joinpath("_profiles")))
    except (ModuleNotFoundError, TypeError):
        return None
    return p if p.is_dir() else None


def profile_dirs() -> list[Path]:
    """Directories searched for profiles by name, first hit wins: entry points of group
    ``tsm_conformance.profiles``, the wheel's ``tsm_conformance/_profiles``, the checkout's
    ``profiles/``."""
    dirs = _entry_point_dirs()
    packaged = _packaged_dir()
    if packaged:
        dirs.append(packaged)
    if REPO_PROFILES.is_dir():
        dirs.append(REPO_PROFILES)
    unique: dict[Path, Path] = {}
    for d in dirs:
        unique.setdefault(d.resolve(), d)
    return list(unique.values())


def _profile_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def list_profiles() -> list[tuple[str, str]]:
    """``(name, path)`` of every profile on the search path (abstract ones too), by name."""
    found: dict[str, str] = {}
    for d in profile_dirs():
        for p in _profile_files(d):
            found.setdefault(p.stem, _display(p))
    return sorted(found.items())


def _find(name: str, first: Iterable[Path] = ()) -> Path | None:
    for d in [*first, *profile_dirs()]:
        for ext in (".yaml", ".yml"):
            p = d / f"{name}{ext}"
            if p.is_file():
                return p
    return None


def _is_path(s: str) -> bool:
    return s.endswith((".yaml", ".yml")) or "/" in s


def _unknown(name: str, extra: Iterable[str] = ()) -> str:
    known = sorted({n for n, _ in list_profiles()} | set(extra))
    return (f"unknown profile '{name}'{_suggest(name, known) or ';'} known profiles: "
            f"{', '.join(known) or '(none)'}")


# --------------------------------------------------------------------------- extends + merge

def _merge(parent: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(parent)
    for k, v in child.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _merged_marks(data: Any, parent: Marks, child: Marks, kp: str = "",
                  out: Marks | None = None) -> Marks:
    """A mark for every keypath of the merged data, the child's where it has one."""
    out = {} if out is None else out
    mark = child.get(kp) or parent.get(kp)
    if mark:
        out[kp] = mark
    items: Iterable[tuple[Any, Any]] = ()
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    for k, v in items:
        _merged_marks(v, parent, child, _join(kp, k), out)
    return out


def _read_profile(path: Path, display: str) -> tuple[dict[str, Any], Marks]:
    data, marks = _read_yaml(path, display)
    _check_schema(data, marks)
    if data["name"] != path.stem:  # names are looked up by file name, so they must agree
        raise _error_at(marks, "name", f"profile name '{data['name']}' does not match its file "
                                       f"name '{path.name}'; expected '{path.stem}'")
    return data, marks


_Frame = tuple[Path, str, Marks]  # (resolved path, profile name, marks) on the extends stack


def _resolve(path: Path, display: str, stack: list[_Frame]
             ) -> tuple[dict[str, Any], Marks, tuple[str, ...]]:
    """Read one file and everything it extends; returns merged data, marks and parent chain."""
    data, marks = _read_profile(path, display)
    parent = data.get("extends")
    if parent is None:
        return data, marks, ()
    ppath = _find(parent, first=[path.parent])
    if ppath is None:
        siblings = [p.stem for p in _profile_files(path.parent)] if path.parent.is_dir() else []
        raise _error_at(marks, "extends", _unknown(parent, siblings))
    frames = [*stack, (path.resolve(), data["name"], marks)]
    for i, (seen_path, _, seen_marks) in enumerate(frames):
        if seen_path == ppath.resolve():
            names = [n for _, n, _ in frames[i:]] + [frames[i][1]]
            raise _error_at(seen_marks, "extends", f"extends cycle: {' -> '.join(names)}")
    pdisplay = str(ppath) if not ppath.is_absolute() else _display(ppath)
    pdata, pmarks, chain = _resolve(ppath, pdisplay, frames)
    for k in _PER_FILE_KEYS:
        pdata.pop(k, None)
    merged = _merge(pdata, data)
    return merged, _merged_marks(merged, pmarks, marks), (parent, *chain)


# --------------------------------------------------------------------------- semantic checks

_LIMIT_KEYS = ("inblob_max", "privlevel_max", "text_store_max", "name_max", "outblob_max")


def _check_semantics(d: dict[str, Any], marks: Marks) -> None:
    def fail(kp: str, msg: str) -> ProfileError:
        return _error_at(marks, kp, msg)

    inherited = "(set it here or in a profile this one extends)"
    for key in ("item_mode", "limits", "attributes"):
        if key not in d:
            raise fail("", f"missing '{key}' {inherited}")
    for key in _LIMIT_KEYS:
        if key not in d["limits"]:
            raise fail("limits", f"missing 'limits.{key}' {inherited}")
    if "initial" not in d.get("generation", {}):
        raise fail("generation", f"missing 'generation.initial' {inherited}")
    if not d.get("abstract") and not d.get("provider"):
        raise fail("name", "a profile that is not 'abstract: true' needs 'provider:' (the text "
                           "of the provider attribute, e.g. sev_guest)")

    attrs: dict[str, dict[str, Any]] = d["attributes"]
    groups: dict[str, list[str]] = d.get("groups", {})
    for a, spec in attrs.items():
        for key in ("kind", "mode", "visible"):
            if key not in spec:
                raise fail(f"attributes.{a}", f"attribute '{a}' has no '{key}' {inherited}")
    for g, members in groups.items():
        for i, m in enumerate(members):
            if m not in attrs:
                raise fail(f"groups.{g}.{i}", f"unknown attribute '{m}' in group '{g}'"
                                              f"{_suggest(m, attrs) or ';'} attributes: "
                                              f"{', '.join(attrs)}")
    for a, spec in attrs.items():
        vis = spec["visible"]
        if isinstance(vis, dict):
            g = vis["group"]
            if g not in groups:
                raise fail(f"attributes.{a}.visible.group",
                           f"undefined group '{g}'{_suggest(g, groups) or ';'} defined groups: "
                           f"{', '.join(groups) or '(none; add a groups: section)'}")
            if a not in groups[g]:
                raise fail(f"attributes.{a}.visible.group",
                           f"attribute '{a}' is shown with group '{g}' but groups.{g} does not "
                           f"list it")
    for g in d.get("match", {}).get("groups", {}):
        if g not in groups:
            raise fail(f"match.groups.{g}", f"undefined group '{g}'{_suggest(g, groups) or ';'} "
                                            f"defined groups: {', '.join(groups) or '(none)'}")

    for kp, name in _errno_names(d):
        if not errnos.known(name):
            raise fail(kp, f"unknown errno '{name}'{_suggest(name, errnos.ABI_ERRNOS) or ';'} "
                           f"allowed: {', '.join(errnos.ABI_ERRNOS)}")

    lim = d["limits"]
    rng = d.get("inblob", {}).get("report_lengths")
    if rng:
        if rng["min"] > rng["max"]:
            raise fail("inblob.report_lengths.min",
                       f"min {rng['min']} is greater than max {rng['max']}")
        if rng["max"] > lim["inblob_max"]:
            raise fail("inblob.report_lengths.max", f"max {rng['max']} is above "
                                                    f"limits.inblob_max {lim['inblob_max']}")
    floor = d.get("privlevel", {}).get("floor")
    if isinstance(floor, int) and floor > lim["privlevel_max"]:
        raise fail("privlevel.floor", f"floor {floor} is above limits.privlevel_max "
                                      f"{lim['privlevel_max']}")
    rep = d.get("report", {})
    nonce = rep.get("nonce")
    if nonce and nonce["length"] > lim["inblob_max"]:
        raise fail("report.nonce.length", f"nonce length {nonce['length']} is longer than "
                                          f"limits.inblob_max {lim['inblob_max']}")
    for key, size in (("nonce", "length"), ("privlevel", "width")):
        f = rep.get(key)
        if f and f["offset"] is not None and "min_length" in rep \
                and f["offset"] + f[size] > rep["min_length"]:
            raise fail(f"report.{key}.offset",
                       f"field ends at {f['offset'] + f[size]:#x}, past report.min_length "
                       f"{rep['min_length']:#x}")


def _errno_names(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for cond, v in d.get("errors", {}).items():
        if isinstance(v, str):
            out.append((f"errors.{cond}", v))
        else:
            out += [(f"errors.{cond}.{i}.errno", alt["errno"]) for i, alt in enumerate(v)]
    for kp in (("inblob", "rejected_length_errno"), ("service", "rejected_errno")):
        name = d.get(kp[0], {}).get(kp[1])
        if name is not None:
            out.append((".".join(kp), name))
    return out


# --------------------------------------------------------------------------- build

def _alts(v: str | list[dict[str, Any]], key: str) -> tuple[Alternative, ...]:
    if isinstance(v, str):
        return (Alternative(value=v),)
    return tuple(Alternative(value=a[key], since=a.get("since"), until=a.get("until"),
                             commit=a.get("commit")) for a in v)


def _build(d: dict[str, Any], marks: Marks, chain: tuple[str, ...], display: str) -> Profile:
    lim = d["limits"]
    groups = {g: tuple(m) for g, m in d.get("groups", {}).items()}
    attrs = {}
    for a, s in d["attributes"].items():
        vis = s["visible"]
        attrs[a] = Attribute(name=a, kind=s["kind"], mode=int(s["mode"], 8),
                             visible=f"group:{vis['group']}" if isinstance(vis, dict) else vis,
                             since=s.get("since"))
    inblob, priv = d.get("inblob", {}), d.get("privlevel", {})
    rep, svc = d.get("report", {}), d.get("service", {})
    rng, nonce, rpriv = inblob.get("report_lengths"), rep.get("nonce"), rep.get("privlevel")
    floor = priv.get("floor", "any")
    return Profile(
        name=d["name"], path=display, abstract=bool(d.get("abstract", False)),
        provider=d.get("provider"), description=d.get("description", ""), since=d.get("since"),
        item_mode=int(d["item_mode"], 8),
        limits_inblob_max=int(lim["inblob_max"]), limits_privlevel_max=int(lim["privlevel_max"]),
        limits_text_store_max=int(lim["text_store_max"]), limits_name_max=int(lim["name_max"]),
        limits_outblob_max=_alts(lim["outblob_max"], "value"),
        attributes=attrs, groups=groups,
        match_groups={g: s == "present" for g, s in d.get("match", {}).get("groups", {}).items()},
        errors={c: _alts(v, "errno") for c, v in d.get("errors", {}).items()},
        generation_initial=int(d["generation"]["initial"]),
        inblob_report_lengths=Range(int(rng["min"]), int(rng["max"])) if rng else None,
        inblob_rejected_length_errno=inblob.get("rejected_length_errno"),
        privlevel_floor=None if floor == "any" else int(floor),
        privlevel_honoured=bool(priv.get("honoured", False)),
        report_min_length=rep.get("min_length"),
        report_nonce=Field(nonce["offset"], int(nonce["length"])) if nonce else None,
        report_privlevel=Field(int(rpriv["offset"]), int(rpriv["width"])) if rpriv else None,
        report_fresh_per_generation=bool(rep.get("fresh_per_generation", False)),
        service_provider_values=tuple(svc.get("provider_values", ())),
        service_provider_rejected_errno=svc.get("rejected_errno"),
        expected_failures=tuple(ExpectedFailure(check=x["check"], reason=x["reason"],
                                                tracking=x["tracking"], kernels=x.get("kernels"))
                                for x in d.get("expected_failures", ())),
        extends=chain,
        marks={k: m.short() for k, m in marks.items() if k},
    )


# --------------------------------------------------------------------------- public API

def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (search path) or by file path (anything ending .yaml/.yml or
    containing '/'), resolve ``extends:`` and validate it.  Raises ``ProfileError``."""
    s = str(name_or_path)
    if _is_path(s):
        return _load_file(Path(s), s)
    found = _find(s)
    if found is None:
        raise ProfileLookupError(_unknown(s))
    return _load_file(found, _display(found))


def _load_file(path: Path, display: str) -> Profile:
    if not path.is_file():
        raise ProfileError("no such profile file", file=display)
    data, marks, chain = _resolve(path, display, [])
    _check_semantics(data, marks)
    return _build(data, marks, chain, display)


def validate_paths(paths: Iterable[str | Path]) -> list[tuple[str, ProfileError | None]]:
    """Load every file (directories: their *.yaml / *.yml) and report each one's first error."""
    files: list[str] = []
    for p in map(Path, paths):
        files += [str(f) for f in _profile_files(p)] if p.is_dir() else [str(p)]
    out: list[tuple[str, ProfileError | None]] = []
    for f in files:
        try:
            _load_file(Path(f), f)
            out.append((f, None))
        except ProfileError as e:
            out.append((f, e))
    return out


def select_profile(provider: str, groups_present: Mapping[str, bool]) -> Profile:
    """The profile for a probed provider: non-abstract, same ``provider``, every ``match.groups``
    rule holding; the most derived one (longest extends chain) if several fit."""
    profiles = [load_profile(name) for name, _ in list_profiles()]
    same = [p for p in profiles if not p.abstract and p.provider == provider]
    fits = [p for p in same if all(groups_present.get(g, False) == want
                                   for g, want in p.match_groups.items())]
    present = ", ".join(g for g, v in sorted(groups_present.items()) if v) or "none"
    if not fits:
        if not same:
            providers = sorted({p.provider for p in profiles if p.provider})
            raise ProfileLookupError(
                f"no profile for provider '{provider}'{_suggest(provider, providers) or ';'} "
                f"profiled providers: {', '.join(providers)}")
        needs = "; ".join(f"{p.name} needs " + ", ".join(
            f"{g} {'present' if w else 'absent'}" for g, w in p.match_groups.items()) for p in same)
        raise ProfileLookupError(f"no profile for provider '{provider}' matches the probed groups "
                                 f"(present: {present}): {needs}")
    fits.sort(key=lambda p: len(p.extends), reverse=True)
    if len(fits) > 1 and len(fits[0].extends) == len(fits[1].extends):
        tied = [p.name for p in fits if len(p.extends) == len(fits[0].extends)]
        raise ProfileLookupError(f"several profiles fit provider '{provider}' (present: "
                                 f"{present}): {', '.join(tied)}; choose one with --tsm-profile")
    return fits[0]


# --------------------------------------------------------------------------- rendering

class _Mode(int):
    """An int rendered as a quoted octal mode string."""


class _Hex(int):
    """An int rendered in hex (report offsets, as the profiles write them)."""


_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
#: Records printed on one line, as the shipped profiles write them.
_FLOW = re.compile(r"(attributes\.[^.]+|report\.(nonce|privlevel)|inblob\.report_lengths)")


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, _Mode):
        return f'"{int(v):04o}"'
    if isinstance(v, _Hex):
        return f"{int(v):#x}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_scalar(x)}" for k, x in v.items()) + "}"
    s = str(v)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_/.-]*", s) and s.lower() not in _YAML_WORDS:
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def _alts_data(alts: tuple[Alternative, ...], key: str, force_list: bool) -> Any:
    if len(alts) == 1 and not force_list and not alts[0].hint():
        return alts[0].value
    return [{key: a.value, **{k: getattr(a, k) for k in ("since", "until", "commit")
                              if getattr(a, k)}} for a in alts]


def _profile_data(p: Profile) -> dict[str, Any]:
    """The resolved profile as profile-language data (keys mirror the YAML keypaths)."""
    d: dict[str, Any] = {"schema": SCHEMA_VERSION, "name": p.name}
    if p.abstract:
        d["abstract"] = True
    for key in ("provider", "since", "description"):
        if getattr(p, key):
            d[key] = getattr(p, key)
    d["limits"] = {"inblob_max": p.limits_inblob_max, "privlevel_max": p.limits_privlevel_max,
                   "text_store_max": p.limits_text_store_max, "name_max": p.limits_name_max,
                   "outblob_max": _alts_data(p.limits_outblob_max, "value", True)}
    d["item_mode"] = _Mode(p.item_mode)
    d["attributes"] = {a.name: {"kind": a.kind, "mode": _Mode(a.mode),
                                "visible": {"group": a.group} if a.group else a.visible,
                                **({"since": a.since} if a.since else {})}
                       for a in p.attributes.values()}
    if p.groups:
        d["groups"] = {g: list(m) for g, m in p.groups.items()}
    if p.match_groups:
        d["match"] = {"groups": {g: "present" if w else "absent"
                                 for g, w in p.match_groups.items()}}
    d["generation"] = {"initial": p.generation_initial}
    if p.errors:
        d["errors"] = {c: _alts_data(a, "errno", False) for c, a in p.errors.items()}
    inblob: dict[str, Any] = {}
    if p.inblob_report_lengths:
        inblob["report_lengths"] = {"min": p.inblob_report_lengths.min,
                                    "max": p.inblob_report_lengths.max}
    if p.inblob_rejected_length_errno:
        inblob["rejected_length_errno"] = p.inblob_rejected_length_errno
    if inblob:
        d["inblob"] = inblob
    if p.privlevel_floor is not None or p.privlevel_honoured:
        d["privlevel"] = {"floor": "any" if p.privlevel_floor is None else p.privlevel_floor,
                          "honoured": p.privlevel_honoured}
    rep: dict[str, Any] = {}
    if p.report_min_length is not None:
        rep["min_length"] = p.report_min_length
    if p.report_nonce:
        off = p.report_nonce.offset
        rep["nonce"] = {"offset": None if off is None else _Hex(off),
                        "length": p.report_nonce.length}
    if p.report_privlevel:
        rep["privlevel"] = {"offset": _Hex(p.report_privlevel.offset or 0),
                            "width": p.report_privlevel.length}
    if p.report_fresh_per_generation:
        rep["fresh_per_generation"] = True
    if rep:
        d["report"] = rep
    svc: dict[str, Any] = {}
    if p.service_provider_values:
        svc["provider_values"] = list(p.service_provider_values)
    if p.service_provider_rejected_errno:
        svc["rejected_errno"] = p.service_provider_rejected_errno
    if svc:
        d["service"] = svc
    if p.expected_failures:
        d["expected_failures"] = [{k: v for k, v in vars(x).items() if v is not None}
                                  for x in p.expected_failures]
    return d


def _note(p: Profile, kp: str, flow: Any = None) -> str:
    """Trailing ``# file:line``; for one-line records also the sub-keys set elsewhere."""
    own = p.marks.get(kp)
    if own is None:
        return ""
    other: dict[str, list[str]] = {}
    for k in flow or ():
        m = p.marks.get(f"{kp}.{k}")
        if m and m.rsplit(":", 1)[0] != own.rsplit(":", 1)[0]:
            other.setdefault(m, []).append(str(k))
    extra = "".join(f"; {', '.join(ks)}: {m}" for m, ks in other.items())
    return f"  # {own}{extra}"


def _render(d: Mapping[str, Any], kp: str, p: Profile, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    for k, v in d.items():
        sub = _join(kp, k)
        if isinstance(v, dict) and v and not _FLOW.fullmatch(sub):
            out.append(f"{pad}{k}:{_note(p, sub)}")
            _render(v, sub, p, depth + 1, out)
        elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
            out.append(f"{pad}{k}:{_note(p, sub)}")
            out += [f"{pad}  - {_scalar(x)}{_note(p, _join(sub, i), x)}" for i, x in enumerate(v)]
        else:
            out.append(f"{pad}{k}: {_scalar(v)}{_note(p, sub, v if isinstance(v, dict) else None)}")


def render_profile(p: Profile) -> str:
    """The merged, resolved profile as YAML (loadable again), each line annotated with the
    ``file:line`` that set it; for ``tsm-conformance profiles show NAME``."""
    chain = " -> ".join((p.name, *p.extends))
    out = [f"# resolved profile {p.name} from {p.path}; extends chain: {chain}"]
    _render(_profile_data(p), "", p, 0, out)
    return "\n".join(out) + "\n"
