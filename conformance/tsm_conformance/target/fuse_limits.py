"""What a FUSE mount cannot show: the one list of behaviours the FUSE kernel module answers (or
drops) itself, before the daemon serving the tree sees the call.

A LiveTree on a FUSE mount carries these as ``limits``; a check that depends on one calls
``ctx.need_observable(name)`` and is skip-unsupported there instead of failing or passing.
Everything else a check does reaches the daemon unchanged (frontend/fuse.py: direct_io, no
attribute or entry caching, commit at flush).  Another implementation's mount (--any-filesystem)
gets the same list: its own caching choices are not limits but part of what it shows, and a check
they break fails there as it would for any user of that mount.
"""

from __future__ import annotations

FUSE_LIMITS: dict[str, str] = {
    "zero-length-write": "a zero-length write() never reaches a FUSE daemon: the VFS returns 0 itself, "
                         "so configfs' EFAULT (and the inblob commit it arms) cannot be observed",
    "binary-lseek": "lseek(SEEK_SET/SEEK_CUR/SEEK_END) on FUSE is answered by the kernel from the file "
                    "position, never by the daemon, so configfs' ESPIPE (.llseek = NULL) cannot be "
                    "reproduced (FOPEN_NONSEEKABLE would also make pread/pwrite fail)",
}

#: The same behaviours on a filesystem that is neither configfs nor FUSE (allowed by --any-filesystem:
#: 9p, NFS, ...): there too the local kernel answers them before the implementation could, so they
#: say nothing about it.  Same keys, so checks need not know which list they got.
OTHER_FS_LIMITS: dict[str, str] = {
    "zero-length-write": "on a filesystem other than configfs the local kernel decides whether a zero-length "
                         "write() reaches the implementation (most return 0 first), so configfs' EFAULT (and the "
                         "inblob commit it arms) cannot be observed",
    "binary-lseek": "lseek() on a filesystem other than configfs is answered by the local kernel from the file "
                    "position, so configfs' ESPIPE (.llseek = NULL) cannot be reproduced",
}
