"""What a FUSE mount cannot show: the one list of behaviours the FUSE kernel module answers (or
drops) itself, before the daemon serving the tree sees the call.

A LiveTree on a FUSE mount carries these as ``limits``; a check that depends on one calls
``ctx.need_observable(name)`` and is skip-unsupported there instead of failing or passing.
Everything else a check does reaches the daemon unchanged (frontend/fuse.py: direct_io, no
attribute or entry caching, commit at flush).
"""

from __future__ import annotations

FUSE_LIMITS: dict[str, str] = {
    "zero-length-write": "a zero-length write() never reaches a FUSE daemon: the VFS returns 0 itself, "
                         "so configfs' EFAULT (and the inblob commit it arms) cannot be observed",
    "binary-lseek": "lseek(SEEK_SET/SEEK_CUR/SEEK_END) on FUSE is answered by the kernel from the file "
                    "position, never by the daemon, so configfs' ESPIPE (.llseek = NULL) cannot be "
                    "reproduced (FOPEN_NONSEEKABLE would also make pread/pwrite fail)",
}
