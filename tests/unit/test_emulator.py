"""The emulator against the behaviour observed on real kernels (docs/real-kernels.md, Claims checked on real kernels).

These tests pin the emulator to the facts; the conformance checks are a separate encoding of the
same facts (through the profiles), so a drift in either shows up here or in the quirk matrix."""

from __future__ import annotations

import errno
import os
import struct
import threading
import time

import pytest

from tsm_conformance.emulator import KernelOops, boot, parse_spec
from tsm_conformance.emulator.providers import TsmTest
from tsm_conformance.target.base import read_all, read_text, write_once
from tsm_conformance.target.emulated import EmulatedTree


def err(fn, *a) -> str:  # noqa: ANN001
    try:
        fn(*a)
    except OSError as e:
        return errno.errorcode[e.errno]
    return "ok"


@pytest.fixture
def t() -> EmulatedTree:
    tree = EmulatedTree("tsm_test")
    tree.mkdir("r")
    return tree


def gen(t: EmulatedTree, item: str = "r") -> int:
    return int(read_text(t, f"{item}/generation"))


def report(t: EmulatedTree, item: str = "r") -> bytes:
    return read_all(t, f"{item}/outblob")


def fields(blob: bytes) -> dict[str, int]:
    magic, layout, size, calls, priv, inlen, smv, flags = struct.unpack_from("<4sIIIIIII", blob)
    assert magic == b"TSMT"
    return {"size": size, "calls": calls, "privlevel": priv, "inblob_len": inlen}


def test_fresh_item(t: EmulatedTree) -> None:
    assert sorted(t.listdir("r")) == sorted(["generation", "provider", "privlevel", "privlevel_floor",
                                             "service_provider", "service_guid", "service_manifest_version",
                                             "inblob", "outblob", "auxblob", "manifestblob"])
    assert read_text(t, "r/generation") == "0\n"
    assert read_text(t, "r/provider") == "tsm_test\n"
    assert read_text(t, "r/privlevel_floor") == "1\n"
    assert err(read_all, t, "r/outblob") == "EINVAL"
    assert err(read_all, t, "r/auxblob") == "EINVAL"


def test_modes_and_sizes(t: EmulatedTree) -> None:
    assert t.stat("r").mode == 0o40755
    assert t.stat("r/inblob").mode == 0o100200 and t.stat("r/inblob").size == 0
    assert t.stat("r/generation").mode == 0o100444 and t.stat("r/generation").size == 4096


def test_access_errors_even_for_root(t: EmulatedTree) -> None:
    for a in t.listdir("r"):
        assert err(t.open, f"r/{a}", os.O_RDWR) == "EACCES"
    assert err(t.open, "r/inblob", os.O_RDONLY) == "EACCES"
    assert err(t.open, "r/outblob", os.O_WRONLY) == "EACCES"
    assert err(t.open, "r/newfile", os.O_WRONLY | os.O_CREAT) == "EACCES"


def test_inblob_commit_at_close_and_concatenation(t: EmulatedTree) -> None:
    fd = t.open("r/inblob", os.O_WRONLY)
    assert t.write(fd, b"12") == 2 and t.write(fd, b"34") == 2
    assert gen(t) == 0
    t.close(fd)
    assert gen(t) == 1
    assert report(t)[0x40:0x44] == b"1234" and fields(report(t))["inblob_len"] == 4


def test_efbig_then_close_commits_empty(t: EmulatedTree) -> None:
    write_once(t, "r/inblob", b"x" * 64)
    assert err(write_once, t, "r/inblob", b"y" * 65) == "EFBIG"
    assert gen(t) == 2
    assert err(report, t) == "EINVAL"


def test_efbig_keeps_earlier_bytes(t: EmulatedTree) -> None:
    fd = t.open("r/inblob", os.O_WRONLY)
    t.write(fd, b"a" * 60)
    assert err(t.write, fd, b"b" * 10) == "EFBIG"
    t.close(fd)
    assert fields(report(t))["inblob_len"] == 60


def test_zero_length_write_efault_and_commits_empty(t: EmulatedTree) -> None:
    write_once(t, "r/inblob", b"x" * 8)
    assert err(write_once, t, "r/inblob", b"") == "EFAULT"
    assert gen(t) == 2 and err(report, t) == "EINVAL"


