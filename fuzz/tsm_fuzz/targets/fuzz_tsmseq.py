"""Parser target: the .tsmseq grammar (``tsm_conformance.seq``), what ``replay`` reads from any file.

The input is the file's bytes.  The oracle (issue 15: hostile input gives one line, never a
traceback):

* reading them as ``load_tsmseq`` does (UTF-8, then ``parse_tsmseq``) gives either a ``Sequence`` or
  a ``ValueError`` (``InputError``/``SeqError``) whose message is one line; any other exception is a
  finding;
* a parsed sequence is held to the grammar as replay holds it (``confine``: no error), and its text
  form reads back as the same sequence (``format_tsmseq`` -> ``parse_tsmseq``);
* on the in-process emulator (``--emulate``, the default), a parsed single-threaded sequence of up
  to ``MAX_STEPS`` steps replays without an exception: every grammatical operation means something
  to the executor (the tree is rebooted for each input).  No oracle of the results: ``sequences``
  does that.
"""

from __future__ import annotations

from collections.abc import Callable

from ..api import Finding, TargetContext
from ..harness import refused_in_one_line, where

NAME = "tsmseq"
DESCRIPTION = ".tsmseq parser (replay's input): a Sequence or a one-line ValueError, never another exception"
INSTRUMENT = ("tsm_conformance.seq", "tsm_conformance.inputs")
MAX_LEN = 4096  # libFuzzer -max_len: lines and literals of every kind fit; the bounds are unit-tested
MAX_STEPS = 64  # steps replayed per input


def make(ctx: TargetContext) -> Callable[[bytes], None]:
    from tsm_conformance.inputs import utf8
    from tsm_conformance.seq import confine, format_tsmseq, parse_tsmseq, replay, threaded
    tree = ctx.tree() if ctx.emulate else None
    prefix = f"{ctx.prefix}s-"
    rule = "a .tsmseq reads as a Sequence or as one ValueError line, and a Sequence replays without an exception"

    def one(data: bytes) -> None:
        try:
            seq = parse_tsmseq(utf8(data, "fuzz.tsmseq"))
        except ValueError as e:
            refused_in_one_line(rule, e)
            return
        except Exception as e:  # noqa: BLE001 - any other exception is the finding
            raise Finding(rule, f"{type(e).__name__}: {e} ({where(e)}) on {len(data)} bytes") from e
        try:
            confine(seq, prefix)
            again = parse_tsmseq(format_tsmseq(seq))
        except Exception as e:  # noqa: BLE001
            raise Finding(rule, f"a parsed sequence is refused on its own text form: {type(e).__name__}: {e} "
                                f"({where(e)})") from e
        if again.steps != seq.steps or again.header != seq.header:
            raise Finding(rule, "format_tsmseq then parse_tsmseq does not give the same sequence back")
        if tree is None or threaded(seq) or len(seq.steps) > MAX_STEPS:
            return
        tree.reboot()
        try:
            replay(tree, seq, prefix, attempts=1)
        except Exception as e:  # noqa: BLE001
            raise Finding(rule, f"replay of a parsed sequence raised {type(e).__name__}: {e} ({where(e)})") from e
    return one
