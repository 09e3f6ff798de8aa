"""The report-parser targets' shared body: any exception other than ``ParseError`` is a crash.

``formats.registry.parse(name, data)`` promises to raise only ``formats.base.ParseError`` on bad
input; an IndexError, struct.error, RecursionError ... escaping it is a Finding (the crash input is
the evidence; there is no operation sequence).  A parsed result is also rendered as the `inspect`
command would (``to_jsonable``), since that runs on the same untrusted bytes.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

from .api import Finding, TargetContext


def unavailable(fmt: str) -> str | None:
    """Why the parser for ``fmt`` cannot run here (not landed yet, or fails to import)."""
    try:
        from tsm_conformance.formats import registry
        if fmt not in registry.FORMATS:
            return f"format {fmt} is not in formats.registry"
        registry.parser(fmt)
    except ImportError as e:
        return f"the {fmt} parser is not available: {e}"
    return None


def make(fmt: str, target: str) -> Callable[[TargetContext], Callable[[bytes], None]]:
    def _make(ctx: TargetContext) -> Callable[[bytes], None]:
        from tsm_conformance.formats import registry
        from tsm_conformance.formats.base import ParseError, to_jsonable
        parse = registry.parser(fmt)
        rule = f"formats.registry.parse({fmt!r}, data) raises only ParseError on malformed input"

        def one(data: bytes) -> None:
            try:
                to_jsonable(parse(data))
            except ParseError:
                return
            except Exception as e:  # noqa: BLE001 - any other exception is the finding
                frame = traceback.extract_tb(e.__traceback__)[-1]
                where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}"
                raise Finding(rule, f"{type(e).__name__}: {e} ({where}) on {len(data)} bytes") from e
        return one
    return _make