def test_pwrite_zero_len_at_64_commits_64_zero_bytes(t: EmulatedTree) -> None:
    fd = t.open("r/inblob", os.O_WRONLY)
    assert err(t.pwrite, fd, b"", 64) == "EFAULT"
    t.close(fd)
    b = report(t)
    assert fields(b)["inblob_len"] == 64 and b[0x40:0x80] == bytes(64)


def test_pwrite_gap_zero_filled(t: EmulatedTree) -> None:
    fd = t.open("r/inblob", os.O_WRONLY)
    t.pwrite(fd, b"Z" * 10, 20)
    t.close(fd)
    b = report(t)
    assert fields(b)["inblob_len"] == 30 and b[0x40:0x54] == bytes(20)


def test_open_close_without_write_is_noop(t: EmulatedTree) -> None:
    t.close(t.open("r/inblob", os.O_WRONLY | os.O_TRUNC))
    assert gen(t) == 0


def test_lseek(t: EmulatedTree) -> None:
    fd = t.open("r/outblob", os.O_RDONLY)
    assert err(t.lseek, fd, 0, os.SEEK_SET) == "ESPIPE"
    t.close(fd)
    fd = t.open("r/generation", os.O_RDONLY)
    assert t.lseek(fd, 0, os.SEEK_END) == 4096
    t.close(fd)


def test_text_write_split_and_multiple_stores(t: EmulatedTree) -> None:
    fd = t.open("r/privlevel", os.O_WRONLY)
    assert t.write(fd, b"0" * 4094 + b"3" + b"0" * 905) == 4095
    assert [err(t.write, fd, x) for x in (b"1", b"2", b"9", b"3")] == ["ok", "ok", "EINVAL", "ok"]
    t.close(fd)
    assert gen(t) == 4


def test_privlevel_range_and_report(t: EmulatedTree) -> None:
    assert err(write_once, t, "r/privlevel", b"0") == "EINVAL"  # below the floor of 1
    assert err(write_once, t, "r/privlevel", b"4") == "EINVAL"
    assert err(write_once, t, "r/privlevel", b"4294967296") == "ERANGE"
    assert err(write_once, t, "r/privlevel", b"") == "EFAULT"
    assert gen(t) == 0
    write_once(t, "r/privlevel", b"0x2")
    write_once(t, "r/inblob", b"n")
    assert fields(report(t))["privlevel"] == 2


def test_fresh_privlevel_is_zero_below_floor(t: EmulatedTree) -> None:
    write_once(t, "r/inblob", b"n")
    assert fields(report(t))["privlevel"] == 0


def test_cache_and_auxblob_share_one_call(t: EmulatedTree) -> None:
    write_once(t, "r/inblob", b"n" * 64)
    a, b = report(t), report(t)
    aux = read_all(t, "r/auxblob")
    assert a == b and fields(a)["calls"] == 1 and struct.unpack_from("<4sI", aux)[1] == 1  # then the registers (6.16+)
    write_once(t, "r/privlevel", b"3")
    read_all(t, "r/auxblob")
    assert fields(report(t))["calls"] == 2


def test_per_fd_snapshot_taken_at_first_read(t: EmulatedTree) -> None:
    write_once(t, "r/inblob", b"A" * 64)
    early = t.open("r/outblob", os.O_RDONLY)  # opened before the write, first read after it
    fd = t.open("r/outblob", os.O_RDONLY)
    head = t.read(fd, 100)
    write_once(t, "r/inblob", b"B" * 64)
    rest = t.read(fd, 1 << 16)
    assert (head + rest)[0x40:0x41] == b"A"
    assert t.pread(fd, 1, 0x40) == b"A"
    assert t.read(early, 1 << 16)[0x40:0x41] == b"B"
    t.close(fd), t.close(early)


def test_generation_text_is_per_fd_snapshot(t: EmulatedTree) -> None:
    fd = t.open("r/generation", os.O_RDONLY)
    assert t.read(fd, 10) == b"0\n"
    write_once(t, "r/privlevel", b"3")
    assert t.pread(fd, 10, 0) == b"0\n"
    t.close(fd)
    assert gen(t) == 1


def test_names_and_group_rules(t: EmulatedTree) -> None:
    t.mkdir("a" * 255)
    assert err(t.mkdir, "b" * 256) == "ENAMETOOLONG"
    assert err(t.mkdir, "r") == "EEXIST"
    assert err(t.mkdir, ".") == "EEXIST"
    assert err(t.mkdir, "r/sub") == "EPERM"
    assert err(t.rmdir, "") == "EPERM"
    assert err(t.rmdir, "r/inblob") == "ENOTDIR"
    for name in ("a b", "réport-☃", ".hidden", "-x"):
        t.mkdir(name)
        assert name in t.listdir()


