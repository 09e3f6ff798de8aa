"""Run set-up shared by the CLI and the pytest plugin: target, probe, profile selection.

Kept out of plugin.py so the commands that need no pytest (detect, replay, fuzz) can set up a tree
without it; `run` hands its options to the plugin, which calls ``build_state``.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import DEFAULT_ROOT
from .checks.base import Facts, probe
from .checks.runner import Session
from .names import RUN, with_pid
from .outcome import TsmError
from .profile.baseline import Baseline, Context, Entry
from .profile.load import ProfileError, load_profile, select_profile
from .profile.model import Profile
from .target.base import Tree
from .verify.base import TrustAnchors, anchors_from_pem, load_anchors

if TYPE_CHECKING:
    from .target.control import ModuleControl


class SetupError(Exception):
    """A one-line, actionable reason the run cannot start (exit 2 from the CLI).  ``absent``: the
    machine has no configfs-tsm to test (no configfs, no tsm core, no report group, no provider),
    as opposed to a mistake in what was asked; a kselftest run skips on the first, fails on the
    second (``--absent-exit``)."""

    def __init__(self, message: str, absent: bool = False) -> None:
        super().__init__(message)
        self.absent = absent


@dataclass
class TsmState:
    tree: Tree
    profile: Profile
    session: Session
    swept: list[str] = field(default_factory=list)  # items the end-of-run sweep had to remove
    baseline: Baseline = field(default_factory=Baseline)  # --baseline: known failures here
    strict_baseline: bool = False  # a stale entry fails its check
    stale: list[Entry] = field(default_factory=list)  # baseline entries whose check passed

    @property
    def facts(self) -> Facts:
        return self.session.facts

    def known_entry(self, check_id: str) -> Entry | None:
        """The baseline entry about this check on this run's target, if any."""
        if not self.baseline.entries:
            return None
        ctx = Context(self.facts.kernel_release, self.facts.provider, self.tree.kind, provider_config(self))
        return self.baseline.match(check_id, ctx)


def module_parameters(name: str) -> dict[str, str]:
    """/sys/module/NAME/parameters as text (a write-only parameter is left out); empty when the
    module is not loaded or has none."""
    pdir, out = f"/sys/module/{name}/parameters", {}
    for param in sorted(os.listdir(pdir)) if os.path.isdir(pdir) else []:
        try:
            with open(os.path.join(pdir, param)) as f:
                out[param] = f.read(4096).strip()
        except OSError:  # a 0200 parameter
            continue
    return out


def provider_config(state: TsmState) -> dict[str, str]:
    """The provider's configuration a baseline entry may name: the --emulate parameters of an
    emulated tree, the provider module's parameters on configfs (the module is named after its
    provider: sev_guest, tdx_guest, arm_cca_guest, tsm_test), else nothing."""
    kind = state.tree.kind
    if kind == "emulated":
        spec = getattr(state.tree, "spec", None)
        return dict(getattr(spec, "params", None) or {})
    if kind == "live" and state.facts.provider:
        return module_parameters(state.facts.provider)
    return {}


def module_control(ko: str) -> ModuleControl:
    """The ability to rmmod/insmod the live tree's provider module (the VM target: ``--module``;
    tsm_test or a module given to ``vm --provider-module``, named after its file)."""
    from .target.control import ModuleControl
    name = os.path.basename(ko).removesuffix(".ko").replace("-", "_")
    if not os.path.isdir(f"/sys/module/{name}"):
        raise SetupError(f"--module {ko}: {name} is not loaded (no /sys/module/{name})")
    return ModuleControl(ko, module_parameters(name), name)


def make_tree(root: str | None, emulate: str | None, module: str | None = None,
              any_filesystem: bool = False) -> Tree:
    """The live or emulated tree a run or a replay talks to; SetupError for bad input.
    ``any_filesystem``: --any-filesystem, a report group on a filesystem we do not recognise."""
    if root and emulate:
        raise SetupError("give either --root or --emulate, not both")
    if emulate and any_filesystem:
        raise SetupError("--any-filesystem is for a --root tree, not --emulate")
    tree: Tree
    if emulate:
        from .emulator import parse_spec
        from .target.emulated import EmulatedTree
        try:
            tree = EmulatedTree(parse_spec(emulate))
        except ValueError as e:
            raise SetupError(str(e)) from None
    else:
        from .target.live import LiveTree, report_group_problem
        path = root or DEFAULT_ROOT
        try:
            os.stat(path)
        except PermissionError:  # not "does not exist": a directory on the way is closed to this user
            raise SetupError(f"{path}: permission denied on the way there (uid {os.geteuid()}); run as root") from None
        except OSError:
            pass
        if not os.path.exists(path):
            absent = not root or os.path.abspath(path).rstrip("/").endswith("/tsm/report")
            raise SetupError(missing_tree(path, given=bool(root)), absent=absent)
        if not os.path.isdir(path):
            raise SetupError(f"{path} is not a directory")
        if os.geteuid() != 0 and not os.access(path, os.W_OK):
            raise SetupError(f"{path} is not writable for uid {os.geteuid()}: the suite makes report items "
                             "(mkdir); run as root")
        problem = report_group_problem(path, any_filesystem)  # before the probe's mkdir: never write anywhere else
        if problem:
            raise SetupError(problem)
        tree = LiveTree(path, any_filesystem, module_control(module) if module else None)
    return tree


