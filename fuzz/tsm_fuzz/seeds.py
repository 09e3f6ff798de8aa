"""(Re)generate the seed corpora ``corpora/<target>/`` from our own code only.

``python -m tsm_fuzz.seeds [--out DIR]``: the parser targets' seeds are blobs the emulator's report
builders produce (read through the Tree protocol from an emulated tree: outblob, auxblob,
manifestblob for each provider), the ABI targets' seeds are hand-written programs in each target's
input encoding, and the file targets' seeds (``profile``, ``tsmseq``) are the shipped profiles and
.tsmseq files the suite writes.  No third-party or captured data: corpora/README.md.  Seed file names are the
first 12 hex digits of the content's SHA-1, so regenerating is idempotent.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

NONCE = bytes(range(0x40, 0x80))  # 64 recognisable bytes


def _blobs(spec: str, service_provider: bytes | None = None) -> dict[str, bytes]:
    from tsm_conformance.runstate import make_tree
    from tsm_conformance.target.base import read_all, write_once
    t = make_tree(None, spec)
    t.mkdir("seed")
    try:
        if service_provider is not None:
            write_once(t, "seed/service_provider", service_provider)
        write_once(t, "seed/inblob", NONCE)
        out: dict[str, bytes] = {}
        for name in ("outblob", "auxblob", "manifestblob"):
            if name in t.listdir("seed"):
                try:
                    out[name] = read_all(t, f"seed/{name}")
                except OSError:
                    pass
        return out
    finally:
        t.rmdir("seed")


def parser_seeds() -> dict[str, list[bytes]]:
    sev = _blobs("sev_guest")
    svsm = _blobs("sev_guest-svsm", b"svsm")
    out = {
        "parse_snp": [sev["outblob"], svsm["outblob"]],
        "parse_snp_certs": [sev["auxblob"]],
        "parse_svsm": [svsm["manifestblob"]],
        "parse_tdx": [_blobs("tdx_guest")["outblob"], _blobs("tdx_guest@6.11")["outblob"]],
        "parse_cca": [_blobs("arm_cca_guest")["outblob"]],
    }
    return {k: [b for b in v if b] for k, v in out.items()}


def inblob_seeds() -> list[bytes]:
    """Programs in fuzz_inblob's encoding: byte c -> op c & 7 with argument c >> 3."""
    pay = bytes(range(1, 81))
    op_w, write, pwrite, close, read = b"\x00", b"\x02", b"\x04", b"\x05", b"\x06"
    end_read = b"\x80"  # an opening byte with bit 7: open O_WRONLY, and read outblob at the end
    return [
        end_read + write + bytes([64]) + pay[:64] + close,  # the 64-byte nonce every provider takes
        end_read + write + bytes([32]) + pay[:32] + close,  # CCA's shortest challenge
        end_read + write + bytes([65]) + pay[:65] + close,  # EFBIG, then close commits nothing written
        end_read + write + bytes([0]) + close,  # zero-length write: EFAULT, still committed
        end_read + write + bytes([40]) + pay[:40] + write + bytes([24]) + pay[40:64] + close + read,  # 2 chunks
        end_read + pwrite + bytes([8, 56]) + pay[:8] + pwrite + bytes([30, 0]) + pay[:30] + close,  # gap
        read + op_w + b"\x08" + write + bytes([10]) + pay[:10] + b"\x0a" + bytes([64]) + pay[:64] +
        close + b"\x0d" + read,  # two fds, closed in turn, reads in between
        b"\xf0" + op_w + b"\x07" + close,  # O_RDWR open; an O_WRONLY one and lseek on it
    ]


def privlevel_seeds() -> list[bytes]:
    """fuzz_privlevel's encoding: byte 0 = attribute (bits 0-1), two writes (bit 2, split from bits
    5-7), long text (bits 3-4); then the text."""
    pl, sp, guid, smv = 0, 1, 2, 3
    texts = [(pl, b"3"), (pl, b"0x3"), (pl, b"03"), (pl, b"+3\n"), (pl, b"4"), (pl, b"-1"), (pl, b"08"),
             (pl, b"4294967296"), (pl, b"0x"), (pl, b"3\x00junk"), (pl, b" 3"), (pl, b"99999999999999999999"),
             (sp, b"svsm"), (sp, b"\n"), (guid, b"00000000-0000-0000-0000-000000000000"),
             (guid, b"00000000-0000-0000-0000-000000"), (guid, b"5a1e9c7e-9e1b-4d3c-a7f2-0123456789ab\n"),
             (smv, b"0"), (smv, b"0xffffffff"), (smv, b"4294967296")]
    out = [bytes([a]) + t for a, t in texts]
    out.append(bytes([pl | 0x04 | (3 << 5)]) + b"1\n2")  # two writes on one fd: "1\n" then "2"
    out.append(bytes([pl | 0x18]) + b"3")  # 4200 bytes: one store of 4095
    return out


