"""Structures that cross the system-call boundary, declared once (DESIGN rule 6).

The kernel packs them with ``pack`` before ``copyout``; clients (local and remote) unpack them.
Little-endian, fixed size, no host types.

Interface:  STAT, STATVFS, TIMESPEC, POLLFD, RLIMIT — ``Struct`` objects with ``size``,
            ``pack(*fields)``, ``unpack(buf) -> tuple`` and ``names``; ``pack_dirent`` /
            ``iter_dirents`` for the variable-length records of ``getdents``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from rumpkernel.kern.errno import Errno, KernelError


class Struct:
    __slots__ = ("_limits", "_s", "name", "names", "saturate", "size")

    def __init__(self, name: str, fields: tuple[tuple[str, str], ...], *,
                 saturate: bool = False) -> None:
        self.name = name
        self.names = tuple(n for n, _ in fields)
        self._s = struct.Struct("<" + "".join(f for _, f in fields))
        self.size = self._s.size
        self.saturate = saturate
        self._limits = tuple(_limits(f) for _, f in fields)

    def pack(self, *values: int) -> bytes:
        """The packed record.  A ``saturate`` struct clamps each value to its field's range
        (a file time past 2262 in int64 ns, a size past 2**63), so no value a driver or an
        image supplies can make the kernel fail while building it."""
        try:
            return self._s.pack(*values)
        except struct.error:
            if not self.saturate:
                raise
        return self._s.pack(*(min(max(v, lo), hi) for v, (lo, hi) in zip(values, self._limits)))

    def unpack(self, buf: bytes | bytearray | memoryview) -> tuple[int, ...]:
        if len(buf) < self.size:
            raise KernelError(Errno.EINVAL, f"short {self.name} ({len(buf)} < {self.size})")
        return self._s.unpack_from(buf)

    def pack_into(self, buf: bytearray, offset: int, *values: int) -> None:
        self._s.pack_into(buf, offset, *values)

    def unpack_from(self, buf: bytes | bytearray | memoryview, offset: int) -> tuple[int, ...]:
        if offset < 0 or len(buf) < offset + self.size:
            raise KernelError(Errno.EINVAL, f"short {self.name}")
        return self._s.unpack_from(buf, offset)


def _limits(fmt: str) -> tuple[int, int]:
    bits = 8 * struct.calcsize(fmt)
    return (0, (1 << bits) - 1) if fmt.isupper() else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


# Times are int64 ns (1677..2262); ext4 stores dates to 2446: they saturate (see Struct.pack).
STAT = Struct("stat", (
    ("dev", "Q"), ("ino", "Q"), ("mode", "I"), ("nlink", "I"), ("uid", "I"), ("gid", "I"),
    ("rdev", "Q"), ("size", "q"), ("atime_ns", "q"), ("mtime_ns", "q"), ("ctime_ns", "q"),
    ("birthtime_ns", "q"), ("blksize", "I"), ("flags", "I"), ("blocks", "q"), ("gen", "Q"),
), saturate=True)

STATVFS = Struct("statvfs", (
    ("bsize", "Q"), ("frsize", "Q"), ("blocks", "Q"), ("bfree", "Q"), ("bavail", "Q"),
    ("files", "Q"), ("ffree", "Q"), ("favail", "Q"), ("fsid", "Q"), ("flag", "Q"),
    ("namemax", "Q"),
), saturate=True)

RLIMIT = Struct("rlimit", (("cur", "q"), ("max", "q")))

TIMESPEC = Struct("timespec", (("sec", "q"), ("nsec", "q")))

POLLFD = Struct("pollfd", (("fd", "i"), ("events", "h"), ("revents", "h")))

# getdents record: ino u64, next-offset u64, reclen u16, namlen u16, type u8, name, pad to 8
_DIRENT_HEAD = struct.Struct("<QqHHB")
DIRENT_HEAD_SIZE = _DIRENT_HEAD.size


def dirent_reclen(namelen: int) -> int:
    return (DIRENT_HEAD_SIZE + namelen + 1 + 7) & ~7


def pack_dirent(ino: int, next_off: int, dtype: int, name: bytes) -> bytes:
    reclen = dirent_reclen(len(name))
    head = _DIRENT_HEAD.pack(ino, next_off, reclen, len(name), dtype)
    return head + name + bytes(reclen - DIRENT_HEAD_SIZE - len(name))


def iter_dirents(buf: bytes | bytearray | memoryview) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield (ino, next_offset, dtype, name) from a getdents buffer."""
    pos = 0
    n = len(buf)
    while pos + DIRENT_HEAD_SIZE <= n:
        ino, off, reclen, namlen, dtype = _DIRENT_HEAD.unpack_from(buf, pos)
        if reclen < DIRENT_HEAD_SIZE + namlen or pos + reclen > n:
            raise KernelError(Errno.EINVAL, "malformed dirent record")
        start = pos + DIRENT_HEAD_SIZE
        yield ino, off, dtype, bytes(buf[start : start + namlen])
        pos += reclen

