#!/usr/bin/env python3
"""The reference client, except that it uses one fixed name for every run and makes it with
mkdir(exist_ok=True): an item of that name that someone else made is adopted (written, read and
removed), like cvm-attest's ``Path.mkdir(parents=True, exist_ok=True)`` (docs/clients-findings.md).
Adopting the other owner's item also touches it, so client.items.foreign_untouched fails with it.

breaks: client.items.unique_name
"""

import os
import sys
from pathlib import Path

from reference import REPORT, Client, main


class Adopts(Client):
    def make_item(self) -> str:
        path = os.path.join(REPORT, "attest")
        Path(path).mkdir(exist_ok=True)  # EEXIST swallowed: someone else's item becomes ours
        return path


if __name__ == "__main__":
    sys.exit(main(Adopts()))
