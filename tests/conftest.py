"""Make the source tree importable when the project is not installed (plain `pytest` in a checkout)."""

import importlib.util
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
for _package, _src in (("tsm_conformance", "conformance"), ("tsm_fuzz", "fuzz")):
    if importlib.util.find_spec(_package) is None and (_REPO / _src).is_dir():
        sys.path.insert(0, str(_REPO / _src))

pytest_plugins = ["pytester"]
