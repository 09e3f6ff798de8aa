"""Random operation sequences for the emulator-vs-kernel differential (seeded, reproducible).

Sequences mix valid and invalid operations on up to three items: inblob writes of every
interesting length and offset, privlevel/service texts from the kstrtouint and guid grammars,
full and partial reads, fds kept open across other operations, lseek, listdir, stat, rmdir with
fds open.  Nothing here knows the expected results: the two trees decide.
"""

from __future__ import annotations

import random

from .seq import MR_HEAD, Op

ATTRS_RO = ("outblob", "auxblob", "manifestblob", "generation", "provider", "privlevel_floor")
PRIVLEVEL_TEXTS = (b"0", b"1", b"2", b"3", b"4", b"0x3", b"03", b"+2", b"3\n", b" 1", b"1 ", b"08", b"-1",
                   b"4294967296", b"", b"1\0junk", b"3\n\n", b"0x", b"00000000000000000000002")
GUIDS = (b"c476f1eb-0123-45a5-9641-b4e7dde5bfe3", b"00000000-0000-0000-0000-000000", b"xyz",
         b"C476F1EB-0123-45A5-9641-B4E7DDE5BFE3\n", b"")
SERVICE_PROVIDERS = (b"svsm", b"svsm\n", b"\n", b"ab\0cd", b"other")
MANIFEST_VERSIONS = (b"0", b"0x10", b"010", b"4294967295", b"-1", b"7 ", b"")
INBLOB_LENGTHS = (0, 1, 3, 31, 32, 33, 63, 64, 65, 100)


def generate(seed: int, length: int | None = None, registers: tuple[tuple[str, int, bool], ...] = ()) -> list[Op]:
    """``registers``: (file name, size, writable) of the provider's measurement registers
    (6.16+): then about one step in seven acts on them (seq.MR_HEAD), reads, extends and the write
    contract's refusals; without them the sequence for a seed is what it always was."""
    # One long function on purpose: one random walk, whose order of draws is the sequence a seed
    # names (the differential's sequences are named by seeds); its branches share the walk's state.
    rnd = random.Random(seed)
    n = length or rnd.randint(6, 30)
    ops: list[Op] = []
    open_fds: list[tuple[str, str]] = []  # (fd name, attribute path)
    nfd = 0

    def data(k: int) -> bytes:
        return bytes(rnd.randrange(256) for _ in range(k))

    def open_(path: str, flags: str) -> str:
        nonlocal nfd
        name = f"fd{nfd}"
        nfd += 1
        ops.append(Op("open", (path, flags)))
        open_fds.append((name, path))
        return name

    def text_write(r: str, attr: str, choices: tuple[bytes, ...]) -> None:
        fd = open_(f"{r}/{attr}", "O_WRONLY")
        for _ in range(rnd.choice((1, 1, 1, 2))):
            ops.append(Op("write", (fd, rnd.choice(choices))))
        ops.append(Op("close", (fd,)))
        open_fds.pop()

    items = [f"r{i}" for i in range(rnd.choice((1, 1, 2, 3)))]
    live = set(items)
    for r in items:
        ops.append(Op("mkdir", (r,)))
        if rnd.random() < 0.7:  # most items get a nonce early, so reads produce reports
            fd = f"fd{nfd}"
            nfd += 1
            ops += [Op("open", (f"{r}/inblob", "O_WRONLY")), Op("write", (fd, data(rnd.choice((32, 64, 64))))),
                    Op("close", (fd,))]

    while len(ops) < n:
        if registers and rnd.random() < 0.15:
            nfd = _register_step(rnd, ops, nfd, registers)
            continue
        # mostly existing items; now and then a removed one (its errors are behaviour too)
        r = rnd.choice(sorted(live) if live and rnd.random() < 0.9 else items)
        k = rnd.random()
        if k < 0.22:  # inblob: one or more writes, maybe pwrite, maybe left open for later
            fd = open_(f"{r}/inblob", rnd.choice(("O_WRONLY", "O_WRONLY", "O_WRONLY|O_APPEND", "O_WRONLY|O_TRUNC")))
            for _ in range(rnd.choice((0, 1, 1, 1, 2, 3))):
                if rnd.random() < 0.25:
                    ops.append(Op("pwrite", (fd, data(rnd.choice((0, 1, 4, 10))), rnd.choice((0, 4, 20, 60, 64)))))
                else:
                    ops.append(Op("write", (fd, data(rnd.choice(INBLOB_LENGTHS)))))
            if rnd.random() < 0.8:
                ops.append(Op("close", (fd,)))
                open_fds.pop()
        elif k < 0.40:
            text_write(r, "privlevel", PRIVLEVEL_TEXTS)
        elif k < 0.47:
            attr, choices = rnd.choice((("service_provider", SERVICE_PROVIDERS), ("service_guid", GUIDS),
                                        ("service_manifest_version", MANIFEST_VERSIONS)))
            text_write(r, attr, choices)
        elif k < 0.68:  # a whole read on a fresh fd
            fd = open_(f"{r}/{rnd.choice(ATTRS_RO)}", "O_RDONLY")
            ops.append(Op("read", (fd, 65536)))
            ops.append(Op("read", (fd, 65536)))
            ops.append(Op("close", (fd,)))
            open_fds.pop()
        elif k < 0.78:  # a partial read kept open: snapshots across later writes
            fd = open_(f"{r}/{rnd.choice(('outblob', 'auxblob', 'generation'))}", "O_RDONLY")
            ops.append(Op("read", (fd, rnd.choice((1, 7, 100)))))
        elif k < 0.84 and open_fds:  # act on an fd that stayed open
            fd, path = rnd.choice(open_fds)
            if path.endswith(("inblob",)):
                ops.append(Op("write", (fd, data(rnd.choice((1, 8, 64))))))
            else:
                ops.append(rnd.choice((Op("read", (fd, 65536)), Op("pread", (fd, 16, rnd.choice((0, 5, 1000)))))))
            if rnd.random() < 0.6:
                ops.append(Op("close", (fd,)))
                open_fds.remove((fd, path))
        elif k < 0.89:
            ops.append(rnd.choice((Op("listdir", (r,)), Op("listdir", (".",)),
                                   Op("stat", (f"{r}/{rnd.choice(('inblob', 'outblob', 'generation'))}",)))))
        elif k < 0.95:
            new = f"r{len(items)}" if len(items) < 3 and rnd.random() < 0.5 else r
            if new not in items:
                items.append(new)
            ops.append(Op("mkdir", (new,)))
            live.add(new)
        else:
            ops.append(Op("rmdir", (r,)))
            live.discard(r)
            if rnd.random() < 0.85:
                ops.append(Op("mkdir", (r,)))
                live.add(r)
    for fd, _ in list(open_fds):
        ops.append(Op("close", (fd,)))
    return ops


