"""Structures that cross the system-call boundary, declared once (DESIGN rule 6).

The kernel packs them with ``pack`` before ``copyout``; clients (local and remote) unpack them.
Little-endian, fixed size, no host types.

Interface:  STAT, STATVFS, TIMESPEC, POLLFD, RLIMIT — ``Struct`` objects with ``size``,
            ``pack(*fields)``, ``unpack(buf) -> tuple`` and ``names``; ``pack_dirent`` /
            ``iter_dirents`` for the variable-length records of ``getdents``.
            Net faction: socket addresses (``pack_sockaddr_in/in6/un``, ``unpack_sockaddr``),
            the ioctl records IFREQ, IFALIASREQ, RTREQ, ARPREQ (+ ``ifname_bytes``/``ifname_of``),
            MSGINFO (recvmsg), LINGER, TIMEVAL, and control messages (``pack_cmsgs``,
            ``iter_cmsgs``, ``cmsg_space``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from rumpkernel.kern.abi import AF_INET, AF_INET6, AF_LOCAL, AF_UNSPEC
from rumpkernel.kern.errno import Errno, KernelError


class Struct:
    __slots__ = ("_s", "name", "names", "size")

    def __init__(self, name: str, fields: tuple[tuple[str, str], ...]) -> None:
        self.name = name
        self.names = tuple(n for n, _ in fields)
        self._s = struct.Struct("<" + "".join(f for _, f in fields))
        self.size = self._s.size

    def pack(self, *values: int) -> bytes:
        return self._s.pack(*values)

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


STAT = Struct("stat", (
    ("dev", "Q"), ("ino", "Q"), ("mode", "I"), ("nlink", "I"), ("uid", "I"), ("gid", "I"),
    ("rdev", "Q"), ("size", "q"), ("atime_ns", "q"), ("mtime_ns", "q"), ("ctime_ns", "q"),
    ("birthtime_ns", "q"), ("blksize", "I"), ("flags", "I"), ("blocks", "q"), ("gen", "Q"),
))

STATVFS = Struct("statvfs", (
    ("bsize", "Q"), ("frsize", "Q"), ("blocks", "Q"), ("bfree", "Q"), ("bavail", "Q"),
    ("files", "Q"), ("ffree", "Q"), ("favail", "Q"), ("fsid", "Q"), ("flag", "Q"),
    ("namemax", "Q"),
))

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



# ---- the net faction ------------------------------------------------------------------------
# Socket addresses (NetBSD's layouts: a length byte, a family byte, then the address; ports and
# IPv4/IPv6 addresses in network byte order).  The kernel takes the length from the system
# call's length argument, not from the first byte.
SOCKADDR_IN_LEN = 16
SOCKADDR_IN6_LEN = 28
SOCKADDR_UN_PATH_MAX = 253      # SOCK_MAXADDRLEN 255 minus the two header bytes
SOCKADDR_MAX = 255
_SIN = struct.Struct("!BBH4s8x")
_SIN6 = struct.Struct("!BBHI16sI")


def pack_sockaddr_in(addr: bytes, port: int) -> bytes:
    return _SIN.pack(SOCKADDR_IN_LEN, AF_INET, port, addr)


def pack_sockaddr_in6(addr: bytes, port: int, flowinfo: int = 0, scope_id: int = 0) -> bytes:
    return _SIN6.pack(SOCKADDR_IN6_LEN, AF_INET6, port, flowinfo, addr, scope_id)


def pack_sockaddr_un(path: bytes) -> bytes:
    if len(path) > SOCKADDR_UN_PATH_MAX:
        raise KernelError(Errno.EINVAL, f"local socket name of {len(path)} bytes")
    if not path:                         # unnamed
        return bytes((2, AF_LOCAL))
    if path.startswith(b"\0"):          # Linux's abstract names: exactly these bytes
        return bytes((2 + len(path), AF_LOCAL)) + path
    return bytes((min(2 + len(path) + 1, SOCKADDR_MAX), AF_LOCAL)) + path + b"\0"


def sockaddr_family(buf: bytes) -> int:
    if len(buf) < 2:
        raise KernelError(Errno.EINVAL, f"socket address of {len(buf)} bytes")
    return buf[1]


def unpack_sockaddr(buf: bytes) -> tuple:
    """(family, ...) from an encoded address: (AF_INET, addr4, port), (AF_INET6, addr16, port,
    flowinfo, scope_id), (AF_LOCAL, path bytes without the NUL -- or, for an abstract name
    starting with a NUL byte, every byte of it), (AF_UNSPEC,) or
    (family, raw bytes) for others.  EINVAL for a length that does not fit the family."""
    fam = sockaddr_family(buf)
    if fam == AF_INET:
        if len(buf) < SOCKADDR_IN_LEN:
            raise KernelError(Errno.EINVAL, f"sockaddr_in of {len(buf)} bytes")
        _, _, port, addr = _SIN.unpack_from(buf)
        return (AF_INET, addr, port)
    if fam == AF_INET6:
        if len(buf) < SOCKADDR_IN6_LEN:
            raise KernelError(Errno.EINVAL, f"sockaddr_in6 of {len(buf)} bytes")
        _, _, port, flow, addr, scope = _SIN6.unpack_from(buf)
        return (AF_INET6, addr, port, flow, scope)
    if fam == AF_LOCAL:
        path = bytes(buf[2:])
        if path.startswith(b"\0"):
            return (AF_LOCAL, path)         # abstract: every byte counts
        nul = path.find(b"\0")
        return (AF_LOCAL, path if nul < 0 else path[:nul])
    if fam == AF_UNSPEC:
        return (AF_UNSPEC,)
    return (fam, bytes(buf[2:]))


# ioctl records (sizes are part of the SIOC* numbers in kern/abi.py)
IFREQ = Struct("ifreq", (("name", "16s"), ("data", "16s")))
IFALIASREQ = Struct("ifaliasreq", (("name", "16s"), ("addr", "16s"), ("broadaddr", "16s"),
                                   ("mask", "16s")))
RTREQ = Struct("rtreq", (("dst", "16s"), ("gateway", "16s"), ("mask", "16s"),
                         ("ifname", "16s"), ("flags", "I"), ("metric", "I")))
ARPREQ = Struct("arpreq", (("addr", "16s"), ("lladdr", "6s2x"), ("ifname", "16s"),
                           ("flags", "I4x")))
IFINT = struct.Struct("<i12x")          # the int member of ifreq's union (flags, MTU, index)
# IPv6 configuration (sockaddr_in6 fields are SOCKADDR_IN6_LEN = 28 bytes; lifetimes in seconds,
# 0xffffffff infinite; RTREQ6 names the prefix length instead of a mask)
IN6_ALIASREQ = Struct("in6_aliasreq", (("name", "16s"), ("addr", "28s"), ("dstaddr", "28s"),
                                       ("prefixmask", "28s"), ("flags", "I"), ("vltime", "I"),
                                       ("pltime", "I")))
IN6_IFREQ = Struct("in6_ifreq", (("name", "16s"), ("addr", "28s")))
RTREQ6 = Struct("rtreq6", (("dst", "28s"), ("gateway", "28s"), ("plen", "I"),
                           ("ifname", "16s"), ("flags", "I"), ("metric", "I")))


def ifname_bytes(name: bytes | str) -> bytes:
    """An interface name for the 16-byte name field (EINVAL if empty or too long)."""
    raw = name.encode() if isinstance(name, str) else name
    if not raw or len(raw) >= 16 or b"\0" in raw:
        raise KernelError(Errno.EINVAL, f"interface name {raw!r}")
    return raw


def ifname_of(field: bytes) -> bytes:
    nul = field.find(b"\0")
    return field if nul < 0 else field[:nul]


# recvmsg's results besides the byte count: address length, control length, msg flags
MSGINFO = Struct("msginfo", (("namelen", "I"), ("controllen", "I"), ("flags", "i4x")))
LINGER = Struct("linger", (("onoff", "i"), ("linger", "i")))
TIMEVAL = Struct("timeval", (("sec", "q"), ("usec", "q")))
# control messages: a 16-byte header (length including the header, level, type), data padded
# to 8 bytes
CMSGHDR = Struct("cmsghdr", (("len", "I"), ("level", "i"), ("type", "i4x")))
CMSG_ALIGN = 8


def cmsg_space(n: int) -> int:
    return CMSGHDR.size + ((n + CMSG_ALIGN - 1) & ~(CMSG_ALIGN - 1))


def pack_cmsgs(msgs: list[tuple[int, int, bytes]]) -> bytes:
    out = []
    for level, ctype, data in msgs:
        out.append(CMSGHDR.pack(CMSGHDR.size + len(data), level, ctype))
        out.append(data + bytes(cmsg_space(len(data)) - CMSGHDR.size - len(data)))
    return b"".join(out)


def iter_cmsgs(buf: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(level, type, data) of each control message; EINVAL for a malformed buffer."""
    pos, n = 0, len(buf)
    while pos + CMSGHDR.size <= n:
        length, level, ctype = CMSGHDR.unpack_from(buf, pos)
        if length < CMSGHDR.size or pos + length > n:
            raise KernelError(Errno.EINVAL, "malformed control message")
        yield level, ctype, bytes(buf[pos + CMSGHDR.size : pos + length])
        pos += cmsg_space(length - CMSGHDR.size)
