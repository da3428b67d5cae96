"""The FUSE kernel protocol (``linux/fuse.h``, version 7.31 as we speak it), sans-IO.

Requests are the bytes one ``read`` of ``/dev/fuse`` returns: a 40-byte ``fuse_in_header`` and an
opcode-specific body.  Replies are one ``write``: a 16-byte ``fuse_out_header`` and a body.  This
module knows the layouts and nothing about files: it turns bytes into fields and fields into
bytes (DESIGN rule 7).  The records that cross the boundary in both directions have a validated,
immutable form with ``parse``/``emit`` (``InHeader``, ``Attr``, ``InitIn``/``InitOut``, ``Dirent``);
the hot paths use the precompiled ``struct`` layouts directly.

Interface:
    Op                          opcodes (``Op.LOOKUP`` ...)
    IN_HEADER / OUT_HEADER      struct layouts; ``reply(unique, body)``, ``error(unique, errno)``
    attr_bytes(st, ...)         a ``fuse_attr`` from kernel stat fields
    entry(nodeid, gen, st, entry_ttl, attr_ttl) / attr_out(st, ttl)
    dirent(ino, off, dtype, name) / direntplus(entry_bytes, ino, off, dtype, name)
    InitIn.parse(body), InitOut(...).emit()        the INIT handshake
    cstring(body) -> (bytes, rest)                 a NUL-terminated name
    ProtocolError               a request too short or malformed for its opcode

Rules: every length is checked before use (``ProtocolError``); names never contain ``/`` or NUL
(the kernel guarantees it; a violation is a ProtocolError, answered EINVAL).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from rumpkernel.kern.abi import major, minor

KERNEL_VERSION = 7
KERNEL_MINOR = 31          # what we implement; the host kernel answers with min(its, ours)
MIN_MINOR = 26             # older kernels lack fields we rely on (rename2, max_pages ...)
ROOT_ID = 1


class ProtocolError(Exception):
    """A request that does not fit its opcode's layout."""


class Op(IntEnum):
    LOOKUP = 1
    FORGET = 2
    GETATTR = 3
    SETATTR = 4
    READLINK = 5
    SYMLINK = 6
    MKNOD = 8
    MKDIR = 9
    UNLINK = 10
    RMDIR = 11
    RENAME = 12
    LINK = 13
    OPEN = 14
    READ = 15
    WRITE = 16
    STATFS = 17
    RELEASE = 18
    FSYNC = 20
    SETXATTR = 21
    GETXATTR = 22
    LISTXATTR = 23
    REMOVEXATTR = 24
    FLUSH = 25
    INIT = 26
    OPENDIR = 27
    READDIR = 28
    RELEASEDIR = 29
    FSYNCDIR = 30
    GETLK = 31
    SETLK = 32
    SETLKW = 33
    ACCESS = 34
    CREATE = 35
    INTERRUPT = 36
    BMAP = 37
    DESTROY = 38
    IOCTL = 39
    POLL = 40
    NOTIFY_REPLY = 41
    BATCH_FORGET = 42
    FALLOCATE = 43
    READDIRPLUS = 44
    RENAME2 = 45
    LSEEK = 46
    COPY_FILE_RANGE = 47
    SETUPMAPPING = 48
    REMOVEMAPPING = 49
    SYNCFS = 50
    TMPFILE = 51


NO_REPLY = frozenset({Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT})

# INIT flags (fuse_init_in/out.flags)
ASYNC_READ = 1 << 0
POSIX_LOCKS = 1 << 1
ATOMIC_O_TRUNC = 1 << 3
EXPORT_SUPPORT = 1 << 4
BIG_WRITES = 1 << 5
DONT_MASK = 1 << 6
FLOCK_LOCKS = 1 << 10
AUTO_INVAL_DATA = 1 << 12
DO_READDIRPLUS = 1 << 13
READDIRPLUS_AUTO = 1 << 14
ASYNC_DIO = 1 << 15
WRITEBACK_CACHE = 1 << 16
PARALLEL_DIROPS = 1 << 18
HANDLE_KILLPRIV = 1 << 19
POSIX_ACL = 1 << 20
ABORT_ERROR = 1 << 21
MAX_PAGES = 1 << 22
CACHE_SYMLINKS = 1 << 23

