#!/usr/bin/env python3
"""The reference client, except that it accepts an empty outblob (a failed TDX quote before the
GetQuote status check reads as 0 bytes, abi.md §8.9) and exits 0 with it.

breaks: client.outblob.empty_rejected
"""

import sys

from reference import Client, main


class AcceptsEmpty(Client):
    def accept(self, blob: bytes) -> None:
        pass  # any report will do, even b""


if __name__ == "__main__":
    sys.exit(main(AcceptsEmpty()))
