"""What ran, on what: a bundle's ``environment.json`` (docs/results.md "The bundle").

Everything here is read best-effort and bounded: a file that is missing or unreadable (not root,
no DMI in a VM, no kernel config) leaves its key out or null, never fails the run.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__

#: Kernel config options a reviewer needs: the TSM core, the providers, what they depend on, and the
#: debugging options that change what a run can find.
CONFIG_PREFIXES = ("CONFIG_TSM", "CONFIG_SEV_GUEST", "CONFIG_TDX_GUEST", "CONFIG_ARM_CCA_GUEST",
                   "CONFIG_AMD_MEM_ENCRYPT", "CONFIG_INTEL_TDX_GUEST", "CONFIG_ARM64_RME", "CONFIG_CONFIGFS_FS",
                   "CONFIG_VIRT_DRIVERS", "CONFIG_SAMPLE_TSM", "CONFIG_KASAN", "CONFIG_KCSAN", "CONFIG_UBSAN",
                   "CONFIG_PROVE_LOCKING", "CONFIG_LOCKDEP", "CONFIG_INIT_ON_ALLOC_DEFAULT_ON", "CONFIG_MODULES")
CONFIG_MAX = 4 * 1024 * 1024  # bytes of a kernel config read (decompressed): Debian's is ~300 KiB


def now() -> str:
    """UTC, ISO 8601 to the second (the bundle's timestamps)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_small(path: str, limit: int = 4096) -> str | None:
    """A short text file (sysfs, procfs), stripped; None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace").strip()
    except OSError:
        return None


def tool() -> dict[str, Any]:
    """Name, version and, from a git checkout, the revision and whether the tree was edited."""
    out: dict[str, Any] = {"name": "tsm-conformance", "version": __version__}
    root = Path(__file__).resolve().parents[3]
    if (root / ".git").exists():
        def git(*args: str) -> str | None:
            try:
                r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                return None
            return r.stdout.strip() if r.returncode == 0 else None
        out["git_revision"] = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
        out["git_dirty"] = None if status is None else bool(status)
    return out


def host() -> dict[str, Any]:
    cpu = None
    try:
        with open("/proc/cpuinfo", "rb") as f:
            for line in f.read(64 * 1024).decode("utf-8", "replace").splitlines():
                if line.startswith(("model name", "Model", "cpu model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dmi = "/sys/class/dmi/id"
    return {"kernel_release": os.uname().release, "proc_version": read_small("/proc/version"),
            "hostname": socket.gethostname(), "architecture": platform.machine(),
            "machine": {"vendor": read_small(f"{dmi}/sys_vendor"), "product": read_small(f"{dmi}/product_name"),
                        "cpu": cpu}}


def python() -> dict[str, str]:
    return {"version": platform.python_version(), "implementation": platform.python_implementation()}


def kernel_config(release: str | None = None) -> dict[str, str] | None:
    """The options that matter (CONFIG_PREFIXES) of the running kernel, from /proc/config.gz or
    /boot/config-RELEASE; None when neither can be read."""
    release = release or os.uname().release
    text = None
    try:
        with gzip.open("/proc/config.gz", "rb") as f:
            text = f.read(CONFIG_MAX).decode("utf-8", "replace")
    except (OSError, EOFError):
        try:
            with open(f"/boot/config-{release}", "rb") as f:
                text = f.read(CONFIG_MAX).decode("utf-8", "replace")
        except OSError:
            return None
    return config_options(text)


def config_options(text: str) -> dict[str, str]:
    """The CONFIG_PREFIXES options of a .config's text (``n`` for "is not set")."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            if k.startswith(CONFIG_PREFIXES):
                out[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            k = line[2:-len(" is not set")]
            if k.startswith(CONFIG_PREFIXES):
                out[k] = "n"
    return out


def module(name: str) -> dict[str, Any] | None:
    """/sys/module/NAME: version, srcversion and parameters; None when it is not a loaded module."""
    base = f"/sys/module/{name}"
    if not os.path.isdir(base):
        return None
    from ..runstate import module_parameters
    return {"name": name, "version": read_small(f"{base}/version"), "srcversion": read_small(f"{base}/srcversion"),
            "parameters": module_parameters(name)}


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