# setattr valid bits
FATTR_MODE = 1 << 0
FATTR_UID = 1 << 1
FATTR_GID = 1 << 2
FATTR_SIZE = 1 << 3
FATTR_ATIME = 1 << 4
FATTR_MTIME = 1 << 5
FATTR_FH = 1 << 6
FATTR_ATIME_NOW = 1 << 7
FATTR_MTIME_NOW = 1 << 8
FATTR_LOCKOWNER = 1 << 9
FATTR_CTIME = 1 << 10

# open_out flags
FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_CACHE_DIR = 1 << 3

GETATTR_FH = 1 << 0
FSYNC_FDATASYNC = 1 << 0

# ---- layouts ------------------------------------------------------------------------------------
IN_HEADER = struct.Struct("<IIQQIIIHH")      # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")           # len error unique
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")    # fuse_attr, 88 bytes
ENTRY_HEAD = struct.Struct("<QQQQII")        # fuse_entry_out before its attr
ATTR_OUT_HEAD = struct.Struct("<QII")        # fuse_attr_out before its attr
OPEN_OUT = struct.Struct("<QII")
WRITE_OUT = struct.Struct("<II")
XATTR_SIZE_OUT = struct.Struct("<II")
LSEEK_OUT = struct.Struct("<Q")
KSTATFS = struct.Struct("<QQQQQIIII24x")     # fuse_kstatfs, 80 bytes
DIRENT_HEAD = struct.Struct("<QQII")         # ino off namelen type

GETATTR_IN = struct.Struct("<IIQ")
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")
MKNOD_IN = struct.Struct("<IIII")
MKDIR_IN = struct.Struct("<II")
RENAME_IN = struct.Struct("<Q")
RENAME2_IN = struct.Struct("<QII")
LINK_IN = struct.Struct("<Q")
OPEN_IN = struct.Struct("<II")
CREATE_IN = struct.Struct("<IIII")
RELEASE_IN = struct.Struct("<QIIQ")
READ_IN = struct.Struct("<QQII")             # fh offset size flags (the rest unused here)
WRITE_IN = struct.Struct("<QQIIQII")         # 40 bytes, data follows
FSYNC_IN = struct.Struct("<QII")
SETXATTR_IN = struct.Struct("<II")           # size flags (no SETXATTR_EXT: 8 bytes)
GETXATTR_IN = struct.Struct("<II")
ACCESS_IN = struct.Struct("<II")
FORGET_IN = struct.Struct("<Q")
BATCH_FORGET_IN = struct.Struct("<II")
FORGET_ONE = struct.Struct("<QQ")
LSEEK_IN = struct.Struct("<QQII")
FALLOCATE_IN = struct.Struct("<QQQII")
INIT_IN = struct.Struct("<IIII")             # major minor max_readahead flags
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")  # 64 bytes

ATTR_SIZE = ATTR.size
ENTRY_SIZE = ENTRY_HEAD.size + ATTR_SIZE


def reply(unique: int, body: bytes = b"") -> bytes:
    return OUT_HEADER.pack(16 + len(body), 0, unique) + body


def error(unique: int, errno: int) -> bytes:
    return OUT_HEADER.pack(16, -errno, unique)


def cstring(body: memoryview | bytes, start: int = 0) -> tuple[bytes, int]:
    """The NUL-terminated name at ``start`` and the offset after its NUL."""
    raw = bytes(body[start:]) if start else bytes(body)
    nul = raw.find(b"\0")
    if nul <= 0 or b"/" in raw[:nul]:
        raise ProtocolError("bad name in request")
    return raw[:nul], start + nul + 1


