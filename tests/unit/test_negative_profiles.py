"""Every malformed profile in tests/negative_profiles/ must fail with its stated message.

Each fixture starts with ``# expect: <substring of str(error)>`` and may add ``# line: N``, the
line the error must point at (docs/profiles.md, Errors: they cite file:line:col).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tsm_conformance.profile.load import ProfileError, load_profile, validate_paths

NEGATIVE = Path(__file__).resolve().parents[1] / "negative_profiles"
FIXTURES = sorted(NEGATIVE.glob("*.yaml"))


def _header(path: Path, key: str) -> str | None:
    for line in path.read_text(encoding="utf-8").splitlines()[:3]:
        m = re.match(rf"#\s*{key}:\s*(.*\S)\s*$", line)
        if m:
            return m.group(1)
    return None


def test_there_are_enough_fixtures() -> None:
    assert len(FIXTURES) >= 12
    assert all(_header(p, "expect") for p in FIXTURES), "every fixture needs '# expect:'"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_negative_profile(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Load by a relative path: messages must keep the path as the user gave it.
    monkeypatch.chdir(NEGATIVE.parent)
    given = os.path.join(NEGATIVE.name, path.name)
    with pytest.raises(ProfileError) as info:
        load_profile(given)
    err, text = info.value, str(info.value)
    assert _header(path, "expect") in text
    assert "\n" not in text
    assert err.file == given
    assert f"{path.name}:{err.line}:" in text
    assert text.startswith(f"{given}:{err.line}:{err.col}: ")
    line = _header(path, "line")
    if line is not None:
        assert err.line == int(line), text


def test_validate_paths_reports_every_fixture() -> None:
    results = dict(validate_paths([NEGATIVE]))
    assert set(results) == {str(p) for p in FIXTURES}
    assert all(isinstance(e, ProfileError) for e in results.values())
