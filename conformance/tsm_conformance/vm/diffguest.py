"""Guest side of the differential: run each sequence on the real tree with a freshly loaded tsm_test.

``python -m tsm_conformance.vm.diffguest SEQS.json OUT.json BUSYBOX MODULE.ko`` (inside the VM).
A fresh module per sequence makes the provider's report_new counter start at 0, as in the emulator.
"""

from __future__ import annotations

import json
import subprocess
import sys

from ..names import DIFFERENTIAL
from ..seq import execute, parse_op
from ..target.live import LiveTree

ROOT = "/sys/kernel/config/tsm/report"


def main(argv: list[str]) -> int:
    seqs_path, out_path, busybox, ko = argv
    seqs = json.loads(open(seqs_path).read())
    tree = LiveTree(ROOT)
    from ..profile.load import load_profile
    m = load_profile("tsm_test").measurements  # its registers measure nothing: the sequences may extend them
    mr = (m.group, m.refresh_counter, True) if m is not None else None
    results = []
    for s in seqs:
        load = subprocess.run([busybox, "insmod", ko, *s["params"].split()], capture_output=True, text=True)
        if load.returncode:
            results.append({"id": s["id"], "error": f"insmod: {load.stderr.strip()}"})
            continue
        try:
            ops = [parse_op(line) for line in s["ops"]]
            results.append({"id": s["id"], "results": execute(tree, ops, f"{DIFFERENTIAL}{s['id']}-", s["track"],
                                                              mr=mr)})
        finally:
            subprocess.run([busybox, "rmmod", "tsm_test"], capture_output=True)
    with open(out_path, "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
