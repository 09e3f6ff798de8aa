"""procs.py: a running pid is alive, a zombie and a reaped one are not."""

from __future__ import annotations

import os
import subprocess
import time

from tsm_conformance.procs import killpg, pid_alive


def test_running_zombie_and_reaped() -> None:
    assert pid_alive(os.getpid())
    p = subprocess.Popen(["sleep", "60"], process_group=0)
    assert pid_alive(p.pid)
    assert killpg(p.pid, 9)
    end = time.monotonic() + 30
    while pid_alive(p.pid) and time.monotonic() < end:  # dead, not yet reaped: a zombie
        time.sleep(0.01)
    assert not pid_alive(p.pid) and p.poll() is not None  # (poll reaps it)
    assert not killpg(p.pid, 0)
