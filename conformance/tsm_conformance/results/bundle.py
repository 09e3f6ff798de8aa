"""A bundle's manifest and ``tsm-conformance bundle verify DIR`` (docs/results.md "The bundle").

``seal`` writes ``MANIFEST.sha256`` (``sha256sum`` format, sorted, every regular file but itself).
``verify`` checks that the manifest lists exactly the files present with their hashes, then that
the parts agree: results.json against junit.xml and results.ktap (the same checks, the same
outcomes, the same totals), its verdict against its outcomes and exit status, the environment
against the JUnit suite properties and the resolved profile's hash, and that every evidence file
results.json names is there.  A manifest proves a bundle was not changed *quietly*: someone who
edits a file and writes a new manifest is caught only by the consistency checks (a signature over
the manifest would be the next step; docs/results.md says so).
"""

from __future__ import annotations

import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from typing import Any

from ..inputs import BUNDLE_FILES, BUNDLE_TOTAL, RESULTS_MAX, InputError, read_bounded
from ..outcome import COLUMNS, FACES, Outcome
from .environment import sha256_file
from .model import ENVIRONMENT, FORMAT, MANIFEST, RESULTS, ResultsError, member_path, testcases

_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


def _files(directory: str) -> tuple[list[str], list[str]]:
    """(regular files relative to ``directory`` but the manifest, anything else found); bounded."""
    files, odd, total = [], [], 0
    for root, dirs, names in os.walk(directory):
        for name in dirs + names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory).replace(os.sep, "/")
            if os.path.islink(path) or not (os.path.isdir(path) or os.path.isfile(path)):
                odd.append(rel)
            elif os.path.isfile(path) and rel != MANIFEST:
                files.append(rel)
                total += os.path.getsize(path)
        if len(files) > BUNDLE_FILES or total > BUNDLE_TOTAL:
            raise ResultsError(f"{directory}: more than {BUNDLE_FILES} files or {BUNDLE_TOTAL >> 20} MiB: not a bundle")
    return sorted(files), sorted(odd)


