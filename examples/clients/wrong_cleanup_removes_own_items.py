#!/usr/bin/env python3
"""The reference client, except that it leaves its item behind.

breaks: client.cleanup.removes_own_items
"""

import sys

from reference import Client, main


class Leaves(Client):
    def remove_item(self, item: str) -> None:
        pass  # "the kernel cleans up": it does not, the item stays in report/


if __name__ == "__main__":
    sys.exit(main(Leaves()))
