"""YAML reading that keeps a ``file:line:col`` mark for every key.

Owns turning one profile file into plain data plus ``Marks`` (dotted keypath -> mark): the YAML
is *composed*, not constructed, so each node keeps its position; keys stay text, duplicate keys,
merge keys (``<<``), recursive aliases and oversized alias expansions (``MAX_NODES``) are
rejected, and read or syntax errors become one-line ``ProfileError``s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Mark, Marks, ProfileError, join, show
from .schemacheck import SCHEMA_VERSION

#: Cap on YAML nodes per file: alias chains ("billion laughs") must not hang the loader.
MAX_NODES = 20_000


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

    def build(self, node: Node, kp: str) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise self.fail(node, kp, f"profile too large (more than {MAX_NODES} YAML nodes)")
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
                    self.marks[join(kp, i)] = self.mark(item)
                    out_list.append(self.build(item, join(kp, i)))
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
                out[key] = self.build(vnode, sub)
            return out
        finally:
            self._open.discard(id(node))


def read_yaml(path: Path, display: str) -> tuple[dict[str, Any], Marks]:
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
                               f"{show(data)}")
    return data, b.marks
