"""Translation between the kernel's ABI and the host's (the rumpdefs / compat layer).

The kernel numbers errno values and open flags its own way (NetBSD's numbers); the host (Linux)
uses others.  The tables here are derived once, by name, from the host's ``errno`` and ``os``
modules, so adding a name to the kernel's table is the only edit ever needed.

Interface:
    host_errno(kerr) -> int           kernel Errno -> host errno
    kernel_errno(herr) -> Errno       host errno -> kernel Errno (EIO when unknown)
    oserror(kerr, detail, filename)   an OSError subclass as the host would raise it
    open_flags_to_kernel(flags)       host os.O_* bits -> kernel O_* bits (EINVAL on unknown bits)
    KO_*                              the kernel's open-flag values
    stat_result(tuple)                os.stat_result
    fsencode(path) / fsdecode(b)      os.fsencode / os.fsdecode
    HOST_* constants                  what clients need from the host (SEEK_*, F_*, POLL*, ...)
"""

from __future__ import annotations

import errno as _herrno
import os
import select

from rumpkernel.kern.errno import Errno

# ---- errno ---------------------------------------------------------------------------------
_FALLBACK = {"EFTYPE": "EINVAL", "EAUTH": "EACCES", "ENEEDAUTH": "EACCES", "ENOATTR": "ENODATA",
             "EPROCLIM": "EAGAIN", "EUSERS": "EUSERS", "EREMOTE": "EREMOTE"}

_K2H: dict[int, int] = {}
for _e in Errno:
    _hname = _e.name if hasattr(_herrno, _e.name) else _FALLBACK.get(_e.name, "EIO")
    _K2H[int(_e)] = getattr(_herrno, _hname, _herrno.EIO)
_H2K: dict[int, Errno] = {}
for _e in Errno:
    if hasattr(_herrno, _e.name):
        _H2K.setdefault(getattr(_herrno, _e.name), _e)
_H2K[_herrno.ENODATA] = Errno.ENOATTR  # Linux xattr "no such attribute"


def host_errno(kerr: int) -> int:
    return _K2H.get(int(kerr), _herrno.EIO)


def kernel_errno(herr: int | None) -> Errno:
    return _H2K.get(herr or 0, Errno.EIO)


def oserror(kerr: int, detail: str | None = None, filename: object = None) -> OSError:
    """The OSError (FileNotFoundError, PermissionError, ...) a host call would have raised."""
    h = host_errno(kerr)
    msg = os.strerror(h)
    if detail:
        msg = f"{msg} ({detail})"
    if filename is None:
        return OSError(h, msg)
    return OSError(h, msg, filename)


# ---- open flags ----------------------------------------------------------------------------
KO_RDONLY, KO_WRONLY, KO_RDWR, KO_ACCMODE = 0, 1, 2, 3
KO_NONBLOCK = 0x4
KO_APPEND = 0x8
KO_SYNC = 0x80
KO_NOFOLLOW = 0x100
KO_CREAT = 0x200
KO_TRUNC = 0x400
KO_EXCL = 0x800
KO_NOCTTY = 0x8000
KO_DSYNC = 0x10000
KO_DIRECTORY = 0x200000
KO_CLOEXEC = 0x400000
KO_NOATIME = 0x2000000  # private to this kernel

_OPEN_BITS = [
    ("O_NONBLOCK", KO_NONBLOCK), ("O_APPEND", KO_APPEND), ("O_SYNC", KO_SYNC),
    ("O_NOFOLLOW", KO_NOFOLLOW), ("O_CREAT", KO_CREAT), ("O_TRUNC", KO_TRUNC),
    ("O_EXCL", KO_EXCL), ("O_NOCTTY", KO_NOCTTY), ("O_DSYNC", KO_DSYNC),
    ("O_DIRECTORY", KO_DIRECTORY), ("O_CLOEXEC", KO_CLOEXEC), ("O_NOATIME", KO_NOATIME),
]
_HOST_OPEN = [(getattr(os, n), k) for n, k in _OPEN_BITS if hasattr(os, n)]
# O_SYNC on Linux includes O_DSYNC's bit: test the wider one first
_HOST_OPEN.sort(key=lambda hk: -bin(hk[0]).count("1"))
_IGNORED = getattr(os, "O_LARGEFILE", 0) | getattr(os, "O_BINARY", 0)
_open_cache: dict[int, int] = {}