def _register_step(rnd: random.Random, ops: list[Op], nfd: int, registers: tuple[tuple[str, int, bool], ...]) -> int:
    """One action on a measurement register (docs/abi-measurements.md §2, §4); the next fd number."""
    name, size, writable = rnd.choice(registers)
    path = f"{MR_HEAD}/{name}"
    fd = f"fd{nfd}"
    k = rnd.random()
    if not writable or k < 0.35:  # a whole read, or a partial one at an offset
        ops.append(Op("open", (path, "O_RDONLY")))
        partial = Op("pread", (fd, 16, rnd.choice((0, 5, size))))
        ops.append(Op("read", (fd, size + 1)) if rnd.random() < 0.7 else partial)
    elif k < 0.4:
        ops.append(rnd.choice((Op("listdir", (MR_HEAD,)), Op("stat", (path,)))))
        return nfd
    else:  # an extend, or one of the write contract's refusals: short, long (then EFBIG), offsets, empty
        ops.append(Op("open", (path, "O_WRONLY")))
        data = bytes(rnd.randrange(256) for _ in range(size + 1))
        kind = rnd.choice(("exact", "exact", "exact", "short", "long", "offset", "end", "empty"))
        if kind == "exact":
            ops.append(Op("write", (fd, data[:size])))
        elif kind == "short":
            ops.append(Op("write", (fd, data[:size - 1])))
        elif kind == "long":
            ops += [Op("write", (fd, data)), Op("write", (fd, data[:size]))]
        elif kind == "offset":
            ops.append(Op("pwrite", (fd, data[:size - 1], 1)))
        elif kind == "end":
            ops.append(Op("pwrite", (fd, data[:size], size)))
        else:
            ops.append(Op("write", (fd, b"")))
    ops.append(Op("close", (fd,)))
    return nfd + 1

