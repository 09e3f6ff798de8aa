#!/usr/bin/env python3
"""The reference client, except that after its inblob commit it waits for generation to move
again, which nothing will do: it looks once a second (a few looks per report read: not a spin)
and never finishes.  Its SIGTERM handler (in reference.main) still removes its item, so a run
with a timeout below 50 s breaks only the one rule.

breaks: client.bounded.finishes
"""

import sys
import time

from reference import Client, main


class Waits(Client):
    def write_inblob(self, item: str, data: bytes) -> None:
        super().write_inblob(item, data)
        seen = self.read_generation(item)
        while self.read_generation(item) == seen:  # "the report is ready when generation moves"
            time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main(Waits()))