def open_flags_to_kernel(flags: int) -> int:
    """Host ``os.O_*`` flags to the kernel's; ValueError for bits the kernel does not know."""
    k = _open_cache.get(flags)
    if k is not None:
        return k
    rest = flags & ~_IGNORED
    k = rest & 3
    rest &= ~3
    for hbit, kbit in _HOST_OPEN:
        if rest & hbit == hbit:
            k |= kbit
            rest &= ~hbit
    if rest:
        raise ValueError(f"open flags 0x{rest:x} not supported by the kernel")
    if len(_open_cache) < 4096:
        _open_cache[flags] = k
    return k


def open_flags_to_host(k: int) -> int:
    h = k & 3
    for hbit, kbit in _HOST_OPEN:
        if k & kbit == kbit:
            h |= hbit
    return h


# ---- misc host constants the clients need ---------------------------------------------------
stat_result = os.stat_result
statvfs_result = os.statvfs_result
fsencode = os.fsencode
fsdecode = os.fsdecode
fspath = os.fspath
terminal_size = os.get_terminal_size
SEEK_SET, SEEK_CUR, SEEK_END = os.SEEK_SET, os.SEEK_CUR, os.SEEK_END
SEEK_DATA = getattr(os, "SEEK_DATA", 3)
SEEK_HOLE = getattr(os, "SEEK_HOLE", 4)
F_OK, R_OK, W_OK, X_OK = os.F_OK, os.R_OK, os.W_OK, os.X_OK
POLLIN, POLLPRI, POLLOUT = select.POLLIN, select.POLLPRI, select.POLLOUT
POLLERR, POLLHUP, POLLNVAL = select.POLLERR, select.POLLHUP, select.POLLNVAL
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
XATTR_CREATE, XATTR_REPLACE = 1, 2


# ---- records the host's programs expect ---------------------------------------------------------
def make_stat_result(f: dict[str, int]) -> os.stat_result:
    """An os.stat_result from the kernel's stat fields (names as in structs.STAT)."""
    at, mt, ct = f["atime_ns"], f["mtime_ns"], f["ctime_ns"]
    seq = [f["mode"], f["ino"], f["dev"], f["nlink"], f["uid"], f["gid"], f["size"],
           at // 10**9, mt // 10**9, ct // 10**9]
    extra = {"st_atime": at / 1e9, "st_mtime": mt / 1e9, "st_ctime": ct / 1e9,
             "st_atime_ns": at, "st_mtime_ns": mt, "st_ctime_ns": ct,
             "st_blksize": f["blksize"], "st_blocks": f["blocks"], "st_rdev": f["rdev"],
             "st_flags": f["flags"], "st_gen": f["gen"], "st_birthtime": f["birthtime_ns"] / 1e9}
    return os.stat_result(seq, extra)


def make_statvfs_result(f: dict[str, int]) -> os.statvfs_result:
    seq = [f["bsize"], f["frsize"], f["blocks"], f["bfree"], f["bavail"], f["files"],
           f["ffree"], f["favail"], f["flag"], f["namemax"]]
    return os.statvfs_result(seq, {"f_fsid": f["fsid"]})


# ---- fcntl, clocks ----------------------------------------------------------------------------
try:
    import fcntl as _fcntl

    _FCNTL = {_fcntl.F_DUPFD: 0, _fcntl.F_GETFD: 1, _fcntl.F_SETFD: 2, _fcntl.F_GETFL: 3,
              _fcntl.F_SETFL: 4, getattr(_fcntl, "F_DUPFD_CLOEXEC", 1030): 12}
except ImportError:  # pragma: no cover - non-POSIX host
    _FCNTL = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4}


def fcntl_cmd_to_kernel(cmd: int) -> int:
    try:
        return _FCNTL[cmd]
    except KeyError:
        raise ValueError(f"fcntl command {cmd} not supported by the kernel") from None


import time as _time  # noqa: E402

_CLOCKS = {_time.CLOCK_REALTIME: 0, _time.CLOCK_MONOTONIC: 3}
CLOCK_REALTIME = _time.CLOCK_REALTIME
CLOCK_MONOTONIC = _time.CLOCK_MONOTONIC


def clock_to_kernel(clk: int) -> int:
    try:
        return _CLOCKS[clk]
    except KeyError:
        raise ValueError(f"clock {clk} not supported by the kernel") from None