def _split(t: int) -> tuple[int, int]:
    sec, nsec = divmod(t, 1_000_000_000)
    return sec & 0xFFFFFFFFFFFFFFFF, nsec


def _dev32(kdev: int) -> int:
    """The kernel's dev_t as Linux's 32-bit new_encode_dev (what fuse_attr.rdev carries)."""
    ma, mi = major(kdev), minor(kdev)
    return ((mi & 0xFF) | ((ma & 0xFFF) << 8) | ((mi & ~0xFF) << 12)) & 0xFFFFFFFF


def host_dev_to_kernel(dev32: int) -> tuple[int, int]:
    """(major, minor) of a 32-bit new_encode_dev value (fuse_mknod_in.rdev)."""
    return (dev32 & 0xFFF00) >> 8, (dev32 & 0xFF) | ((dev32 >> 12) & 0xFFF00)


def attr_bytes(st: tuple[int, ...], uid: int | None = None, gid: int | None = None,
               umask: int = 0) -> bytes:
    """A ``fuse_attr`` from the kernel's stat fields (``structs.STAT`` order: dev ino mode
    nlink uid gid rdev size atime_ns mtime_ns ctime_ns birthtime_ns blksize flags blocks gen).
    ``uid``/``gid``/``umask`` override what is shown (rump_mount -o uid=,gid=,umask=)."""
    _dev, ino, mode, nlink, suid, sgid, rdev, size, at, mt, ct, _bt, blksize, _fl, blocks, _g = st
    asec, ansec = _split(at)
    msec, mnsec = _split(mt)
    csec, cnsec = _split(ct)
    return ATTR.pack(ino, size, blocks, asec, msec, csec, ansec, mnsec, cnsec,
                     mode & ~umask, min(nlink, 0xFFFFFFFF),
                     suid if uid is None else uid, sgid if gid is None else gid,
                     _dev32(rdev), blksize, 0)


def _ttl(seconds: float) -> tuple[int, int]:
    sec = int(seconds)
    return sec, int((seconds - sec) * 1e9)


def entry(nodeid: int, generation: int, attr: bytes, entry_ttl: float, attr_ttl: float) -> bytes:
    es, ens = _ttl(entry_ttl)
    a, ans = _ttl(attr_ttl)
    return ENTRY_HEAD.pack(nodeid, generation, es, a, ens, ans) + attr


def negative_entry(ttl: float) -> bytes:
    """A cacheable "no such name" (nodeid 0)."""
    es, ens = _ttl(ttl)
    return ENTRY_HEAD.pack(0, 0, es, 0, ens, 0) + bytes(ATTR_SIZE)


def attr_out(attr: bytes, ttl: float) -> bytes:
    a, ans = _ttl(ttl)
    return ATTR_OUT_HEAD.pack(a, ans, 0) + attr


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def dirent(ino: int, off: int, dtype: int, name: bytes) -> bytes:
    rec = DIRENT_HEAD.pack(ino, off, len(name), dtype) + name
    return rec + bytes(_pad8(len(rec)) - len(rec))


def dirent_size(namelen: int) -> int:
    return _pad8(DIRENT_HEAD.size + namelen)


def direntplus(entry_out: bytes, ino: int, off: int, dtype: int, name: bytes) -> bytes:
    return entry_out + dirent(ino, off, dtype, name)


def statfs_out(blocks: int, bfree: int, bavail: int, files: int, ffree: int, bsize: int,
               namelen: int, frsize: int) -> bytes:
    return KSTATFS.pack(blocks, bfree, bavail, files, ffree, bsize, namelen, frsize, 0)


