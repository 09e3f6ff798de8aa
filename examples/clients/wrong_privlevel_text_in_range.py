#!/usr/bin/env python3
"""The reference client, except that it writes privlevel as a raw byte one below the floor
(``(floor - 1).to_bytes``, b"\\x00" at floor 0 and 1) instead of decimal text: configfs parses
privlevel with kstrtouint, so this is EINVAL, and the value is out of range besides.

breaks: client.privlevel.text_in_range
"""

import os
import sys

from reference import Client, main, write_once


class RawPrivlevel(Client):
    def write_privlevel(self, item: str, level: int) -> None:
        write_once(os.path.join(item, "privlevel"), max(level - 1, 0).to_bytes(1, "little"))


if __name__ == "__main__":
    sys.exit(main(RawPrivlevel()))
