"""Make the source tree importable when the project is not installed (plain `pytest` in a checkout)."""

import importlib.util
import sys
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
for _package, _src in (("tsm_conformance", "conformance"), ("tsm_fuzz", "fuzz")):
    if importlib.util.find_spec(_package) is None and (_REPO / _src).is_dir():
        sys.path.insert(0, str(_REPO / _src))

pytest_plugins = ["pytester"]


# Two tiers (docs/development.md): `-m fast` is the development loop, unit and in-process tests
# (about two minutes here); `slow` is what starts processes, mounts FUSE, fuzzes, sends signals or
# runs whole emulated sessions per configuration.  The list is here, in one place.
SLOW_FILES = {"test_running.py", "test_fuzz.py", "test_fuzz_sequences.py", "test_any_filesystem.py",
              "test_fuse.py", "test_packaging.py", "test_hostile.py", "test_client_runner.py"}
SLOW_TESTS = {
    "test_quirk_matrix.py": ("test_faithful_emulator_passes", "test_quirk_caught", "test_also_caught",
                             "test_known_kernel_bugs", "test_a_floor_the_firmware_refuses"),
    "test_cli.py": ("test_each_quirk_exits_1_and_names_the_check",),
    "test_oracle.py": ("test_quirk_caught_by_oracle",),
    "test_statemachine.py": ("test_quirk_caught",),
}


def pytest_collection_modifyitems(items: list) -> None:  # noqa: ANN001 (pytest.Item)
    for item in items:
        file = item.path.name
        if item.get_closest_marker("slow") is None and (
                file in SLOW_FILES or item.name.startswith(SLOW_TESTS.get(file, ("\0",)))):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.fast)


#: What the commands write to the working directory by default: `run`'s --failures-dir, `client`'s
#: --out and --trace, `fuzz`'s --artifacts, `vm`'s --fuzz-out.  A test runs a command with
#: cwd=tmp_path (or names its outputs there); one that left these in the checkout fails here (with
#: xdist, possibly a test running beside it: the names say which command).
DEFAULT_OUTPUTS = ("tsm-failures", "tsm-client", "tsm-client-trace.jsonl", "fuzz-artifacts", "vm-fuzz")


_OUTPUTS_BEFORE = pytest.StashKey[set[str]]()


def _default_outputs() -> set[str]:
    return {name for name in DEFAULT_OUTPUTS if (_REPO / name).exists()}


def pytest_runtest_setup(item) -> None:  # noqa: ANN001 (pytest.Item)
    item.stash[_OUTPUTS_BEFORE] = _default_outputs()


def pytest_runtest_teardown(item) -> None:  # noqa: ANN001 (pytest.Item)
    stray = _default_outputs() - item.stash.get(_OUTPUTS_BEFORE, set())
    assert not stray, (f"a test left a command's default outputs in the checkout: "
                       f"{', '.join(sorted(stray))} (run it with cwd=tmp_path)")
