"""The options that pick a guest kernel and provider, shared by `vm` and `replay --vm`, and the
one place that turns them into a KernelTree."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .kernel import KernelTree, Progress, VmError


def add_kernel_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("guest kernel (one of --kernel-deb, --kernel-tree, --kernel-source-deb, or --kernel "
                             "with --modules and --headers)")
    g.add_argument("--kernel-deb", metavar="PACKAGE", help="Debian kernel image package, e.g. linux-image-6.12-amd64")
    g.add_argument("--kernel-tree", metavar="DIR",
                   help="a kernel source tree (e.g. linux-next): a small guest kernel is configured from the shipped "
                        "fragment and built out of tree into the cache (incremental after the first build)")
    g.add_argument("--kernel-source-deb", metavar="PACKAGE",
                   help="a Debian kernel source package (linux-source-6.12), downloaded and unpacked into the cache, "
                        "then built as --kernel-tree")
    g.add_argument("--debug", metavar="LIST",
                   help="sanitizers for a kernel built from source: kasan, kcsan, lockdep, ubsan (comma-separated; "
                        "kasan and kcsan exclude each other)")
    g.add_argument("--suite", metavar="SUITE",
                   help="take --kernel-deb or --kernel-source-deb from this Debian suite (trixie, trixie-backports, "
                        "sid) via a private apt config")
    g.add_argument("--kernel", metavar="BZIMAGE", help="a kernel image (with --modules and --headers)")
    g.add_argument("--modules", metavar="DIR", help="its lib/modules/<release> directory")
    g.add_argument("--headers", metavar="DIR", help="its kbuild/headers directory")
    g.add_argument("--provider-module", metavar="PATH",
                   help="an out-of-tree provider module to load instead of tsm_test: a directory with a Kbuild or "
                        "Makefile, or one .c file (built against the guest kernel)")
    g.add_argument("--params", action="append", metavar="'K=V ...'",
                   help="provider module parameters of one run (repeatable; default for tsm_test: three floors, "
                        "or with --fuzz one floor with reports changing size)")
    g.add_argument("--profile", metavar="NAME", help="the expectations in the guest (default: tsm_test for our module, "
                                                     "else what the tree's probe picks)")
    g.add_argument("--cache", metavar="DIR", help="downloads and builds (default /var/cache/tsm-conformance)")
    g.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="whole-VM timeout (default 900, or --max-time x targets + 900 with --fuzz)")
    g.add_argument("--keep", metavar="DIR", help="keep the guest's results and logs in DIR")
    g.add_argument("--accel", choices=("auto", "tcg", "kvm"), default="auto",
                   help="QEMU accelerator (auto: KVM when a probe boot works on this host, else TCG)")


def cache_dir(args: argparse.Namespace) -> Path:
    return Path(args.cache or os.environ.get("TSM_CONFORMANCE_CACHE") or
                ("/var/cache/tsm-conformance" if os.geteuid() == 0 else "~/.cache/tsm-conformance")).expanduser()


def kernel_from_args(args: argparse.Namespace, cache: Path, progress: Progress) -> KernelTree:
    """The guest kernel the options name; VmError (one line) when they name none or several."""
    given = [o for o, v in (("--kernel-deb", args.kernel_deb), ("--kernel-tree", args.kernel_tree),
                            ("--kernel-source-deb", args.kernel_source_deb), ("--kernel", args.kernel)) if v]
    if len(given) != 1:
        raise VmError("give one guest kernel: --kernel-deb PACKAGE, --kernel-tree DIR, --kernel-source-deb PACKAGE, "
                      "or --kernel with --modules and --headers" + (f" (got {', '.join(given)})" if given else ""))
    from_source_tree = bool(args.kernel_tree or args.kernel_source_deb)
    if args.debug and not from_source_tree:
        raise VmError("--debug builds a kernel from source: give --kernel-tree DIR or --kernel-source-deb PACKAGE")
    apt: list[str] = []
    if args.suite:
        if not (args.kernel_deb or args.kernel_source_deb):
            raise VmError("--suite goes with --kernel-deb or --kernel-source-deb")
        from .apt import suite_options
        apt = suite_options(cache, args.suite, progress)
    if from_source_tree:
        from .source import debug_variants, from_source, unpack_source_deb
        debug = debug_variants(args.debug or "")
        tree = Path(args.kernel_tree) if args.kernel_tree else unpack_source_deb(args.kernel_source_deb, cache,
                                                                                progress, apt)
        return from_source(tree, cache, debug, progress)
    if args.kernel_deb:
        from .kernel import from_deb
        return from_deb(args.kernel_deb, cache, progress, apt)
    if not (args.modules and args.headers):
        raise VmError("--kernel needs --modules DIR and --headers DIR")
    from .kernel import from_paths
    return from_paths(args.kernel, args.modules, args.headers)
