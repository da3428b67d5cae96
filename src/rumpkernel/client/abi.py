"""Translation between the host's ABI and the kernel's: the one place the two numberings meet.

Derived, by name, from the kernel's table (``kern/abi.py``, ``kern/errno.py``) and the host's
values of the same names (``hypercall/hostabi.py``), so declaring a constant in ``kern/abi.py``
is the only edit a new one needs.  Clients (``k.sys``, remote connections, the file API, tools)
take and return host values; the kernel sees only its own.

Interface:
    oserror(kerr, detail=None, filename=None) -> OSError   as the host would raise it (``detail``
                                                           also kept as ``err.detail``)
    host_errno(kerr) -> int / kernel_errno(herr) -> Errno
    open_flags_to_kernel(flags) / open_flags_to_host(kflags)      ValueError on unknown bits
    poll_to_kernel(events) / poll_to_host(kevents)
    fcntl_cmd_to_kernel(cmd) / clock_to_kernel(clk) / seek_to_kernel(whence)   ValueError
    access_to_kernel(mode)
    make_stat_result(fields) / make_statvfs_result(fields)        the host's os records
    fspath / fsencode / fsdecode                                  the host's path helpers
    SEEK_* F_OK R_OK W_OK X_OK POLL* CLOCK_*                      host values, for clients
"""

from __future__ import annotations

from typing import Any

from rumpkernel.hypercall import hostabi as _h
from rumpkernel.kern import abi as _k
from rumpkernel.kern.errno import Errno

fspath = _h.fspath
fsencode = _h.fsencode
fsdecode = _h.fsdecode


# ---- errno --------------------------------------------------------------------------------------
# Kernel errno names the host spells differently (or lacks).
_TO_HOST_NAME = {"EFTYPE": "EINVAL", "EAUTH": "EACCES", "ENEEDAUTH": "EACCES",
                 "ENOATTR": "ENODATA", "EPROCLIM": "EAGAIN"}
_HEIO = _h.errno_value("EIO") or 5
_K2H: dict[int, int] = {}
_H2K: dict[int, Errno] = {}
for _e in Errno:
    _hv = _h.errno_value(_e.name)
    if _hv is None:
        _hv = _h.errno_value(_TO_HOST_NAME.get(_e.name, "EIO"))
    _K2H[int(_e)] = _hv if _hv is not None else _HEIO
    if _h.errno_value(_e.name) is not None:
        _H2K.setdefault(_h.errno_value(_e.name), _e)  # type: ignore[arg-type]
if _h.errno_value("ENODATA") is not None:
    _H2K[_h.errno_value("ENODATA")] = Errno.ENOATTR  # type: ignore[index]  # Linux xattrs


def host_errno(kerr: int) -> int:
    return _K2H.get(int(kerr), _HEIO)


def kernel_errno(herr: int | None) -> Errno:
    return _H2K.get(herr or 0, Errno.EIO)


def oserror(kerr: int, detail: str | None = None, filename: object = None) -> OSError:
    """The OSError (FileNotFoundError, PermissionError, ...) a host call would have raised."""
    h = host_errno(kerr)
    msg = _h.strerror(h)
    if detail:
        msg = f"{msg} ({detail})"
    err = OSError(h, msg) if filename is None else OSError(h, msg, filename)
    err.detail = detail          # the kernel's own words, for tools that print them alone
    return err