def profile_seeds() -> list[bytes]:
    """fuzz_profile's input is one profile file named fuzz.yaml: the shipped profiles, renamed."""
    from tsm_conformance.profile.search import REPO_PROFILES
    out = []
    for p in sorted(REPO_PROFILES.glob("*.yaml")):
        out.append(p.read_bytes().replace(f"\nname: {p.stem}\n".encode(), b"\nname: fuzz\n"))
    return out


def tsmseq_seeds() -> list[bytes]:
    """fuzz_tsmseq's input is one .tsmseq file: every step kind, header key and argument form, a
    threaded schedule, and sequences the suite writes (a failure's, the differential's)."""
    from tsm_conformance.seq import ReportShape, format_tsmseq, parse_op, Sequence, Step
    every = Sequence([Step(parse_op(x), r) for x, r in (
        ("mkdir(r0)", "0 gen=0"), ("stat(r0)", "mode 040755 size 0"), ("listdir(.)", "[r0]"), ("listdir()", "[r0]"),
        ("open(r0/privlevel, O_WRONLY)", "fd0"), ("write(fd0, b'0x2\\n')", "4 gen=1"), ("close(fd0)", "0"),
        ("open(r0/inblob, O_WRONLY|O_TRUNC)", "fd1"), ("pwrite(fd1, b'\\x00\"#,)', 3)", "5"),
        ("lseek(fd1, 0, SEEK_SET)", "0"), ("lseek(fd1, -1, 2)", "EINVAL"), ("close(fd1)", "0 gen=2"),
        ("open(r0/outblob, 0)", "fd2"), ("read(fd2, 65536)", "<1184 sha1:0123abcd>"), ("pread(fd2, 16, 8)", "b''"),
        ("close(fd2)", "0"), ("mkdir(r0/sub)", "EPERM"), ("param(outblob_size, 1000)", "0"),
        ("mkdir(mine)", "0"), ("stat(mine/generation)", "mode 100444 size 4096"), ("rmdir(mine)", "0"),
        ("read(fd?, 1)", "EBADF"), ("rmdir(r0)", "0"))],
        {"check": "fuzz.seed", "emulate": "tsm_test@6.12", "track": "r0", "attempts": "3",
         "report": ReportShape("snp", auxblob="snp-certs").text()})
    race = Sequence([Step(parse_op("mkdir(r0)"), "0"),
                     Step(parse_op("open(r0/inblob, O_WRONLY)"), "fd0", "T1"),
                     Step(parse_op("rmdir(r0)"), None, "T2"),
                     Step(parse_op("write(fd0, b'x')"), None, "T1"),
                     Step(parse_op("close(fd0)"), None, "T1"),
                     Step(parse_op("listdir(.)"), None)], {"schedule": "threads", "attempts": "30"})
    out = [format_tsmseq(every).encode(), format_tsmseq(race).encode()]
    regressions = Path(__file__).resolve().parents[2] / "corpora" / "regressions"
    out += [p.read_bytes() for p in sorted(regressions.glob("*.tsmseq"))[:4]]
    return out


def write(out: Path, target: str, blobs: list[bytes]) -> int:
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    for b in blobs:
        (d / hashlib.sha1(b).hexdigest()[:12]).write_bytes(b)
    return len(blobs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tsm_fuzz.seeds", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "corpora"),
                    help="corpora directory (default: the repository's corpora/)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    seeds = {"inblob": inblob_seeds(), "privlevel": privlevel_seeds(), "profile": profile_seeds(),
             "tsmseq": tsmseq_seeds(), **parser_seeds()}
    for target, blobs in sorted(seeds.items()):
        n = write(out, target, blobs)
        print(f"{target}: {n} seeds, {sum(map(len, blobs))} bytes -> {os.path.relpath(out / target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