def missing_tree(path: str, given: bool, fstype=None) -> str:  # noqa: ANN001
    """Why the report group is not there, from what is: configfs not mounted, the tsm core module
    not loaded, or just a wrong path (one line, with what to do)."""
    from .target.live import mount_fstype
    fstype = fstype or mount_fstype
    p = os.path.abspath(path).rstrip("/")
    if p.endswith("/tsm/report") and not given:  # the default: say how to go on without one
        return missing_tree(path, True, fstype) + "; or use --emulate PROVIDER, e.g. --emulate sev_guest"
    if p.endswith("/tsm/report"):
        top = p[: -len("/tsm/report")] or "/"
        kind = fstype(top) if os.path.isdir(top) else None
        if kind != "configfs" and not (kind or "").startswith("fuse"):
            return (f"{path} does not exist: configfs is not mounted at {top} "
                    f"(mount -t configfs none {top}; needs CONFIG_CONFIGFS_FS)")
        if not os.path.isdir(top + "/tsm"):
            return (f"{path} does not exist: the configfs-tsm core is not loaded (no {top}/tsm): "
                    "modprobe tsm_report (6.16+) or tsm (6.7-6.15), or load the provider driver "
                    "(sev-guest, tdx-guest, arm-cca-guest); needs CONFIG_TSM_REPORTS")
        return (f"{path} does not exist: {top}/tsm has no report group "
                "(modprobe tsm_report: since 6.16 the report interface is its own module)")
    if given:
        return f"{path} does not exist: give the configfs-tsm report directory (.../tsm/report)"
    return (f"{path} does not exist (no configfs-tsm here: Linux 6.7+ with CONFIG_TSM_REPORTS and configfs "
            "mounted); use --emulate PROVIDER, e.g. --emulate sev_guest")


def trust_anchors(given: list[str] | None) -> TrustAnchors:
    """--trust-anchor values: PEM files, or `emulator` for the emulator's own roots (to verify a
    FUSE-mounted emulator, whose tree cannot say it is emulated)."""
    out = TrustAnchors()
    for g in given or ():
        if g == "emulator":
            from .emulator.reports import anchor_pems
            out = out.merged(anchors_from_pem(anchor_pems()))
            continue
        try:
            out = out.merged(load_anchors([Path(g)]))
        except OSError as e:
            raise SetupError(f"--trust-anchor {g}: {e.strerror}") from None
        except ValueError as e:
            raise SetupError(f"--trust-anchor {e}") from None
    return out


def build_state(root: str | None, emulate: str | None, profile: str | None, module: str | None = None,
                anchors: list[str] | None = None, op_timeout: float | None = None, budget: str | None = None,
                stop_on_hang: bool = True, any_filesystem: bool = False) -> TsmState:
    """Target + probe + profile selection; SetupError (one line) for every bad input."""
    from .checks.runner import DEFAULT_OP_TIMEOUT, Budget
    problem = op_timeout_problem(op_timeout)
    if problem:
        raise SetupError(problem)
    try:
        caps = Budget.parse(budget) if budget else Budget()
    except ValueError as e:
        raise SetupError(str(e)) from None
    given = trust_anchors(anchors)
    tree = make_tree(root, emulate, module, any_filesystem)
    prof: Profile | None = None
    if profile:
        try:
            prof = load_profile(profile)
        except ProfileError as e:
            raise SetupError(str(e)) from None
        if prof.abstract:
            raise SetupError(f"profile {prof.name} is abstract (a base for providers); pick a provider profile")
    deadline = DEFAULT_OP_TIMEOUT if op_timeout is None else op_timeout
    facts = probe_tree(tree, deadline)
    if prof is None:
        prof = choose_profile(facts)
    return TsmState(tree, prof, Session(tree, prof, facts=facts, anchors=given or None, op_timeout=deadline,
                                        budget=caps, stop_on_hang=stop_on_hang))


def op_timeout_problem(seconds: float | None) -> str | None:
    """The one line for an --op-timeout that is no deadline, or None (not given: the default)."""
    if seconds is not None and not 0 < seconds < float("inf"):  # also NaN
        return "--op-timeout must be a positive, finite number of seconds"
    return None


def probe_tree(tree: Tree, deadline: float | None = None) -> Facts:
    """checks.base.probe under the operation deadline; SetupError when the tree is not usable."""
    from .checks.deadline import WATCHDOG, OperationHung
    try:
        with WATCHDOG.guard(deadline):
            return probe(tree, with_pid(RUN))
    except TsmError as e:
        cause = e.__cause__
        raise SetupError(str(e), absent=isinstance(cause, OSError) and cause.errno == errno.ENXIO) from None
    except OperationHung as e:
        raise SetupError(f"{tree.describe()}: probing the tree hung: {e} "
                         "(a wedged provider? see --op-timeout)") from None


def choose_profile(facts: Facts) -> Profile:
    """The one place a probed tree is matched to a profile (run, detect)."""
    try:
        return select_profile(facts.provider, _groups_seen(facts))
    except (LookupError, ProfileError) as e:
        raise SetupError(str(e)) from None


def _groups_seen(facts: Facts) -> dict[str, bool]:
    """Every visibility group any shipped profile defines, marked present if a member shows."""
    from .profile.load import list_profiles
    out: dict[str, bool] = {}
    for name, _ in list_profiles():
        for g, members in load_profile(name).groups.items():
            out[g] = out.get(g, False) or any(a in facts.attributes for a in members)
    return out