# ---- constant groups ---------------------------------------------------------------------------
class Xlate:
    """Host <-> kernel values of one ``kern.abi.Group``."""

    __slots__ = ("_cache", "bits", "group", "to_h", "to_k")

    def __init__(self, group: _k.Group) -> None:
        self.group = group
        self.bits = group.bits
        pairs = [(_h.host_value(group.host, n), kv) for n, kv in group.members.items()]
        known = [(hv, kv) for hv, kv in pairs if hv is not None]
        # Linux's O_SYNC contains O_DSYNC's bit: match the wider host value first.
        known.sort(key=lambda hk: -bin(hk[0]).count("1"))
        self.to_k = known
        self.to_h = sorted(((kv, hv) for hv, kv in known), key=lambda kh: -bin(kh[0]).count("1"))
        self._cache: dict[int, int] = {}

    def to_kernel(self, value: int) -> int:
        got = self._cache.get(value)
        if got is not None:
            return got
        if self.bits:
            rest, out = value, 0
            for hv, kv in self.to_k:
                if hv and rest & hv == hv:
                    out |= kv
                    rest &= ~hv
            if rest:
                raise ValueError(f"{self.group.name} flags 0x{rest:x} not supported by the kernel")
        else:
            for hv, kv in self.to_k:
                if hv == value:
                    out = kv
                    break
            else:
                raise ValueError(f"{self.group.name} value {value} not supported by the kernel")
        if len(self._cache) < 4096:
            self._cache[value] = out
        return out

    def to_host(self, kvalue: int) -> int:
        if self.bits:
            out = 0
            for kv, hv in self.to_h:
                if kv and kvalue & kv == kv:
                    out |= hv
            return out
        for kv, hv in self.to_h:
            if kv == kvalue:
                return hv
        raise ValueError(f"{self.group.name} value {kvalue} has no host equivalent")


_OPEN = Xlate(_k.GROUPS["open"])
_POLL = Xlate(_k.GROUPS["poll"])
_FCNTL = Xlate(_k.GROUPS["fcntl"])
_CLOCK = Xlate(_k.GROUPS["clock"])
_SEEK = Xlate(_k.GROUPS["seek"])
_ACCESS = Xlate(_k.GROUPS["access"])
_IGNORED_OPEN = (_h.host_value("os", "O_LARGEFILE") or 0) | (_h.host_value("os", "O_BINARY") or 0)


def open_flags_to_kernel(flags: int) -> int:
    """Host ``os.O_*`` flags to the kernel's; ValueError for bits the kernel does not know."""
    flags &= ~_IGNORED_OPEN
    return (flags & 3) | _OPEN.to_kernel(flags & ~3)


def open_flags_to_host(kflags: int) -> int:
    return (kflags & _k.O_ACCMODE) | _OPEN.to_host(kflags & ~_k.O_ACCMODE)


def poll_to_kernel(events: int) -> int:
    return _POLL.to_kernel(events)


def poll_to_host(kevents: int) -> int:
    return _POLL.to_host(kevents)


fcntl_cmd_to_kernel = _FCNTL.to_kernel
clock_to_kernel = _CLOCK.to_kernel
seek_to_kernel = _SEEK.to_kernel
access_to_kernel = _ACCESS.to_kernel
rlimit_to_kernel = Xlate(_k.GROUPS["rlimit"]).to_kernel


def _host(module: str, name: str, default: int) -> int:
    v = _h.host_value(module, name)
    return default if v is None else v


# Host values the client APIs accept (they take what the os/select modules take).
SEEK_SET, SEEK_CUR, SEEK_END = (_host("os", n, i) for i, n in
                                enumerate(("SEEK_SET", "SEEK_CUR", "SEEK_END")))
SEEK_DATA = _host("os", "SEEK_DATA", 3)
SEEK_HOLE = _host("os", "SEEK_HOLE", 4)
F_OK, X_OK, W_OK, R_OK = (_host("os", n, v) for n, v in
                          (("F_OK", 0), ("X_OK", 1), ("W_OK", 2), ("R_OK", 4)))
POLLIN, POLLPRI, POLLOUT = (_host("select", n, v) for n, v in
                            (("POLLIN", 1), ("POLLPRI", 2), ("POLLOUT", 4)))
POLLERR, POLLHUP, POLLNVAL = (_host("select", n, v) for n, v in
                              (("POLLERR", 8), ("POLLHUP", 16), ("POLLNVAL", 32)))
CLOCK_REALTIME = _host("time", "CLOCK_REALTIME", 0)
CLOCK_MONOTONIC = _host("time", "CLOCK_MONOTONIC", 1)


# ---- records ---------------------------------------------------------------------------------
def _hostdev(kdev: int) -> int:
    return _h.makedev(_k.major(kdev), _k.minor(kdev))


