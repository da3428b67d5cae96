"""Socket options at the SOL_SOCKET level (NetBSD's sosetopt/sogetopt); other levels go to the
protocol.

Interface (stack lock held):
    sosetopt(so, level, name, value: bytes)      EINVAL (bad length/value), ENOPROTOOPT
                                                 (unknown or read-only option), EDOM (a
                                                 timeout's microseconds out of range)
    sogetopt(so, level, name) -> bytes
Integers are 4-byte little-endian; SO_LINGER is structs.LINGER, the timeouts structs.TIMEVAL.
SO_BINDTODEVICE (Linux's): an interface name (NUL-terminated or not; empty unbinds), root only
(EPERM), ENXIO for an unknown interface; the socket then sends through that interface only
and receives only what arrived on it (``so.bound_if``: its index) -- how a DHCP client sends
its broadcasts from an interface that has no address yet.
"""

from __future__ import annotations

from rumpkernel.kern.abi import (
    SO_ACCEPTCONN,
    SO_BINDTODEVICE,
    SO_DOMAIN,
    SO_ERROR,
    SO_LINGER,
    SO_PROTOCOL,
    SO_RCVBUF,
    SO_RCVLOWAT,
    SO_RCVTIMEO,
    SO_SNDBUF,
    SO_SNDLOWAT,
    SO_SNDTIMEO,
    SO_TYPE,
    SOL_SOCKET,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.syscall.structs import LINGER, TIMEVAL
from rumpkernel.net.socket import BOOL_OPTIONS, SB_MAX, Socket, int_opt, opt_int

MAX_TIMEOUT_S = 100 * 365 * 86400


def sosetopt(so: Socket, level: int, name: int, value: bytes) -> None:
    if level != SOL_SOCKET:
        so.proto.setopt(so, level, name, value)
        return
    if name in BOOL_OPTIONS:
        if opt_int(value):
            so.options |= name
        else:
            so.options &= ~name
        _tell_protocol(so, name, value)
    elif name == SO_LINGER:
        onoff, secs = LINGER.unpack(value)
        if onoff and secs < 0:
            raise KernelError(Errno.EINVAL, "negative linger time")
        so.linger = min(secs, 32767) if onoff else None
    elif name in (SO_SNDBUF, SO_RCVBUF):
        n = opt_int(value)
        if n <= 0:
            raise KernelError(Errno.EINVAL, f"buffer size {n}")
        if n > SB_MAX:
            raise KernelError(Errno.ENOBUFS, f"buffer size {n} (limit {SB_MAX})")
        (so.snd if name == SO_SNDBUF else so.rcv).hiwat = n
        _tell_protocol(so, name, value)
        so.rwakeup()
    elif name in (SO_SNDLOWAT, SO_RCVLOWAT):
        n = opt_int(value)
        buf = so.snd if name == SO_SNDLOWAT else so.rcv
        buf.lowat = max(1, min(n, buf.hiwat or n))
    elif name == SO_BINDTODEVICE:
        _bindtodevice(so, value)
    elif name in (SO_SNDTIMEO, SO_RCVTIMEO):
        sec, usec = TIMEVAL.unpack(value)
        if sec < 0 or not 0 <= usec < 1_000_000:
            raise KernelError(Errno.EDOM, "timeout out of range")
        ns = min(sec, MAX_TIMEOUT_S) * 1_000_000_000 + usec * 1000
        (so.snd if name == SO_SNDTIMEO else so.rcv).timeout_ns = ns
    else:
        raise KernelError(Errno.ENOPROTOOPT, f"socket option 0x{name:x}")


def _bindtodevice(so: Socket, value: bytes) -> None:
    lwp = so.ns.current_lwp()
    if lwp is not None and not lwp.proc.cred.is_root:
        raise KernelError(Errno.EPERM, "SO_BINDTODEVICE needs root")
    name = bytes(value).split(b"\0", 1)[0]
    so.bound_if = so.ns.ifunit(name).index if name else 0


def _tell_protocol(so: Socket, name: int, value: bytes) -> None:
    """Protocols that care (TCP: SO_KEEPALIVE, buffer sizes) hear about generic options."""
    try:
        so.proto.setopt(so, SOL_SOCKET, name, value)
    except KernelError as e:
        if e.errno != Errno.ENOPROTOOPT:
            raise


def sogetopt(so: Socket, level: int, name: int) -> bytes:
    if level != SOL_SOCKET:
        return so.proto.getopt(so, level, name)
    if name in BOOL_OPTIONS or name == SO_ACCEPTCONN:
        return int_opt(1 if so.options & name else 0)
    if name == SO_LINGER:
        return LINGER.pack(1 if so.linger is not None else 0, so.linger or 0)
    if name == SO_SNDBUF:
        return int_opt(so.snd.hiwat)
    if name == SO_RCVBUF:
        return int_opt(so.rcv.hiwat)
    if name == SO_SNDLOWAT:
        return int_opt(so.snd.lowat)
    if name == SO_RCVLOWAT:
        return int_opt(so.rcv.lowat)
    if name in (SO_SNDTIMEO, SO_RCVTIMEO):
        t = (so.snd if name == SO_SNDTIMEO else so.rcv).timeout_ns
        return TIMEVAL.pack(t // 1_000_000_000, (t % 1_000_000_000) // 1000)
    if name == SO_ERROR:
        return int_opt(so.take_error())
    if name == SO_BINDTODEVICE:
        ifp = so.ns.ifindex.get(so.bound_if)
        return ifp.name.encode() + b"\0" if ifp is not None else b""
    if name == SO_TYPE:
        return int_opt(so.type)
    if name == SO_DOMAIN:
        return int_opt(so.domain)
    if name == SO_PROTOCOL:
        return int_opt(so.protocol)
    raise KernelError(Errno.ENOPROTOOPT, f"socket option 0x{name:x}")
