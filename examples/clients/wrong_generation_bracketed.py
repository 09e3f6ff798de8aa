#!/usr/bin/env python3
"""The reference client, except that it never reads generation: a concurrent writer (or a retry
it should have made) goes unnoticed, as in both clients of docs/clients-findings.md.

breaks: client.generation.bracketed
"""

import sys

from reference import Client, main


class NoGeneration(Client):
    def get_report(self, item: str, nonce: bytes) -> bytes:
        self.write_inblob(item, nonce)
        blob = self.read_outblob(item)
        self.accept(blob)
        return blob


if __name__ == "__main__":
    sys.exit(main(NoGeneration()))