def make_stat_result(f: dict[str, int]) -> Any:
    """An os.stat_result from the kernel's stat fields (names as in structs.STAT)."""
    at, mt, ct = f["atime_ns"], f["mtime_ns"], f["ctime_ns"]
    seq = [f["mode"], f["ino"], _hostdev(f["dev"]), f["nlink"], f["uid"], f["gid"], f["size"],
           at // 10**9, mt // 10**9, ct // 10**9]
    extra = {"st_atime": at / 1e9, "st_mtime": mt / 1e9, "st_ctime": ct / 1e9,
             "st_atime_ns": at, "st_mtime_ns": mt, "st_ctime_ns": ct,
             "st_blksize": f["blksize"], "st_blocks": f["blocks"],
             "st_rdev": _hostdev(f["rdev"]), "st_flags": f["flags"], "st_gen": f["gen"],
             "st_birthtime": f["birthtime_ns"] / 1e9}
    return _h.stat_result(seq, extra)


def make_statvfs_result(f: dict[str, int]) -> Any:
    seq = [f["bsize"], f["frsize"], f["blocks"], f["bfree"], f["bavail"], f["files"],
           f["ffree"], f["favail"], f["flag"], f["namemax"]]
    return _h.statvfs_result(seq, {"f_fsid": f["fsid"]})


# ---- sockets (the net faction) -----------------------------------------------------------------
_AF = Xlate(_k.GROUPS["af"])
_SOCKTYPE = Xlate(_k.GROUPS["socktype"])
_SOCKFLAGS = Xlate(_k.GROUPS["sockflags"])
_LEVEL = Xlate(_k.GROUPS["level"])
_SO = Xlate(_k.GROUPS["so"])
_IP = Xlate(_k.GROUPS["ip"])
_IPV6 = Xlate(_k.GROUPS["ipv6"])
_TCP = Xlate(_k.GROUPS["tcp"])
_MSG = Xlate(_k.GROUPS["msg"])
_SHUT = Xlate(_k.GROUPS["shut"])
_SCM = Xlate(_k.GROUPS["scm"])
_IPPROTO = Xlate(_k.GROUPS["ipproto"])
_HOST_SOCKFLAGS = sum(hv for hv, _kv in _SOCKFLAGS.to_k)

af_to_kernel = _AF.to_kernel
af_to_host = _AF.to_host
level_to_kernel = _LEVEL.to_kernel
level_to_host = _LEVEL.to_host
msg_to_kernel = _MSG.to_kernel
msg_to_host = _MSG.to_host
shut_to_kernel = _SHUT.to_kernel
scm_to_kernel = _SCM.to_kernel
scm_to_host = _SCM.to_host
ipproto_to_kernel = _IPPROTO.to_kernel


def socktype_to_kernel(t: int) -> int:
    """A host socket type, with SOCK_NONBLOCK/SOCK_CLOEXEC bits, as the kernel's."""
    return _SOCKTYPE.to_kernel(t & ~_HOST_SOCKFLAGS) | _SOCKFLAGS.to_kernel(t & _HOST_SOCKFLAGS)


def socktype_to_host(kt: int) -> int:
    return _SOCKTYPE.to_host(kt)


_OPTS_BY_LEVEL = {_k.SOL_SOCKET: _SO, _k.IPPROTO_IP: _IP, _k.IPPROTO_TCP: _TCP,
                  _k.IPPROTO_IPV6: _IPV6}


def sockopt_to_kernel(klevel: int, name: int) -> int:
    """An option name at kernel level ``klevel``, from the host's number (names of levels the
    kernel does not know by name pass unchanged)."""
    x = _OPTS_BY_LEVEL.get(klevel)
    return name if x is None else x.to_kernel(name)


def socket_constants() -> dict[str, int]:
    """The host's values of every socket constant the kernel knows (what a client module
    exposes as AF_INET, SO_REUSEADDR, MSG_PEEK ...)."""
    out: dict[str, int] = {}
    for g in ("af", "socktype", "sockflags", "level", "so", "ip", "ipv6", "tcp", "msg", "shut",
              "scm", "ipproto"):
        for name in _k.GROUPS[g].members:
            hv = _h.host_value("socket", name)
            if hv is not None:
                out[name] = hv
    return out
