#!/usr/bin/env python3
"""The reference client, except that it writes the inblob in two writes and reads outblob before
closing the inblob fd (the commit happens at close, so the read meets no inblob, or an old one).

breaks: client.inblob.one_commit
"""

import os
import sys

from reference import Client, main


class ReadsBeforeClose(Client):
    pending = -1

    def write_inblob(self, item: str, data: bytes) -> None:
        self.pending = os.open(os.path.join(item, "inblob"), os.O_WRONLY)
        half = len(data) // 2 or len(data)
        os.write(self.pending, data[:half])
        if data[half:]:
            os.write(self.pending, data[half:])
        # no close yet: "it is written"

    def read_outblob(self, item: str) -> bytes:
        try:
            return super().read_outblob(item)
        finally:
            if self.pending >= 0:
                os.close(self.pending)
                self.pending = -1


if __name__ == "__main__":
    sys.exit(main(ReadsBeforeClose()))
