"""ARCHITECTURE.md's import rules, enforced."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "conformance" / "tsm_conformance"


def imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    pkg = ["tsm_conformance", *path.relative_to(PKG).parent.parts]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def files(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py")) if sub else sorted(PKG.glob("*.py"))


def test_conformance_never_imports_fuzz() -> None:
    for f in PKG.rglob("*.py"):
        assert not any(m.startswith("tsm_fuzz") for m in imports(f)), f


def test_fuzz_command_is_the_one_runtime_dispatch() -> None:
    """`tsm-conformance fuzz` hands its arguments to tsm_fuzz.cli through importlib; no other
    tsm_conformance module names tsm_fuzz at all (ARCHITECTURE.md)."""
    users = {f.relative_to(PKG).as_posix() for f in PKG.rglob("*.py")
             if any(isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("tsm_fuzz")
                    for n in ast.walk(ast.parse(f.read_text())))}
    assert users <= {"cli.py"}, users
    calls = [n for n in ast.walk(ast.parse((PKG / "cli.py").read_text())) if isinstance(n, ast.Call)
             and any(isinstance(a, ast.Constant) and str(a.value).startswith("tsm_fuzz") for a in n.args)]
    assert [ast.unparse(c.func) for c in calls] == ["importlib.import_module"]


def test_checks_import_neither_pytest_nor_emulator() -> None:
    for f in files("checks"):
        bad = {m for m in imports(f) if m.startswith(("pytest", "_pytest", "tsm_conformance.emulator"))}
        assert not bad, (f, bad)


def test_profiles_and_emulator_are_independent() -> None:
    for f in files("profile"):
        assert not any(m.startswith("tsm_conformance.emulator") for m in imports(f)), f
    for f in files("emulator"):
        assert not any(m.startswith(("tsm_conformance.profile", "tsm_conformance.checks")) for m in imports(f)), f


def test_only_the_emulated_target_imports_the_emulator() -> None:
    users = {f.relative_to(PKG).as_posix() for f in PKG.rglob("*.py")
             if not f.is_relative_to(PKG / "emulator")
             and any(m.startswith("tsm_conformance.emulator") for m in imports(f))}
    assert users <= {"target/emulated.py", "runstate.py", "cli.py", "vm/differential.py",
                     "frontend/fuse.py"}, users


def test_formats_and_emulator_are_independent() -> None:
    """N-version: the parsers/verifiers and the emulator's report builders encode the layouts twice."""
    for sub in ("formats", "verify"):
        for f in files(sub):
            bad = {m for m in imports(f) if m.startswith(("tsm_conformance.emulator", "tsm_conformance.checks",
                                                           "tsm_conformance.target"))}
            assert not bad, (f, bad)
    for f in files("emulator"):
        assert not any(m.startswith(("tsm_conformance.formats", "tsm_conformance.verify")) for m in imports(f)), f


def test_oracle_is_independent_of_the_emulator() -> None:
    """N-version: the oracle encodes the ABI a second time; it may use the profile, seq.py, the
    Tree protocol and the errno table, never the emulator (nor the checks above it)."""
    for f in files("oracle"):
        bad = {m for m in imports(f) if m.startswith(("tsm_conformance.emulator", "tsm_conformance.checks",
                                                       "tsm_conformance.target.emulated", "tsm_fuzz"))}
        assert not bad, (f, bad)


def test_reading_results_needs_no_run() -> None:
    """report, compare and bundle verify read bundles on any machine: results/model, html, compare
    and bundle import no target, check, emulator, run set-up or pytest (record.py, which writes a
    run's bundle, and environment.py, which reads the machine, may)."""
    for name in ("model.py", "html.py", "compare.py", "bundle.py"):
        bad = {m for m in imports(PKG / "results" / name)
               if m.startswith(("pytest", "_pytest", "tsm_conformance.checks", "tsm_conformance.target",
                                "tsm_conformance.emulator", "tsm_conformance.runstate", "tsm_conformance.plugin",
                                "tsm_conformance.cli", "tsm_conformance.results.record"))}
        assert not bad, (name, bad)


def test_baselines_are_expectations() -> None:
    """A baseline is read like a profile and knows nothing of a run (runstate matches it)."""
    allowed = ("tsm_conformance.profile", "tsm_conformance.inputs")
    bad = {m for m in imports(PKG / "profile" / "baseline.py")
           if m.startswith("tsm_conformance.") and not m.startswith(allowed)}
    assert not bad, bad


def test_the_client_runs_the_emulator_as_a_process() -> None:
    """client/'s runner and jail start `tsm-conformance emulate --trace` in the namespace and read
    the trace; they import neither the emulator nor the checks (ARCHITECTURE.md)."""
    for f in (PKG / "client" / "runner.py", PKG / "client" / "jail.py", PKG / "frontend" / "trace.py"):
        bad = {m for m in imports(f) if m.startswith(("tsm_conformance.emulator", "tsm_conformance.checks"))}
        assert not bad, (f, bad)
