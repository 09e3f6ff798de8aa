#!/usr/bin/env python3
"""The reference client, except that its retry path (generation moved) removes the item and makes
a new one, but the attempt goes on with the old path (cvm-attest's stale ``privlevel_file``,
docs/clients-findings.md): the next attempt reads generation of, and would write inblob to, an item
it has already removed.  The new item is the one its finally removes, so nothing is left behind.
It shows only under a fault plan that makes it retry (generation-bump).

breaks: client.errors.no_use_after_rmdir
"""

import os
import sys

from reference import Client, main


class StalePath(Client):
    def on_retry(self, item: str) -> None:
        os.rmdir(item)                  # "start over with a fresh item"
        self.item = self.make_item()    # the finally removes this one; the loop keeps using `item`


if __name__ == "__main__":
    sys.exit(main(StalePath()))