# ---- the records with a validated form (tested parse(emit(x)) == x) ----------------------------
@dataclass(frozen=True, slots=True)
class InHeader:
    length: int
    opcode: int
    unique: int
    nodeid: int
    uid: int
    gid: int
    pid: int

    @classmethod
    def parse(cls, data: bytes | memoryview) -> InHeader:
        if len(data) < IN_HEADER.size:
            raise ProtocolError(f"request of {len(data)} bytes is shorter than its header")
        ln, op, unique, nodeid, uid, gid, pid, _ext, _pad = IN_HEADER.unpack_from(data)
        if ln != len(data):
            raise ProtocolError(f"request says {ln} bytes, {len(data)} arrived")
        return cls(ln, op, unique, nodeid, uid, gid, pid)

    def emit(self, body: bytes = b"") -> bytes:
        return IN_HEADER.pack(IN_HEADER.size + len(body), self.opcode, self.unique, self.nodeid,
                              self.uid, self.gid, self.pid, 0, 0) + body


@dataclass(frozen=True, slots=True)
class Attr:
    ino: int
    size: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    blksize: int

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Attr:
        if len(data) < ATTR_SIZE:
            raise ProtocolError("short fuse_attr")
        (ino, size, blocks, asec, msec, csec, ansec, mnsec, cnsec, mode, nlink, uid, gid,
         rdev, blksize, _flags) = ATTR.unpack_from(data)
        if max(ansec, mnsec, cnsec) >= 1_000_000_000:
            raise ProtocolError("nanoseconds out of range")
        return cls(ino, size, blocks, _join(asec, ansec), _join(msec, mnsec), _join(csec, cnsec),
                   mode, nlink, uid, gid, rdev, blksize)

    def emit(self) -> bytes:
        asec, ansec = _split(self.atime_ns)
        msec, mnsec = _split(self.mtime_ns)
        csec, cnsec = _split(self.ctime_ns)
        return ATTR.pack(self.ino, self.size, self.blocks, asec, msec, csec, ansec, mnsec, cnsec,
                         self.mode, self.nlink, self.uid, self.gid, self.rdev, self.blksize, 0)


def _join(sec: int, nsec: int) -> int:
    if sec >= 1 << 63:
        sec -= 1 << 64
    return sec * 1_000_000_000 + nsec


@dataclass(frozen=True, slots=True)
class Dirent:
    ino: int
    off: int
    dtype: int
    name: bytes

    @classmethod
    def parse_all(cls, data: bytes | memoryview) -> list[Dirent]:
        out, pos = [], 0
        while pos < len(data):
            if pos + DIRENT_HEAD.size > len(data):
                raise ProtocolError("truncated dirent")
            ino, off, namelen, dtype = DIRENT_HEAD.unpack_from(data, pos)
            end = pos + DIRENT_HEAD.size + namelen
            if end > len(data) or not namelen:
                raise ProtocolError("dirent name out of range")
            out.append(cls(ino, off, dtype, bytes(data[pos + DIRENT_HEAD.size:end])))
            pos += dirent_size(namelen)
        return out

    def emit(self) -> bytes:
        return dirent(self.ino, self.off, self.dtype, self.name)


@dataclass(frozen=True, slots=True)
class InitIn:
    major: int
    minor: int
    max_readahead: int
    flags: int

    @classmethod
    def parse(cls, body: bytes | memoryview) -> InitIn:
        if len(body) < INIT_IN.size:
            raise ProtocolError("short INIT request")
        return cls(*INIT_IN.unpack_from(body))

    def emit(self) -> bytes:
        return INIT_IN.pack(self.major, self.minor, self.max_readahead, self.flags) + bytes(48)


@dataclass(frozen=True, slots=True)
class InitOut:
    major: int
    minor: int
    max_readahead: int
    flags: int
    max_background: int
    congestion_threshold: int
    max_write: int
    time_gran: int
    max_pages: int

    @classmethod
    def parse(cls, body: bytes | memoryview) -> InitOut:
        if len(body) < INIT_OUT.size:
            raise ProtocolError("short INIT reply")
        f = INIT_OUT.unpack_from(body)
        return cls(*f[:9])

    def emit(self) -> bytes:
        return INIT_OUT.pack(self.major, self.minor, self.max_readahead, self.flags,
                             self.max_background, self.congestion_threshold, self.max_write,
                             self.time_gran, self.max_pages, 0, 0)