def test_rmdir_with_open_fds(t: EmulatedTree) -> None:
    write_once(t, "r/inblob", b"n" * 64)
    unread = t.open("r/outblob", os.O_RDONLY)
    partly = t.open("r/outblob", os.O_RDONLY)
    head = t.read(partly, 10)
    pending = t.open("r/inblob", os.O_WRONLY)
    t.write(pending, b"p" * 64)
    t.rmdir("r")
    assert err(t.read, unread, 10) == "ENOENT"
    assert len(head + t.read(partly, 1 << 16)) == 192
    t.close(pending)  # discarded: frag_dead
    assert err(t.open, "r/generation", os.O_RDONLY) == "ENOENT"
    t.mkdir("r")
    assert gen(t) == 0 and err(report, t) == "EINVAL"
    t.close(unread), t.close(partly)


def test_no_provider_mkdir_enxio() -> None:
    k = boot("tsm_test")
    k.unregister()
    assert err(k.mkdir, "x") == "ENXIO"


@pytest.mark.parametrize("era,uncached", [("6.16", "ENXIO"), ("6.11", "ENOTTY")])
def test_unregister_with_items(era: str, uncached: str) -> None:
    t = EmulatedTree(f"tsm_test@{era}")
    for n in ("cached", "stale", "never"):
        t.mkdir(n)
    write_once(t, "cached/inblob", b"c")
    cached = report(t, "cached")
    write_once(t, "stale/inblob", b"s")
    t.kernel.unregister()
    assert report(t, "cached") == cached  # the fast path never checks the provider
    assert err(report, t, "stale") == uncached
    assert err(report, t, "never") == "EINVAL"  # the inblob check comes first
    if era == "6.16":
        assert err(read_all, t, "cached/provider") == "ENXIO"
        assert err(write_once, t, "cached/privlevel", b"1") == "ENXIO"
        assert err(write_once, t, "cached/privlevel", b"junk") == "EINVAL"
        assert err(t.kernel.register, TsmTest()) == "EBUSY"
        for n in ("cached", "stale", "never"):
            t.rmdir(n)
        t.kernel.register(TsmTest())
    else:
        with pytest.raises(KernelOops):
            read_all(t, "cached/provider")
        t.kernel.register(TsmTest())  # no refcount before the fix


def test_provider_error_passes_through_and_retries() -> None:
    t = EmulatedTree("tsm_test:fail_errno=5")
    t.mkdir("r")
    write_once(t, "r/inblob", b"n")
    assert err(report, t) == "EIO"
    t.kernel.provider.fail_errno = 0  # type: ignore[union-attr]
    assert fields(report(t))["calls"] == 1


def test_blob_limit_by_era() -> None:
    for era, size, want in (("6.16", 32768, "ok"), ("6.16", 32769, "EFBIG"), ("7.0", 32769, "ok")):
        t = EmulatedTree(f"tsm_test:outblob_size={size}@{era}")
        t.mkdir("r")
        write_once(t, "r/inblob", b"n")
        assert err(report, t) == want
        assert err(report, t) == want
        assert t.kernel.provider.calls == 1  # type: ignore[union-attr]  # cached even when too big


def test_wrap_guard_with_small_counter() -> None:
    t = EmulatedTree("tsm_test:gen_bits=4")
    t.mkdir("r")
    for _ in range(15):
        write_once(t, "r/privlevel", b"3")
    assert err(write_once, t, "r/privlevel", b"3") == "EBUSY"
    write_once(t, "r/inblob", b"n")  # silently dropped
    assert gen(t) == 15
    assert err(report, t) == "EINVAL"  # inblob never committed
    t2 = EmulatedTree("tsm_test:gen_bits=4")
    t2.mkdir("r")
    write_once(t2, "r/inblob", b"n")
    report(t2)  # a read moves read_generation along, so writes continue
    for _ in range(20):
        write_once(t2, "r/privlevel", b"3")
        report(t2)


