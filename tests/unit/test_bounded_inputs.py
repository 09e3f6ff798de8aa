"""Bounded inputs and the .tsmseq grammar, in-process (issue 15; tests/test_hostile.py runs the
commands on the same kinds of input).  inputs.read_bounded, the profile loader's bounds, the
grammar's one-line errors, and replay touching only what it makes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tsm_conformance import inputs
from tsm_conformance.inputs import InputError, read_bounded
from tsm_conformance.profile.load import ProfileError, load_profile
from tsm_conformance.seq import (Executor, Op, SeqError, Sequence, Step, confine, format_tsmseq, load_tsmseq,
                                 parse_op, parse_tsmseq, replay)
from tsm_conformance.target.emulated import EmulatedTree


# ----------------------------------------------------------------------------- inputs.read_bounded

def test_read_bounded_reads_a_regular_file(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"x" * 100)
    assert read_bounded(f, 100) == b"x" * 100
    with pytest.raises(InputError, match=r"larger than 99 bytes, the bound for a thing \(100 bytes\)"):
        read_bounded(f, 99, "thing")


@pytest.mark.parametrize(("make", "what"), [
    (lambda p: os.mkfifo(p), "a FIFO"),
    (lambda p: p.mkdir(), "a directory"),
    (lambda p: os.symlink("/dev/zero", p), "a character device"),
    (lambda p: None, "No such file"),
])
def test_read_bounded_refuses_unread(make, what: str, tmp_path: Path) -> None:  # noqa: ANN001
    p = tmp_path / "x"
    make(p)
    with pytest.raises(InputError) as info:
        read_bounded(p, 1024, "profile")  # a FIFO would block here, /dev/zero never end
    assert what in str(info.value) and str(info.value).startswith(str(p)) and "\n" not in str(info.value)


def test_read_bounded_refuses_report_groups_and_pseudo_filesystems(tmp_path: Path) -> None:
    attr = tmp_path / "g" / "tsm" / "report" / "item" / "outblob"
    attr.parent.mkdir(parents=True)
    attr.write_bytes(b"report")
    os.symlink(attr, tmp_path / "link")
    with pytest.raises(InputError, match="inside the report group"):
        read_bounded(tmp_path / "link", 1024)
    with pytest.raises(InputError, match="on proc, a pseudo-filesystem"):
        read_bounded("/proc/self/status", 1024)


def test_utf8_names_line_and_column() -> None:
    with pytest.raises(InputError) as info:
        inputs.utf8(b"ok\nab\xffc\n", "f")
    assert (info.value.line, info.value.col) == (2, 3) and str(info.value).startswith("f:2: not UTF-8")


# ----------------------------------------------------------------------------- profiles

@pytest.mark.parametrize(("text", "what"), [
    ("a: " + "[" * 100_000 + "\n", r"x\.yaml:1:\d+: .*nested too deeply"),
    ("".join(" " * i + f"k{i}:\n" for i in range(200)), r"x\.yaml:\d+:\d+: .*nested too deeply"),
    ("x0: &x0 [1]\n" + "".join(f"x{i}: &x{i} [*x{i - 1}]\n" for i in range(1, 100)), "aliases expanded"),
    ("a: [" + "1," * 30_000 + "1]\n", "more than 20000 YAML nodes"),
    ("a: !!python/object/apply:os.system [true]\n", "is not allowed"),
    ("a: b\x07\n", "unacceptable character"),
])
def test_profile_bounds(text: str, what: str, tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text(text)
    with pytest.raises(ProfileError, match=what) as info:
        load_profile(str(f))
    assert "\n" not in str(info.value)


def test_profile_size_bound_before_reading(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    with open(f, "wb") as fh:
        fh.truncate(52 * 1024 * 1024)
    with pytest.raises(ProfileError, match="larger than 256 KiB"):
        load_profile(str(f))


# ----------------------------------------------------------------------------- the .tsmseq grammar

def test_every_op_kind_round_trips() -> None:
    for text in ("mkdir(r0)", "rmdir(r0/sub)", "listdir(.)", "listdir()", "stat(.)",
                 "open(r0/inblob, O_WRONLY|O_TRUNC)",
                 "open(r0/outblob, 3)", "close(fd0)", "read(fd?, 65536)", "pread(fd1, 16, 0)", r"write(fd0, b'a,\'#)')",
                 "pwrite(fd0, b'', 9223372036854775807)", "lseek(fd0, -5, SEEK_END)", "lseek(fd0, 0, 4)",
                 "param(outblob_size, 1000)", "param(fail_errno, EIO)"):
        op = parse_op(text)
        assert parse_op(str(op)) == op, text


@pytest.mark.parametrize(("text", "what"), [
    ("unlink(r0)", "unknown operation 'unlink'"),
    ("open(r0/inblob, O_BOGUS)", "unknown open flag 'O_BOGUS'"),
    ("lseek(fd0, 0, SEEK_BOGUS)", "unknown whence 'SEEK_BOGUS'"),
    ("read(fd0, abc)", "'abc' is not a byte count"),
    ("read(fd0, 67108865)", "out of range"),
    ("write(fd0)", "write takes 2 arguments"),
    ("mkdir()", "mkdir takes 1 argument"),
    ("mkdir(r0, r1)", "mkdir takes 1 argument"),
    ("write(fd0, 'abc')", "not a bytes literal"),
    ("write(fd0, 12)", "not a bytes literal"),
    ("write(fd0, b'abc)", "unterminated"),
    ("write(fd0, b'\\q')", "not a valid bytes literal"),
    ("write(x, b'')", "not an fd"),
    ("open(../x, O_RDONLY)", "leave the item or the tree"),
    ("open(/etc/passwd, O_RDONLY)", "absolute path"),
    ("listdir(r0/../..)", "leave the item or the tree"),
    ("mkdir(r0/a/b)", "deeper than ITEM/ATTRIBUTE"),
    ("open(., O_RDONLY)", "only for listdir and stat"),
    ("mkdir(" + "n" * 256 + ")", "longer than 255 bytes"),
    ("garbage", "not an operation"),
])
def test_parse_op_says_what_is_wrong(text: str, what: str) -> None:
    with pytest.raises(SeqError, match=what) as info:
        parse_op(text)
    assert "\n" not in str(info.value)


def test_parse_tsmseq_names_the_line_and_load_the_file(tmp_path: Path) -> None:
    text = "# tsmseq 1\n# emulate: sev_guest\nmkdir(r0)\n\n# a comment\nopen(r0/inblob, O_BOGUS)  # fd0\n"
    with pytest.raises(SeqError, match=r"^line 6: open: unknown open flag"):
        parse_tsmseq(text)
    f = tmp_path / "x.tsmseq"
    f.write_text(text)
    with pytest.raises(SeqError, match=rf"^{f}:6: open: unknown open flag"):
        load_tsmseq(str(f))
    f.write_bytes(b"# tsmseq 1\nmkdir(r0)\nwrite(fd0, b'\xff')\n")
    with pytest.raises(SeqError, match=rf"^{f}:3: not UTF-8"):
        load_tsmseq(str(f))
    os.unlink(f)
    os.mkfifo(f)
    with pytest.raises(SeqError, match=rf"^{f}: a FIFO"):
        load_tsmseq(str(f))


@pytest.mark.parametrize(("text", "what"), [
    ("mkdir(r0)\n" * 100_000, "more than 100000 lines"),
    ("mkdir(r0)\nwrite(fd0, b'" + "x" * 70_000 + "')\n", "line 3: line longer than 64 KiB"),
    ("# " + "x" * 5 * 1024 * 1024 + "\n", "larger than 4 MiB"),
    ("".join(f"T{i}: listdir(.)\n" for i in range(70)), "line 66: more than 64 threads"),
    ("mkdir(r0)\x00\n", "line 2: control character 0x00"),
    ("rmdir(myagent-1)  # 0\n", "line 2: .*'myagent-1', which this sequence does not make"),
    ("mkdir(mine/sub)\n", "line 2: .*'mine', which this sequence does not make"),
])
def test_parse_tsmseq_bounds_and_foreign_items(text: str, what: str) -> None:
    with pytest.raises(SeqError, match=what):
        parse_tsmseq("# tsmseq 1\n" + text)


def test_parse_tsmseq_header_values() -> None:
    for header, what in (("attempts: 0", "header attempts"), ("attempts: x", "header attempts"),
                         ("track: r0 other", "header track"), ("report: nonce=x", "header report")):
        with pytest.raises(SeqError, match=f"line 2: {what}"):
            parse_tsmseq(f"# tsmseq 1\n# {header}\nmkdir(r0)\n")


# ----------------------------------------------------------------------------- replay touches only what it makes

def test_replay_maps_every_item_onto_its_own_names() -> None:
    tree = EmulatedTree("tsm_test")
    tree.mkdir("myagent-1")  # another client's item
    seq = parse_tsmseq("# tsmseq 1\nmkdir(r0)  # 0\nmkdir(myagent-1x)  # 0\nlistdir(.)  # [myagent-1x, r0]\n"
                       "open(myagent-1x/inblob, O_WRONLY)  # fd0\nwrite(fd0, b'x')  # 1\nclose(fd0)  # 0\n")
    assert confine(seq, "tsmrp-7-") == {"myagent-1x": "tsmrp-7-n0"}
    seen: list[str] = []
    mkdir = tree.mkdir
    tree.mkdir = lambda name: (seen.append(name), mkdir(name))[1]  # type: ignore[method-assign]
    assert replay(tree, seq, "tsmrp-7-") == []
    assert seen == ["tsmrp-7-0", "tsmrp-7-n0"] and tree.listdir("") == ["myagent-1"]


def test_replay_refuses_what_it_does_not_make() -> None:
    tree = EmulatedTree("tsm_test")
    tree.mkdir("myagent-1")
    foreign = Sequence([Step(Op("rmdir", ("myagent-1",)), "0")], {})  # built in code, not parsed
    with pytest.raises(SeqError, match="does not make"):
        replay(tree, foreign, "tsmrp-7-")
    escape = Sequence([Step(Op("rmdir", ("../x",)), "0")], {})
    with pytest.raises(SeqError, match="leave the item or the tree"):
        replay(tree, escape, "tsmrp-7-")
    tree.mkdir("tsmrp-7-0")  # a leftover with the name replay would make
    with pytest.raises(SeqError, match="tsmrp-7-0 is already in the report group"):
        replay(tree, parse_tsmseq("# tsmseq 1\nmkdir(r0)\nrmdir(r0)\n"), "tsmrp-7-")
    assert sorted(tree.listdir("")) == ["myagent-1", "tsmrp-7-0"]


def test_confined_executor_refuses_unmapped_names() -> None:
    ex = Executor(EmulatedTree("tsm_test"), "p-", aliases={})
    assert ex.real("r3/inblob") == "p-3/inblob" and ex.real(".") == "."
    with pytest.raises(ValueError, match="not an item this sequence makes"):
        ex.real("myagent-1/inblob")
    assert Executor(EmulatedTree("tsm_test"), "p-").real("other/x") == "other/x"  # the suite's own executors


def test_format_parse_round_trip_keeps_steps() -> None:
    seq = parse_tsmseq("# tsmseq 1\n# track: r0\nmkdir(r0)  # 0\nT1: write(fd0, b'#')  # EBADF\nT2: listdir()\n")
    again = parse_tsmseq(format_tsmseq(seq))
    assert again.steps == seq.steps and again.header == seq.header and [s.line for s in seq.steps] == [3, 4, 5]
