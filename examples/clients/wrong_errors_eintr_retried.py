#!/usr/bin/env python3
"""The reference client, except that it reads outblob with libc's read() as a C client would and
treats EINTR as fatal (Python's own reads retry EINTR by themselves, PEP 475), where the provider
was only interrupted while waiting for its host.

breaks: client.errors.eintr_retried
"""

import ctypes
import errno
import os
import sys
import time

from reference import Client, main

_libc = ctypes.CDLL(None, use_errno=True)


class GivesUpOnEintr(Client):
    def read_outblob(self, item: str) -> bytes:
        for attempt in range(1, self.busy_tries + 1):  # EBUSY retried as the reference does
            try:
                return self.libc_read_all(os.path.join(item, "outblob"))
            except OSError as e:
                if e.errno != errno.EBUSY or attempt == self.busy_tries:
                    raise
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def libc_read_all(path: str) -> bytes:
        fd = os.open(path, os.O_RDONLY)
        try:
            out = b""
            buf = ctypes.create_string_buffer(1 << 16)
            while True:
                n = _libc.read(fd, buf, len(buf))
                if n < 0:  # EINTR included: no retry
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
                if n == 0:
                    return out
                out += buf.raw[:n]
        finally:
            os.close(fd)


if __name__ == "__main__":
    sys.exit(main(GivesUpOnEintr()))
