#!/usr/bin/env python3
"""The reference client, except that it gives up at the first EBUSY from outblob (as
voltage-verify does, docs/clients-findings.md), where the report was only still in flight.

breaks: client.errors.busy_retried
"""

import sys

from reference import Client, main


class GivesUp(Client):
    busy_tries = 1


if __name__ == "__main__":
    sys.exit(main(GivesUp()))
