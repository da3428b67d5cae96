"""ICMP for IPv4 (NetBSD's ip_icmp.c): echo service, errors to senders with a rate limit, and
errors from the network handed to the transport protocols.

Interface (stack lock held):
    icmp_input(ifp, ip, payload)     registered for protocol 1
    error(inet, orig, type, code, mtu=0)   answer datagram ``orig`` (its bytes from the IP
                                     header on) with an ICMP error -- never for ICMP errors,
                                     broadcasts, multicasts, non-first fragments or
                                     unspecified/broadcast sources; at most
                                     net.inet.icmp.errppslimit per second (token bucket; -1:
                                     no limit), the rest counted as "ratelimited"
    ERRNO_OF                         (type, code) -> the errno a transport reports
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.wire import icmp as wire
from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.icmp import (  # noqa: F401  (re-exported for ip.py)
    ECHO,
    ECHO_REPLY,
    TIME_EXCEEDED,
    TIMXCEED_INTRANS,
    TIMXCEED_REASS,
    UNREACH,
    UNREACH_HOST,
    UNREACH_NEEDFRAG,
    UNREACH_NET,
    UNREACH_PORT,
    UNREACH_PROTOCOL,
)

if TYPE_CHECKING:
    from rumpkernel.net.inet.inet import Inet, IpIn

IPPROTO_ICMP = 1
RETURN_BYTES = 8     # of the offending datagram's payload, after its header (RFC 792)


def errno_of(icmp_type: int, code: int) -> int:
    """NetBSD's inetctlerrmap, by ICMP type and code (0: nothing to report)."""
    if icmp_type == UNREACH:
        if code in (wire.UNREACH_PORT, wire.UNREACH_PROTOCOL):
            return Errno.ECONNREFUSED
        if code == wire.UNREACH_NEEDFRAG:
            return Errno.EMSGSIZE
        return Errno.EHOSTUNREACH
    if icmp_type == TIME_EXCEEDED:
        return Errno.EHOSTUNREACH
    if icmp_type == wire.PARAM_PROB:
        return Errno.ENOPROTOOPT
    return 0


def icmp_input(inet: Inet, ifp: Any, ip: IpIn, payload: bytes) -> None:
    ns = inet.ns
    ns.count("icmp", "total")
    try:
        m = wire.parse(payload)
    except FormatError as e:
        ns.count("icmp", "badsum" if e.reason == "checksum" else "tooshort")
        return
    ns.count("icmp", f"in_type{m.type}")
    if m.type == ECHO:
        if ip.broadcast and not inet.bmcastecho:
            ns.count("icmp", "bmcastecho")
            return
        src = ip.dst if ip.dst in inet.local else None
        _send(inet, src, ip.src, wire.emit(ECHO_REPLY, 0, m.rest, m.payload), "out_type0")
    elif m.type == ECHO_REPLY:
        ping = inet.ping
        if ping is not None:
            ping.input(ip, payload)
    elif m.type == wire.TIMESTAMP:
        return
    elif wire.is_error(m.type):
        _notify(inet, m)


def _notify(inet: Inet, m: wire.IcmpMessage) -> None:
    inner = m.payload
    if len(inner) < 20 or inner[0] >> 4 != 4:
        inet.ns.count("icmp", "badlen")
        return
    hl = (inner[0] & 0xF) * 4
    if len(inner) < hl + 8:
        inet.ns.count("icmp", "badlen")
        return
    err = errno_of(m.type, m.code)
    ctl = inet.ctlinputs.get(inner[9])
    if err and ctl is not None:
        ctl(err, bytes(inner[12:16]), bytes(inner[16:20]), bytes(inner[: hl + 8]))


def error(inet: Inet, orig: bytes, icmp_type: int, code: int, mtu: int = 0) -> None:
    ns = inet.ns
    if len(orig) < 20:
        return
    hl = (orig[0] & 0xF) * 4
    src, dst = orig[12:16], orig[16:20]
    frag_off = ((orig[6] & 0x1F) << 8) | orig[7]
    if frag_off or src in (b"\0\0\0\0",) or src[0] >= 224 or dst[0] >= 224 \
            or inet.is_broadcast(src) or inet.is_broadcast(dst):
        ns.count("icmp", "oldbad")
        return
    if orig[9] == IPPROTO_ICMP and len(orig) > hl and wire.is_error(orig[hl]):
        ns.count("icmp", "oldicmp")
        return
    if not _ratecheck(inet):
        ns.count("icmp", "ratelimited")
        return
    rest = mtu & 0xFFFF if icmp_type == UNREACH and code == UNREACH_NEEDFRAG else 0
    body = orig[: hl + RETURN_BYTES]
    local_src = dst if dst in inet.local else None
    ns.count("icmp", "error")
    _send(inet, local_src, src, wire.emit(icmp_type, code, rest, body), f"out_type{icmp_type}")


def _send(inet: Inet, src: bytes | None, dst: bytes, msg: bytes, counter: str) -> None:
    from rumpkernel.net.inet.ip import ip_output

    try:
        ip_output(inet, src, dst, IPPROTO_ICMP, msg)
        inet.ns.count("icmp", counter)
    except KernelError as e:
        inet.ns.count("icmp", "senderr")
        inet.k.log(f"icmp: cannot send to {'.'.join(map(str, dst))}: {e}")


def _ratecheck(inet: Inet) -> bool:
    limit = inet.errppslimit
    if limit < 0:
        return True
    if limit == 0:
        return False
    now = inet.now()
    elapsed = now - inet.icmp_last
    inet.icmp_last = now
    inet.icmp_tokens = min(float(limit), inet.icmp_tokens + elapsed * limit / 1e9)
    if inet.icmp_tokens >= 1.0:
        inet.icmp_tokens -= 1.0
        return True
    return False
