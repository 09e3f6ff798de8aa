"""Calibration of the client rules (issue 17): the reference client follows the ABI and passes every
rule under every fault plan; each examples/clients/wrong_*.py breaks one rule, named in its
docstring (``breaks: RULE``), and fails exactly that rule."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tsm_conformance.client.plans import failures, run_plans
from tsm_conformance.client.runner import setup_problem

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(setup_problem() is not None, reason=f"clients cannot run here: {setup_problem()}")]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "clients"
NONCE = "ab" * 32


def breaks(path: Path) -> str:
    return next(line.split(":", 1)[1].strip() for line in path.read_text().splitlines()
                if line.strip().startswith("breaks:"))


def failed_rules(client: Path, tmp: Path, timeout: float = 30.0) -> list[str]:
    res = run_plans([sys.executable, str(client), "--nonce", NONCE], "sev_guest", tmp, timeout)
    return sorted({rule for rule, _, _ in failures(res)})


def test_the_reference_client_passes_every_rule_under_every_plan(tmp_path: Path) -> None:
    assert failed_rules(EXAMPLES / "reference.py", tmp_path) == []


@pytest.mark.parametrize("client", sorted(EXAMPLES.glob("wrong_*.py")), ids=lambda p: p.stem)
def test_each_wrong_client_fails_its_rule_and_only_it(client: Path, tmp_path: Path) -> None:
    # the client that never ends by itself runs to the timeout under each plan: 2 s is ample for
    # its start, mkdir and inblob commit (its SIGTERM handler still removes its item)
    timeout = 2.0 if breaks(client) == "client.bounded.finishes" else 30.0
    assert failed_rules(client, tmp_path, timeout) == [breaks(client)]
