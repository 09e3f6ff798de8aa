"""YAML reading that keeps a ``file:line:col`` mark for every key.

Owns turning one profile file into plain data plus ``Marks`` (dotted keypath -> mark): the YAML
is *composed*, not constructed, so each node keeps its position; keys stay text, duplicate keys,
merge keys (``<<``), recursive aliases and oversized alias expansions (``MAX_NODES``) are
rejected, and read or syntax errors become one-line ``ProfileError``s.

Hostile files are bounded before they cost anything (``inputs.py`` states the bounds): the file is
read with ``inputs.read_bounded`` (a regular file of at most ``PROFILE_MAX`` bytes; FIFOs, devices
and directories refused unread), must be UTF-8, and is composed by ``_BoundedLoader``, which stops
at ``MAX_DEPTH`` levels of nesting (block or flow) and at ``MAX_NODES`` nodes while composing, so a
3,000-level file never reaches Python's recursion limit and a huge one is not composed whole.  The
builder applies both bounds again after aliases are expanded.  Only the core YAML tags are taken
(no ``!!python/...``, ``!!set``, ...): profiles are plain data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..inputs import PROFILE_DEPTH, PROFILE_MAX, PROFILE_NODES, InputError, read_bounded, utf8
from .errors import Mark, Marks, ProfileError, join, show
from .schemacheck import SCHEMA_VERSION

#: Cap on YAML nodes per file, composed and after aliases are expanded: alias chains ("billion
#: laughs") must not hang the loader.
MAX_NODES = PROFILE_NODES
#: Cap on nesting (mappings and sequences in each other), composed and after aliases are expanded.
MAX_DEPTH = PROFILE_DEPTH
_CORE = "tag:yaml.org,2002:"
#: The tags a profile's values may carry (implicit ones included): plain data only.
SCALAR_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
COLLECTION_TAGS = frozenset({_CORE + "map", _CORE + "seq"})


class _TooBig(Exception):
    """Raised by ``_BoundedLoader``: (message, mark)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader's composer with a bound on nesting depth and on the number of nodes composed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooBig(f"profile too large (more than {MAX_NODES} YAML nodes)", self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooBig(f"nested too deeply (more than {MAX_DEPTH} levels of mappings and sequences)",
                              self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    """Turns a composed YAML node tree into plain data, recording a mark per keypath."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.marks: Marks = {}
        self._scalars = yaml.SafeLoader("")  # only its constructor is used, for scalar typing
        self._count = 0
        self._open: set[int] = set()

    def mark(self, node: Node) -> Mark:
        return Mark(self.display, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node: Node, kp: str, message: str) -> ProfileError:
        m = self.mark(node)
        return ProfileError(message, file=m.file, line=m.line, col=m.col, keypath=kp)

    def build(self, node: Node, kp: str, depth: int = 0) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise self.fail(node, kp, f"profile too large (more than {MAX_NODES} YAML nodes)")
        if node.tag not in (SCALAR_TAGS if isinstance(node, ScalarNode) else COLLECTION_TAGS):
            tag = node.tag.replace(_CORE, "!!")
            raise self.fail(node, kp, f"YAML tag {show(tag)} is not allowed: profiles are plain data "
                                      f"(strings, numbers, booleans, null, mappings, lists)")
        if isinstance(node, ScalarNode):
            try:
                return self._scalars.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, OverflowError) as e:  # e.g. 2024-13-45 as a date
                why = getattr(e, "problem", None) or e
                raise self.fail(node, kp, f"cannot read value: {why}") from None
        if id(node) in self._open:  # an alias pointing at its own ancestor
            raise self.fail(node, kp, "recursive YAML alias")
        if depth >= MAX_DEPTH:  # aliases can nest what the text does not
            raise self.fail(node, kp, f"nested too deeply (more than {MAX_DEPTH} levels of mappings and "
                                      f"sequences, aliases expanded)")
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                out_list = []
                for i, item in enumerate(node.value):
                    self.marks[join(kp, i)] = self.mark(item)
                    out_list.append(self.build(item, join(kp, i), depth + 1))
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
                sub = join(kp, key)
                if key in out:
                    raise self.fail(knode, sub, f"duplicate key '{key}' (first set at line "
                                                f"{first_line[key]})")
                self.marks[sub] = self.mark(knode)
                first_line[key] = self.marks[sub].line
                out[key] = self.build(vnode, sub, depth + 1)
            return out
        finally:
            self._open.discard(id(node))


def read_yaml(path: Path, display: str, what: str = "profile", limit: int = PROFILE_MAX,
              schema: str = SCHEMA_VERSION) -> tuple[dict[str, Any], Marks]:
    """A YAML file of plain data with a mark per key (profiles; baselines say ``what`` and
    ``schema``, the version key their files start with)."""
    try:
        text = utf8(read_bounded(path, limit, what), display)
    except InputError as e:
        if e.line:
            raise ProfileError(e.why, file=display, line=e.line, col=e.col) from None
        raise ProfileError(f"cannot read {what}: {e.why}", file=display) from None
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader already checks the characters
        root = loader.get_single_node()
    except _TooBig as e:
        message, m = e.args
        raise ProfileError(message, file=display, line=m.line + 1, col=m.column + 1) from None
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
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise ProfileError(f"empty {what}; expected a mapping starting with "
                           f"'schema: {schema}'", file=display, line=1, col=1)
    b = _Builder(display)
    b.marks[""] = b.mark(root)
    data = b.build(root, "")
    if not isinstance(data, dict):
        raise b.fail(root, "", f"the top level must be a mapping of {what} keys, got "
                               f"{show(data)}")
    return data, b.marks
