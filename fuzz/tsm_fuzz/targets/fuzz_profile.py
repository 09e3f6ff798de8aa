"""Parser target: the profile loader (``tsm_conformance.profile.load``), what ``--profile PATH`` and
``profiles validate`` read from any file.

The input is the bytes of a profile file named ``fuzz.yaml`` (so a valid one says ``name: fuzz``;
``extends:`` finds the shipped profiles on the search path).  The oracle (issue 15: hostile input
gives one line, never a traceback): ``load_profile`` returns a ``Profile`` or raises a
``ProfileError`` whose message is one line; any other exception (RecursionError, MemoryError,
KeyError, TypeError ...) is a finding.  A loaded profile is also rendered (``profiles show``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable

from ..api import Finding, TargetContext
from ..harness import refused_in_one_line, where

NAME = "profile"
DESCRIPTION = ("profile loader (--profile PATH, profiles validate): a Profile or a one-line ProfileError, "
               "never another exception")
INSTRUMENT = ("tsm_conformance.profile.yamlmarks", "tsm_conformance.profile.schemacheck",
              "tsm_conformance.profile.semantics", "tsm_conformance.profile.load", "tsm_conformance.profile.errors")
MAX_LEN = 8192  # libFuzzer -max_len: the shipped profiles are under 3 KiB


def make(ctx: TargetContext) -> Callable[[bytes], None]:
    from tsm_conformance.profile.load import ProfileError, load_profile, render_profile
    from tsm_conformance.profile.model import Profile
    d = tempfile.mkdtemp(prefix="tsm-fuzz-profile-")
    atexit.register(shutil.rmtree, d, True)
    path = os.path.join(d, "fuzz.yaml")
    rule = "load_profile(PATH) gives a Profile or one ProfileError line on any file"

    def one(data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
        try:
            p = load_profile(path)
        except ProfileError as e:
            refused_in_one_line(rule, e)
            return
        except Exception as e:  # noqa: BLE001 - any other exception is the finding
            raise Finding(rule, f"{type(e).__name__}: {str(e)[:200]} ({where(e)}) on {len(data)} bytes") from e
        if not isinstance(p, Profile):
            raise Finding(rule, f"load_profile returned {type(p).__name__}")
        try:
            render_profile(p)
        except Exception as e:  # noqa: BLE001
            raise Finding(rule, f"render_profile of a loaded profile raised {type(e).__name__}: {e} "
                                f"({where(e)})") from e
    return one
