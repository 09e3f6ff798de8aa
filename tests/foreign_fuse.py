"""A report group the suite does not recognise as its own, for the --any-filesystem tests.

``python tests/foreign_fuse.py SPEC MOUNTPOINT`` serves the emulator's FUSE operations
(frontend/fuse.py's ``EmulatorFS``) under another identity: fsname ``acme-attest``, subtype
``acme``, so /proc/self/mountinfo shows ``fuse.acme``, as a third-party FUSE implementation of the
ABI would.  The suite only accepts ``fuse.tsm`` (``tsm-conformance emulate``) and configfs without
the opt-in.  Prints ``mounted`` once the mount is up; SIGTERM/SIGINT unmount (libfuse's handlers).
"""

from __future__ import annotations

import os
import signal
import sys


def main(spec: str, mountpoint: str) -> int:
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    import mfusepy

    from tsm_conformance.emulator import boot, parse_spec
    from tsm_conformance.frontend.fuse import EmulatorFS

    kernel = boot(parse_spec(spec))
    # EmulatorFS asks libfuse for intr_signal=SIGUSR1 (interrupted requests); it must not kill us
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    ops = EmulatorFS(kernel, lambda: print("mounted", flush=True))
    try:
        mfusepy.FUSE(ops, os.path.abspath(mountpoint), foreground=True, nothreads=False,
                     fsname="acme-attest", subtype="acme",
                     attr_timeout=0, entry_timeout=0, negative_timeout=0, direct_io=True)
    except RuntimeError:  # libfuse's status after SIGTERM/SIGINT: the normal end once mounted
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
