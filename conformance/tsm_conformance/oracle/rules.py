"""The write rules of the report attributes, encoded once on the checking side: what one write()
must return and what it changes (docs/abi.md §1a, §1c, §2, §3; docs/real-kernels.md).
``SpecModel`` (predictions and state), ``check_trace``'s invariants and the fuzz targets all ask
these; the emulator has its own encoding (N-version) and never imports this.

Results are the count stored, or the name of the profile's error condition (``errors.<name>``),
which the caller turns into errno names with ``Profile.errno``.
"""

from __future__ import annotations

from ..profile.model import Profile
from .parse import guid_ok, kstrtouint

#: the writable text attributes; an accepted store to any of them advances the generation
TEXT_STORES = frozenset(("privlevel", "service_provider", "service_guid", "service_manifest_version"))


def text_store(profile: Profile, floor: int, attr: str, data: bytes) -> int | str:
    """One write() of ``data`` to text attribute ``attr`` of a live item.

    configfs copies at most ``text_store_max`` bytes into a zeroed page and calls the store once,
    which sees a C string (bytes after a NUL are invisible); write() returns the count stored; a
    zero-length write stores nothing (EFAULT).  privlevel and service_manifest_version parse with
    ``kstrtouint(buf, 0)``: no number is EINVAL, past U32_MAX is kstrtouint's ERANGE for both
    (the profile's ``privlevel_overflow``: docs/real-kernels.md, text attributes, has
    ``4294967296`` give ERANGE for both); privlevel must lie in floor..``privlevel_max``.
    service_guid must parse as a GUID; service_provider takes any text."""
    if not data:
        return "write_zero_length"
    chunk = data[: profile.limits_text_store_max]
    if attr == "privlevel" or attr == "service_manifest_version":
        v = kstrtouint(chunk)
        if v == "ERANGE":
            return "privlevel_overflow"
        if v == "EINVAL":
            return "privlevel_invalid" if attr == "privlevel" else "service_manifest_version_invalid"
        if attr == "privlevel" and not floor <= v <= profile.limits_privlevel_max:
            return "privlevel_out_of_range"
    elif attr == "service_guid" and not guid_ok(chunk):
        return "service_guid_invalid"
    return len(chunk)


def text_store_bumps(profile: Profile, attr: str, data: bytes, result: object) -> bool:
    """Whether a write() of ``data`` to ``attr`` that returned ``result`` (a count or an errno
    name) advanced the item's generation: every accepted store, and a service_guid store that
    failed to parse (bumped and reset before parsing, docs/abi.md §8.5).  A zero-length write never
    reaches the store; a rejected privlevel or service_manifest_version leaves it unchanged."""
    if not data or attr not in TEXT_STORES:
        return False
    if type(result) is int:
        return True
    return attr == "service_guid" and result in profile.errno("service_guid_invalid")


def inblob_write(profile: Profile, pos: int, data: bytes) -> int | str:
    """One write()/pwrite() of ``data`` at ``pos`` on an inblob fd (configfs_bin_write_iter): an
    end offset past ``inblob_max`` fails EFBIG, zero bytes EFAULT, anything else is buffered whole.
    Nothing reaches the item before close (docs/abi.md §3)."""
    if pos + len(data) > profile.limits_inblob_max:
        return "inblob_oversize"
    if not data:
        return "write_zero_length"
    return len(data)


def inblob_marks(profile: Profile, result: object) -> bool:
    """Whether an inblob write() that returned ``result`` set the fd's write_in_progress, so that
    close commits its buffer (one generation bump): accepted writes, and the EFBIG and EFAULT ones
    too (docs/abi.md §3); EBADF, ENOENT and the like buffer nothing."""
    if type(result) is int:
        return True
    return result in profile.errno("inblob_oversize") or result in profile.errno("write_zero_length")


def inblob_put(buf: bytearray, pos: int, data: bytes, limit: int) -> None:
    """The fd's buffer after a write of ``data`` at ``pos``: grown to the end offset with zeros (a
    pwrite gap reads as zeros) and the bytes stored; an end past ``limit`` stores nothing."""
    end = pos + len(data)
    if end > limit:
        return
    if end > len(buf):
        buf.extend(bytes(end - len(buf)))
    buf[pos:end] = data
