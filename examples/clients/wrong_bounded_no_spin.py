#!/usr/bin/env python3
"""The reference client, except that it polls generation in a tight loop before every outblob
read, "until it settles", a few hundred looks per report instead of two.  (Polling truly forever
would also break client.bounded.finishes, and, killed at the timeout, the cleanup rule; this one
stops after SPINS looks so that it breaks only the one rule.)

breaks: client.bounded.no_spin
"""

import sys

from reference import Client, main

SPINS = 500


class Spins(Client):
    def read_outblob(self, item: str) -> bytes:
        for _ in range(SPINS):
            self.read_generation(item)
        return super().read_outblob(item)


if __name__ == "__main__":
    sys.exit(main(Spins()))