def test_service_attributes() -> None:
    t = EmulatedTree("tsm_test")
    t.mkdir("r")
    write_once(t, "r/service_guid", b"00112233-4455-6677-8899-aabbccddeeff")
    assert err(write_once, t, "r/service_guid", b"xyz") == "EINVAL"
    assert gen(t) == 2  # bumped before parsing
    write_once(t, "r/service_provider", b"\n")
    write_once(t, "r/inblob", b"n")
    b = report(t)
    assert struct.unpack_from("<I", b, 0x1C)[0] == 1 and b[0x20:0x30] == bytes(16) and b[0x80] == 0


def test_visibility_by_era_and_provider() -> None:
    expect = {
        "tdx_guest": {"generation", "provider", "inblob", "outblob"},
        "sev_guest": {"generation", "provider", "inblob", "outblob", "auxblob", "privlevel", "privlevel_floor"},
        "sev_guest@6.7": {"generation", "provider", "inblob", "outblob", "auxblob", "privlevel", "privlevel_floor"},
        "tsm_test@6.7": {"generation", "provider", "inblob", "outblob", "auxblob", "privlevel", "privlevel_floor"},
        "tsm_test:visibility=tdx-like": {"generation", "provider", "inblob", "outblob"},
    }
    for spec, attrs in expect.items():
        t = EmulatedTree(spec)
        t.mkdir("r")
        assert set(t.listdir("r")) == attrs, spec
    for spec in ("arm_cca_guest", "sev_guest-svsm"):
        t = EmulatedTree(spec)
        t.mkdir("r")
        assert len(t.listdir("r")) == 11


def test_provider_length_rules() -> None:
    for spec, bad, good in (("sev_guest", 63, 64), ("tdx_guest", 32, 64), ("arm_cca_guest", 31, 32)):
        t = EmulatedTree(spec)
        t.mkdir("r")
        write_once(t, "r/inblob", b"n" * bad)
        assert err(report, t) == "EINVAL", spec
        write_once(t, "r/inblob", b"n" * good)
        assert err(report, t) == "ok", spec


def test_svsm_service_provider() -> None:
    t = EmulatedTree("sev_guest-svsm")
    t.mkdir("r")
    assert read_text(t, "r/privlevel_floor") == "2\n"
    write_once(t, "r/inblob", b"n" * 64)
    write_once(t, "r/service_provider", b"other\n")
    assert err(report, t) == "EINVAL"
    write_once(t, "r/service_provider", b"svsm\n")
    assert len(report(t)) == 1184 and read_all(t, "r/manifestblob")


def test_size_then_fill_race_is_modelled() -> None:
    """A writer between the sizing and the filling call changes what the fd serves (docs/real-kernels.md,
    The size-then-fill race)."""
    t = EmulatedTree("tsm_test:outblob_size=1000")
    k = t.kernel
    t.mkdir("r")
    write_once(t, "r/inblob", b"n")
    orig = k._report_read
    calls = []

    def racing(item, attr):  # noqa: ANN001, ANN202
        calls.append(attr)
        out = orig(item, attr)
        if len(calls) == 1:  # between size and fill: a new inblob and a bigger report
            k.provider.outblob_size = 3000  # type: ignore[union-attr]
            # the writer needs only tsm_rwsem, free here (frag_sem is shared): it finishes now
            writer = threading.Thread(target=write_once, args=(t, "r/inblob", b"m"))
            writer.start()
            writer.join(30)
            assert not writer.is_alive()
        return out

    k._report_read = racing  # type: ignore[method-assign]
    fd = t.open("r/outblob", os.O_RDONLY)
    data = t.read(fd, 1 << 16)
    t.close(fd)
    assert len(data) == 1000 and fields(data)["size"] == 3000  # silently truncated new report


def test_spec_errors() -> None:
    for bad, msg in (("nope", "unknown emulated provider"), ("sev_guest@6.6", "6.7"),
                     ("arm_cca_guest@6.11", "does not exist before 6.13"),
                     ("tdx_guest+privlevel-max-unchecked", "does not apply"),
                     ("sev_guest+stale-outblb", "did you mean 'stale-outblob'")):
        with pytest.raises(ValueError, match=msg):
            parse_spec(bad)


