"""Layouts that cross the system-call boundary: parse(emit(x)) == x on hand-checked vectors and
with hypothesis; malformed input gives KernelError, never struct.error."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rumpkernel.kern.errno import KernelError
from rumpkernel.kern.syscall.structs import (
    DIRENT_HEAD_SIZE,
    POLLFD,
    STAT,
    STATVFS,
    TIMESPEC,
    dirent_reclen,
    iter_dirents,
    pack_dirent,
)

U64 = st.integers(0, 2**64 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)


def test_hand_checked_vectors() -> None:
    assert TIMESPEC.pack(1, 2) == b"\x01" + bytes(7) + b"\x02" + bytes(7)
    assert POLLFD.pack(3, 1, 0) == b"\x03\x00\x00\x00\x01\x00\x00\x00"
    assert STAT.size == 104 and STATVFS.size == 88   # 16 fields: 8+8+4*4+8+8*5+4+4+8+8
    rec = pack_dirent(5, 7, 8, b"abc")
    assert len(rec) == dirent_reclen(3) == 32 and rec[DIRENT_HEAD_SIZE:][:4] == b"abc\0"
    assert list(iter_dirents(rec)) == [(5, 7, 8, b"abc")]


@given(st.tuples(*(I64 if f in "qh" else U64 for f in STAT._s.format[1:])))
def test_stat_roundtrip(values: tuple[int, ...]) -> None:
    fmt = STAT._s.format[1:]
    fitted = tuple(v % (1 << (8 * struct.calcsize(f))) if f.isupper() else
                   max(min(v, 2 ** (8 * struct.calcsize(f) - 1) - 1),
                       -(2 ** (8 * struct.calcsize(f) - 1)))
                   for v, f in zip(values, fmt))
    assert STAT.unpack(STAT.pack(*fitted)) == fitted


@given(st.lists(st.tuples(U64, I64, st.integers(0, 255),
                          st.binary(min_size=1, max_size=255)), max_size=20))
def test_dirent_stream_roundtrip(ents: list[tuple[int, int, int, bytes]]) -> None:
    buf = b"".join(pack_dirent(*e) for e in ents)
    assert list(iter_dirents(buf)) == ents


@given(st.binary(max_size=300))
def test_garbage_dirents_never_crash(raw: bytes) -> None:
    try:
        for _ino, _off, _t, name in iter_dirents(raw):
            assert isinstance(name, bytes)
    except KernelError:
        pass


def test_short_struct_is_einval() -> None:
    with pytest.raises(KernelError):
        STAT.unpack(b"short")
    with pytest.raises(KernelError):
        TIMESPEC.unpack_from(bytes(16), 8)