def seal(directory: str) -> None:
    """Write MANIFEST.sha256 for every file in ``directory`` (written last, replaced atomically)."""
    files, _ = _files(directory)
    text = "".join(f"{sha256_file(os.path.join(directory, rel))}  {rel}\n" for rel in files)
    tmp = os.path.join(directory, f".{MANIFEST}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, os.path.join(directory, MANIFEST))


def _manifest(directory: str) -> tuple[dict[str, str], list[str]]:
    path = os.path.join(directory, MANIFEST)
    problems: list[str] = []
    listed: dict[str, str] = {}
    try:
        text = read_bounded(path, RESULTS_MAX, "manifest").decode("utf-8", "replace")
    except (InputError, OSError) as e:
        return {}, [f"{MANIFEST}: cannot be read ({e})"]
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if not m:
            problems.append(f"{MANIFEST}:{n}: not a 'SHA256  PATH' line")
            continue
        rel = m[2]
        if member_path(directory, rel) is None:
            problems.append(f"{MANIFEST}:{n}: {rel} is outside the bundle")
        elif rel in listed:
            problems.append(f"{MANIFEST}:{n}: {rel} is listed twice")
        else:
            listed[rel] = m[1]
    return listed, problems


def check_manifest(directory: str) -> list[str]:
    """Every file listed with its hash, none missing, none added."""
    listed, problems = _manifest(directory)
    files, odd = _files(directory)
    problems += [f"{rel}: not a regular file (a bundle holds only files)" for rel in odd]
    for rel in files:
        if rel not in listed:
            problems.append(f"{rel}: not in {MANIFEST} (added after the bundle was sealed)")
        elif sha256_file(os.path.join(directory, rel)) != listed[rel]:
            problems.append(f"{rel}: sha256 differs from {MANIFEST} (changed after the bundle was sealed)")
    problems += [f"{rel}: listed in {MANIFEST} but missing" for rel in listed if rel not in files]
    return problems


def _load_json(directory: str, name: str) -> tuple[Any, list[str]]:
    path = os.path.join(directory, name)
    try:
        return json.loads(read_bounded(path, RESULTS_MAX, name).decode("utf-8")), []
    except (InputError, OSError) as e:
        return None, [f"{name}: cannot be read ({e})"]
    except (UnicodeDecodeError, ValueError) as e:
        return None, [f"{name}: not valid JSON ({str(e).splitlines()[0]})"]


def _junit_outcomes(directory: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """testcase name -> pytest outcome word (passed/failed/error/skipped), suite properties."""
    path = os.path.join(directory, "junit.xml")
    try:
        root = ET.fromstring(read_bounded(path, RESULTS_MAX, "junit.xml"))
    except (InputError, OSError) as e:
        return {}, {}, [f"junit.xml: cannot be read ({e})"]
    except ET.ParseError as e:
        return {}, {}, [f"junit.xml: not valid XML ({e})"]
    cases: dict[str, str] = {}
    props: dict[str, str] = {}
    for sprops, cid, tc in testcases(root):
        for k, v in sprops.items():
            props.setdefault(k, v)
        word = "passed"
        for tag, w in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            if tc.find(tag) is not None:
                word = w
                break
        cases[cid] = word
    return cases, props, []


def check_consistency(directory: str) -> list[str]:
    """The bundle's parts tell one story (see the module docstring)."""
    res, problems = _load_json(directory, RESULTS)
    env, more = _load_json(directory, ENVIRONMENT)
    problems += more
    if not isinstance(res, dict) or res.get("format") != FORMAT:
        return problems + ([f"{RESULTS}: not a {FORMAT} document"] if res is not None else [])
    checks = [c for c in res.get("checks") or () if isinstance(c, dict)]
    try:
        outcomes = {str(c["id"]): Outcome(c["outcome"]) for c in checks}
    except (KeyError, ValueError) as e:
        return problems + [f"{RESULTS}: a check without a valid id or outcome ({e})"]
    problems += _totals_and_verdict(res, outcomes)
    for c in checks:
        for rel in [c.get("evidence"), *(c.get("files") or ())]:
            if rel and (member_path(directory, str(rel)) is None or not os.path.isfile(os.path.join(directory, rel))):
                problems.append(f"{RESULTS}: {c['id']} names {rel}, which is not in the bundle")
    if os.path.exists(os.path.join(directory, "junit.xml")):
        cases, props, more = _junit_outcomes(directory)
        problems += more
        for cid, o in outcomes.items():
            want = FACES[o].pytest
            got = cases.get(cid)
            if got is None:
                problems.append(f"junit.xml: no testcase for {cid}, which {RESULTS} has")
            elif got != want and not (want == "failed" and got == "error"):
                problems.append(f"junit.xml: {cid} is {got}, {RESULTS} says {o.value} ({want})")
        problems += [f"junit.xml: {cid} is not in {RESULTS}" for cid in cases if cid not in outcomes]
        problems += _env_vs_junit(env, props)
    ktap = os.path.join(directory, "results.ktap")
    if os.path.exists(ktap):
        problems += _ktap_totals(ktap, res)
    if isinstance(env, dict) and isinstance(env.get("profile"), dict):
        want = env["profile"].get("resolved_sha256")
        path = os.path.join(directory, "profile.yaml")
        if want and (not os.path.isfile(path) or sha256_file(path) != want):
            problems.append("profile.yaml: does not match environment.json's profile.resolved_sha256")
    return problems


def _totals_and_verdict(res: dict[str, Any], outcomes: dict[str, Outcome]) -> list[str]:
    problems = []
    totals = dict.fromkeys(COLUMNS, 0)
    for o in outcomes.values():
        totals[FACES[o].column] += 1
    if res.get("totals") != totals:
        problems.append(f"{RESULTS}: totals {res.get('totals')} do not count its checks ({totals})")
    failed = any(FACES[o].fails_run for o in outcomes.values())
    verdict, status = res.get("verdict"), res.get("exit_status")
    if verdict != "interrupted" and (verdict == "fail") != failed:
        problems.append(f"{RESULTS}: verdict {verdict!r} but {'a' if failed else 'no'} check failed")
    expected = {"pass": 0, "fail": 1, "nothing-ran": 4, "interrupted": 130}.get(str(verdict))
    if status is not None and expected is not None and status != expected:
        problems.append(f"{RESULTS}: exit status {status} does not go with verdict {verdict!r}")
    return problems


def _env_vs_junit(env: Any, props: dict[str, str]) -> list[str]:
    if not isinstance(env, dict) or not isinstance(env.get("target"), dict):
        return []
    t, problems = env["target"], []
    for key, prop in (("kernel_release", "tsm.kernel_release"), ("provider", "tsm.provider"),
                      ("describe", "tsm.target")):
        if prop in props and str(t.get(key)) != props[prop]:
            problems.append(f"environment.json: target.{key} {t.get(key)!r} but junit.xml's {prop} is {props[prop]!r}")
    prof = env.get("profile")
    if isinstance(prof, dict) and "tsm.profile" in props and prof.get("name") != props["tsm.profile"]:
        problems.append(f"environment.json: profile {prof.get('name')!r} but junit.xml ran {props['tsm.profile']!r}")
    return problems


def _ktap_totals(path: str, res: dict[str, Any]) -> list[str]:
    try:
        text = read_bounded(path, RESULTS_MAX, "results.ktap").decode("utf-8", "replace")
    except (InputError, OSError) as e:
        return [f"results.ktap: cannot be read ({e})"]
    m = re.search(r"^# Totals: (.*)$", text, re.M)
    if not m:
        return ["results.ktap: no '# Totals:' line"]
    got = {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", m[1])}
    # the kernel-log item is in KTAP and JUnit but not a check of results.json's totals: compare all
    return [] if got == res.get("totals") else [f"results.ktap: Totals {got} but {RESULTS} has {res.get('totals')}"]


def verify(directory: str) -> list[str]:
    """Every problem found (empty: the bundle verifies)."""
    if not os.path.isdir(directory):
        raise ResultsError(f"{directory}: not a directory")
    if not os.path.exists(os.path.join(directory, MANIFEST)):
        raise ResultsError(f"{directory}: not a bundle (no {MANIFEST}; bundles are written by run --bundle DIR)")
    problems = check_manifest(directory) + check_consistency(directory)
    runs = os.path.join(directory, "runs")  # a VM bundle: one bundle per parameter set, each verified too
    for sub in sorted(os.listdir(runs)) if os.path.isdir(runs) and not os.path.islink(runs) else []:
        path = os.path.join(runs, sub)
        if os.path.isdir(path) and os.path.exists(os.path.join(path, MANIFEST)):
            problems += [f"runs/{sub}/{p}" for p in verify(path)]
    return problems


def main(directory: str) -> int:
    """``bundle verify DIR``: 0 verified, 1 a problem (each on its own line), 2 not a bundle."""
    try:
        problems = verify(directory)
    except ResultsError as e:
        print(f"tsm-conformance: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"{directory}: {p}")
    if problems:
        print(f"bundle verify: {directory}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    n = len(_manifest(directory)[0])
    print(f"bundle verify: {directory}: {n} files match {MANIFEST}; results, JUnit, KTAP and environment agree")
    return 0