def test_lock_waits_fail_eintr_once_the_caller_is_interrupted() -> None:
    """Behind FUSE every wait must answer INTERRUPT (emulator/locks.py): rwsem readers and writers
    and the mutex fail EINTR when ``intr`` says so, and a writer that gave up lets readers in again."""
    from tsm_conformance.emulator.locks import RWLock, locked

    sem, gate = RWLock(), threading.Lock()
    flag = threading.Event()
    with sem.read():
        with pytest.raises(OSError) as e:
            flag.set()
            with sem.write(flag.is_set):
                pass
        assert e.value.errno == errno.EINTR
        with sem.read(lambda: False):  # the writer that gave up no longer holds readers back
            pass
    with sem.write():
        with pytest.raises(OSError) as e:
            with sem.read(flag.is_set):
                pass
        assert e.value.errno == errno.EINTR
    with sem.write(lambda: False):  # nothing left held
        pass
    with gate:
        with pytest.raises(OSError) as e:
            with locked(gate, flag.is_set):
                pass
        assert e.value.errno == errno.EINTR
    with locked(gate, lambda: False):
        pass


@pytest.mark.parametrize("spec", ["tsm_test", "sev_guest", "sev_guest-svsm", "tdx_guest", "arm_cca_guest",
                                  "tsm_test+rmdir-name-leak", "tsm_test+rmdir-keeps-state",
                                  "tsm_test+shared-generation", "sev_guest+shared-inblob",
                                  "tdx_guest:busy_every=3@6.16", "tsm_test:gen_bits=8,registered=0"])
def test_reboot_is_a_fresh_boot(spec: str) -> None:
    """EmulatedTree.reboot (Kernel.reset with a fresh provider): after items, open fds, quirk
    state, changed parameters and an unloaded provider, the tree answers every sequence exactly as
    a newly booted one does (reports included: the counters start again)."""
    from tsm_conformance.seq import execute
    from tsm_conformance.seqgen import generate
    used = EmulatedTree(spec)
    for n in range(3):  # leave a mess: items, committed nonces, reports, fds open, removed names
        name = f"junk{n}"
        if err(used.mkdir, name) != "ok":
            break
        write_once(used, f"{name}/inblob", bytes(range(64)))
        err(read_all, used, f"{name}/outblob")
        used.open(f"{name}/generation", os.O_RDONLY)
        fd = used.open(f"{name}/inblob", os.O_WRONLY)
        used.write(fd, b"pending")
        if n:
            used.rmdir(name)
    if used.control is not None and used.control.loaded():
        used.control.set_param("outblob_size", "4000")
        used.control.unload()
    if used.host is not None:
        used.host.set_param(next(iter(used.kernel.provider.HOST_PARAMS)), "1")
    used.reboot()
    assert used.kernel.dmesg == [] and used.listdir("") == []
    for seed in range(8):
        ops = generate(seed)
        assert execute(used, ops, "a-", ["r0"]) == execute(EmulatedTree(spec), ops, "a-", ["r0"]), seed
        used.reboot()


def test_preemption_window_only_between_kernel_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pause between sizing and filling a binary read (where a writer can slip in) is given
    only once another thread has called into the kernel: an idle thread of the process (the
    deadline watchdog) does not make every report read sleep."""
    from tsm_conformance.emulator import kernel as K
    monkeypatch.setattr(K, "PREEMPT_WINDOW", 0.3)
    t = EmulatedTree("tsm_test")
    t.mkdir("r")
    write_once(t, "r/privlevel", b"1")
    write_once(t, "r/inblob", bytes(64))
    idle = threading.Event()
    bystander = threading.Thread(target=idle.wait, daemon=True)
    bystander.start()
    try:
        t0 = time.monotonic()
        report(t)
        assert time.monotonic() - t0 < 0.25  # no window: no other thread has called in
        caller = threading.Thread(target=t.listdir, args=("r",))  # listdir is no entry point
        caller.start()
        caller.join()
        report(t)
        assert not t.kernel._competing()
        caller = threading.Thread(target=gen, args=(t,))  # open/read/close: a kernel caller
        caller.start()
        caller.join()
        assert t.kernel._competing()
        t0 = time.monotonic()
        report(t)
        assert time.monotonic() - t0 >= 0.3  # the window, now that another thread calls in
        t.reboot()
        assert not t.kernel._competing()
    finally:
        idle.set()


def test_client_fault_name_taken_makes_the_first_new_name_someone_elses() -> None:
    """client_fault=name-taken (a client fault plan): the first mkdir of a new name meets EEXIST
    because the item was just made by someone else; later names are the caller's."""
    k = boot("sev_guest:client_fault=name-taken")
    with pytest.raises(OSError) as e:
        k.mkdir("mine")
    assert e.value.errno == errno.EEXIST and k.listdir("") == ["mine"]
    k.mkdir("other")
    assert sorted(k.listdir("")) == ["mine", "other"]
