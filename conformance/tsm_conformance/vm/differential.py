"""Host side of the differential: the same sequences on the real kernel and on the emulator at the
kernel's era, compared operation by operation (return value, errno, bytes read, generation)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..emulator.era import Era
from ..names import DIFFERENTIAL
from ..seq import execute, parse_op
from ..seqgen import generate
from ..target.emulated import EmulatedTree

# Module parameter variants, cycled over the sequences (kernel module names = emulator names).
VARIANTS = (
    "privlevel_floor=1",
    "privlevel_floor=0 visibility=sev-like",
    "privlevel_floor=3 visibility=tdx-like auxblob=0 manifestblob=0",
    "privlevel_floor=2 outblob_size=40000",
    "fail_errno=5",
)


@dataclass
class Divergence:
    seq_id: int
    params: str
    index: int
    ops: list[str]
    kernel: list[str]
    emulator: list[str]
    track: tuple[str, ...] = ()

    def render(self) -> str:
        lines = [f"sequence {self.seq_id} (tsm_test {self.params}): first divergence at op {self.index}"]
        for i, op in enumerate(self.ops):
            k = self.kernel[i] if i < len(self.kernel) else "-"
            e = self.emulator[i] if i < len(self.emulator) else "-"
            mark = "  " if k == e else "!!"
            lines.append(f"  {mark} {op}  kernel: {k}" + ("" if k == e else f"  emulator: {e}"))
        return "\n".join(lines)


def registers(release: str) -> tuple[tuple[str, int, bool], ...]:
    """tsm_test's measurement registers where the kernel has them (its profile; 6.16+), else none.
    A kernel built without CONFIG_TSM_MEASUREMENTS has no group: register steps then fail ENOENT
    in the guest and diverge, which says so."""
    from ..profile.load import load_profile
    from ..profile.model import version_tuple
    m = load_profile("tsm_test").measurements
    if m is None or version_tuple(release) < version_tuple(m.since):
        return ()
    return tuple((r.file_name, r.size, r.writable) for r in m.registers)


def make_sequences(count: int, seed: int, release: str = "") -> list[dict]:
    regs = registers(release) if release else ()
    out = []
    for i in range(count):
        ops = generate(seed + i, registers=regs)
        items = sorted({str(o.args[0]).split("/")[0] for o in ops if o.name == "mkdir"})
        out.append({"id": i, "params": VARIANTS[i % len(VARIANTS)], "ops": [str(o) for o in ops],
                    "track": items})
    return out


def era_of(release: str) -> str:
    m = re.match(r"(\d+)\.(\d+)", release)
    return Era.parse(f"{m[1]}.{m[2]}").name if m else "7.0"


def emulate(seq: dict, era: str) -> list[str]:
    spec = "tsm_test:" + ",".join(seq["params"].split()) + f"@{era}"
    return execute(EmulatedTree(spec), [parse_op(x) for x in seq["ops"]], f"{DIFFERENTIAL}{seq['id']}-", seq["track"])


def compare(seqs: list[dict], kernel_results: list[dict], era: str) -> tuple[list[Divergence], list[str]]:
    by_id = {r["id"]: r for r in kernel_results}
    divs, errors = [], []
    for s in seqs:
        r = by_id.get(s["id"])
        if r is None or "error" in r:
            errors.append(f"sequence {s['id']}: {r.get('error') if r else 'no result from the guest'}")
            continue
        emu = emulate(s, era)
        for i, (k, e) in enumerate(zip(r["results"], emu)):
            if k != e:
                divs.append(Divergence(s["id"], s["params"], i, s["ops"], r["results"], emu, tuple(s["track"])))
                break
        else:
            if len(r["results"]) != len(emu):
                divs.append(Divergence(s["id"], s["params"], min(len(emu), len(r["results"])), s["ops"],
                                       r["results"], emu, tuple(s["track"])))
    return divs, errors


def write_sequences(results: Path, count: int, seed: int, release: str = "") -> list[dict]:
    seqs = make_sequences(count, seed, release)
    (results / "seqs.json").write_text(json.dumps(seqs))
    return seqs


def divergence_file(d: Divergence, era: str, release: str) -> str:
    """The divergent sequence as a .tsmseq whose expected results are the kernel's."""
    from ..seq import Sequence, Step, format_tsmseq
    steps = [Step(parse_op(o), k) for o, k in zip(d.ops, d.kernel)]
    header = {"emulate": "tsm_test:" + ",".join(d.params.split()) + f"@{era}", "track": " ".join(d.track),
              "verified-on": f"{release} with kmod/tsm_test {d.params} (expected results are the kernel's)"}
    return format_tsmseq(Sequence(steps, header))
