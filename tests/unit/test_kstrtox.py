"""kstrtouint / guid_parse against the table observed on real 6.12 and 7.3 kernels (docs/real-kernels.md,
claims: Text attributes)."""

import errno

import pytest

from tsm_conformance.emulator.kstrtox import guid_parse, kstrtouint

ACCEPTED = {b"0x3": 3, b"03": 3, b"+3": 3, b"3\n": 3, b"0": 0, b"00000000000000000000002": 2,
            b"1\0junk": 1, b"0X1f": 31, b"4294967295": 0xFFFFFFFF, b"010": 8}
EINVAL = [b"3\n\n", b"-1", b"3x", b"08", b" 1", b"1 ", b"0x", b"\n", b"0b1", b"0o1", b"3\r", b"", b"++1"]
ERANGE = [b"4294967296", b"18446744073709551616", b"99999999999999999999999"]


@pytest.mark.parametrize("text,value", ACCEPTED.items())
def test_accepted(text: bytes, value: int) -> None:
    assert kstrtouint(text) == value


@pytest.mark.parametrize("text", EINVAL)
def test_einval(text: bytes) -> None:
    with pytest.raises(OSError) as e:
        kstrtouint(text)
    assert e.value.errno == errno.EINVAL


@pytest.mark.parametrize("text", ERANGE)
def test_erange(text: bytes) -> None:
    with pytest.raises(OSError) as e:
        kstrtouint(text)
    assert e.value.errno == errno.ERANGE


def test_guid_mixed_endian_and_trailing_ignored() -> None:
    g = guid_parse(b"00112233-4455-6677-8899-aabbccddeeffJUNK")
    assert g.hex() == "33221100554477668899aabbccddeeff"
    assert guid_parse(b"00112233-4455-6677-8899-AABBCCDDEEFF\n") == g


@pytest.mark.parametrize("text", [b"00000000-0000-0000-0000-000000", b"xyz", b"{00112233-4455-6677-8899-aabbccddeeff}"])
def test_guid_rejected(text: bytes) -> None:
    with pytest.raises(OSError) as e:
        guid_parse(text)
    assert e.value.errno == errno.EINVAL


def test_kstrtoll_negates_and_bounds() -> None:
    """The signed parse that --emulate's integer parameters use (module int params: kstrtoint)."""
    from tsm_conformance.emulator.kstrtox import kstrtoll
    assert kstrtoll(b"-5") == -5 and kstrtoll(b"010") == 8 and kstrtoll(b"0x10\n") == 16 and kstrtoll(b"+3") == 3
    for bad in (b"-+1", b"1_0", b" 5", b"0o7", b"", b"-"):
        with pytest.raises(OSError):
            kstrtoll(bad)


def test_long_texts() -> None:
    """A whole page of digits (the text-write-unsplit quirk passes even more): leading zeros do not
    count, and thousands of significant digits are ERANGE (judged before any junk after them),
    also past the 4,300 decimal digits Python's int() refuses to convert."""
    assert kstrtouint(b"0" * 4094 + b"3") == 3
    assert kstrtouint(b"0x" + b"0" * 4000 + b"1f\n") == 31
    for text in (b"9" * 4095, b"1" + b"0" * 4094 + b"x", b"9" * 5000):
        with pytest.raises(OSError) as e:
            kstrtouint(text)
        assert e.value.errno == errno.ERANGE
