#!/usr/bin/env python3
"""A configfs-tsm report client that follows the ABI (docs/abi.md §1-§4, §7-§8): the calibration
client every ``client.*`` rule must pass (conformance/tsm_conformance/client/rules.py).

breaks: nothing

    python3 reference.py --nonce HEX

One item of its own (pid + random name; EEXIST: another name), privlevel set to privlevel_floor
where the provider shows privlevel, the inblob in one write and a close, generation read before
the commit, after it and after the outblob read (a move means someone else wrote: retry, at most
RETRIES times), EBUSY retried with a short bounded backoff, an empty outblob refused, and only its
own item removed, in a finally.  Prints the report's length and sha256; exit 0 on success, 1 on
failure.  The wrong_*.py clients import this one and change one step each.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import secrets
import signal
import sys
import time

REPORT = "/sys/kernel/config/tsm/report"
RETRIES = 5       # report attempts when generation moved under the read
BUSY_TRIES = 5    # outblob reads when the provider says EBUSY
NAME_TRIES = 8    # item names tried when mkdir says EEXIST


class ClientError(Exception):
    pass


def read_all(path: str) -> bytes:
    """One fd, read to EOF (one snapshot, abi.md §3), closed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def write_once(path: str, data: bytes) -> None:
    """One write() on a fresh fd, then close (for inblob the close is the commit)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        n = os.write(fd, data)
        if n != len(data):
            raise ClientError(f"{path}: short write ({n} of {len(data)} bytes)")
    finally:
        os.close(fd)


class Client:
    retries = RETRIES
    busy_tries = BUSY_TRIES

    def __init__(self) -> None:
        self.item = ""

    # -- the item
    def name(self) -> str:
        return f"refclient-{os.getpid()}-{secrets.token_hex(4)}"

    def make_item(self) -> str:
        for _ in range(NAME_TRIES):
            path = os.path.join(REPORT, self.name())
            try:
                os.mkdir(path)
            except FileExistsError:
                continue  # someone else's: never touch it, pick another name
            return path
        raise ClientError(f"no free item name after {NAME_TRIES} tries")

    def remove_item(self, item: str) -> None:
        os.rmdir(item)

    # -- the options
    def set_privlevel(self, item: str) -> None:
        if not os.path.exists(os.path.join(item, "privlevel")):
            return  # the provider has no privlevel (tdx_guest)
        floor_path = os.path.join(item, "privlevel_floor")
        floor = int(read_all(floor_path)) if os.path.exists(floor_path) else 0
        self.write_privlevel(item, floor)

    def write_privlevel(self, item: str, level: int) -> None:
        write_once(os.path.join(item, "privlevel"), f"{level}\n".encode())

    # -- the report
    def write_inblob(self, item: str, data: bytes) -> None:
        write_once(os.path.join(item, "inblob"), data)

    def read_generation(self, item: str) -> int:
        return int(read_all(os.path.join(item, "generation")))  # reopened every time (abi.md §3)

    def read_outblob(self, item: str) -> bytes:
        for attempt in range(1, self.busy_tries + 1):
            try:
                return read_all(os.path.join(item, "outblob"))
            except OSError as e:
                if e.errno != errno.EBUSY or attempt == self.busy_tries:
                    raise
                time.sleep(0.05 * attempt)  # a report still in flight (abi.md §5.2)
        raise AssertionError("unreachable")

    def accept(self, blob: bytes) -> None:
        if not blob:
            raise ClientError("the provider returned an empty report")

    def on_retry(self, item: str) -> None:
        """Before another attempt after generation moved: nothing to do, the item is still ours."""

    def get_report(self, item: str, nonce: bytes) -> bytes:
        for attempt in range(1, self.retries + 1):
            g0 = self.read_generation(item)
            self.write_inblob(item, nonce)
            g1 = self.read_generation(item)
            blob = self.read_outblob(item)
            g2 = self.read_generation(item)
            if g1 == g0 + 1 and g2 == g1:  # only our own commit in between
                self.accept(blob)
                return blob
            print(f"generation moved ({g0} -> {g1} -> {g2}), attempt {attempt} of {self.retries}",
                  file=sys.stderr)
            self.on_retry(item)
        raise ClientError(f"generation kept moving ({self.retries} attempts)")

    def attest(self, nonce: bytes) -> bytes:
        self.item = self.make_item()
        try:
            self.set_privlevel(self.item)
            return self.get_report(self.item, nonce)
        finally:
            self.remove_item(self.item)


def main(client: Client, argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ask configfs-tsm for a report")
    ap.add_argument("--nonce", required=True, help="1 to 64 bytes of report data, in hex")
    args = ap.parse_args(argv)
    try:
        nonce = bytes.fromhex(args.nonce)
    except ValueError:
        ap.error("--nonce: not hex")
    if not 1 <= len(nonce) <= 64:
        ap.error("--nonce: 1 to 64 bytes")
    # SEV-SNP and TDX take exactly 64 bytes of report data (docs/abi.md §5): pad as they expect,
    # never send a shorter inblob and hope
    nonce = nonce.ljust(64, b"\0")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally on SIGTERM too
    try:
        blob = client.attest(nonce)
    except (OSError, ValueError, ClientError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"report: {len(blob)} bytes, sha256 {hashlib.sha256(blob).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Client()))
