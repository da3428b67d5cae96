"""ICMPv6 in the kernel (NetBSD's icmp6.c): echo service, neighbour discovery dispatch, errors
from the network handed to the transport protocols (and path MTU), and errors to senders with
the RFC 4443 rules and rate limit.

Interface (stack lock held):
    icmp6_input(inet6, ifp, ip, payload)   registered for next header 58
    error(inet6, ifp, orig, type, code, param)
            answer datagram ``orig`` (bytes from its IPv6 header on) with an ICMPv6 error:
            never about ICMPv6 errors or redirects, multicast destinations (except packet too
            big and parameter problem code 2), unspecified or multicast sources
            (icmp6_error.may_answer); at most net.inet6.icmp6.errppslimit per second (token
            bucket, burst 10), the rest counted as "ratelimited"
    errno_of(type, code) -> errno a transport reports (0: none)

Counters ("icmp6"): total, badsum, tooshort, badnd, in_<type>, out_<type>, error,
errnotsent, ratelimited, senderr, pmtuchanged, badinner, mcastecho.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet6 import icmp6_error
from rumpkernel.net.wire import icmp6 as wire
from rumpkernel.net.wire import ipv6
from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.ipv6 import NH_ICMPV6, ip6str, is_multicast

if TYPE_CHECKING:
    from rumpkernel.net.inet6.in6 import Inet6, Ip6In

ND_TYPES = frozenset((wire.ROUTER_SOLICIT, wire.ROUTER_ADVERT, wire.NEIGHBOR_SOLICIT,
                      wire.NEIGHBOR_ADVERT, wire.REDIRECT))
MLD_TYPES = frozenset((wire.MLD_QUERY, wire.MLD_REPORT, wire.MLD_DONE, wire.MLDV2_REPORT))


def errno_of(icmp_type: int, code: int) -> int:
    """As Linux reports them (icmpv6_err_convert)."""
    if icmp_type == wire.DEST_UNREACH:
        return {wire.UNREACH_NOROUTE: Errno.ENETUNREACH, wire.UNREACH_ADMIN: Errno.EACCES,
                wire.UNREACH_PORT: Errno.ECONNREFUSED}.get(code, Errno.EHOSTUNREACH)
    if icmp_type == wire.TIME_EXCEEDED:
        return Errno.EHOSTUNREACH
    if icmp_type == wire.PARAM_PROBLEM:
        return Errno.EPROTO
    return 0


def icmp6_input(inet6: Inet6, ifp: Any, ip: Ip6In, payload: bytes) -> None:
    ns = inet6.ns
    ns.count("icmp6", "total")
    try:
        m = wire.parse(payload, ip.src, ip.dst)
    except FormatError as e:
        ns.count("icmp6", "badsum" if e.reason == "checksum" else "tooshort")
        return
    ns.count("icmp6", f"in_{m.type}")
    t = m.type
    if t in ND_TYPES:
        try:
            typed = wire.decode(m)
        except FormatError:
            ns.count("icmp6", "badnd")
            return
        from rumpkernel.net.inet6.nd6 import nd_input

        nd_input(inet6, ifp, ip, typed)
    elif t == wire.ECHO_REQUEST:
        _echo(inet6, ifp, ip, m)
    elif t == wire.ECHO_REPLY:
        if inet6.ping is not None:
            inet6.ping.input(ip, payload)
    elif wire.is_error(t):
        _notify(inet6, m)
    elif t in MLD_TYPES:
        ns.count("icmp6", "mld_ignored")


def _echo(inet6: Inet6, ifp: Any, ip: Ip6In, m: wire.Icmp6Message) -> None:
    if ip.multicast and not inet6.mcastecho:
        inet6.ns.count("icmp6", "mcastecho")
        return
    dst = ip.src
    if dst == ipv6.UNSPECIFIED:
        return
    src = None if ip.multicast else ip.dst
    reply = wire.Icmp6Message(wire.ECHO_REPLY, 0, m.rest, m.body)
    _send(inet6, src, dst, reply, ifp.index if ifp is not None else 0, "out_129")


def _notify(inet6: Inet6, m: wire.Icmp6Message) -> None:
    """An error about a datagram we sent: tell its transport protocol (and learn path MTU)."""
    from rumpkernel.net.inet6.ip6 import upper_offset

    inner = m.body
    if len(inner) < ipv6.HEADER_LEN or inner[0] >> 4 != 6:
        inet6.ns.count("icmp6", "badinner")
        return
    src, dst = bytes(inner[8:24]), bytes(inner[24:40])
    up = upper_offset(inner[ipv6.HEADER_LEN:], inner[6])
    if m.type == wire.PACKET_TOO_BIG:
        if m.rest:
            inet6.set_pmtu(dst, m.rest)
            hook = inet6.pmtu_hooks.get(up[0]) if up is not None else None
            if hook is not None:
                off = ipv6.HEADER_LEN + up[1]
                hook(src, dst, bytes(inner[off:off + 8]), max(m.rest, 1280))
        return
    if up is None:
        inet6.ns.count("icmp6", "badinner")
        return
    proto, off = up
    upper = bytes(inner[ipv6.HEADER_LEN + off : ipv6.HEADER_LEN + off + 8])
    err = errno_of(m.type, m.code)
    ctl = inet6.ctlinputs.get(proto)
    if err and ctl is not None and len(upper) >= 4:
        ctl(err, src, dst, upper)


def error(inet6: Inet6, ifp: Any, orig: bytes, icmp_type: int, code: int, param: int) -> None:
    ns = inet6.ns
    if not icmp6_error.may_answer(orig, icmp_type, code):
        ns.count("icmp6", "errnotsent")
        return
    inet6.errlimit.per_second = inet6.errppslimit
    if not inet6.errlimit.allow(inet6.now()):
        ns.count("icmp6", "ratelimited")
        return
    osrc, odst = bytes(orig[8:24]), bytes(orig[24:40])
    scope = ifp.index if ifp is not None else 0
    src = odst if not is_multicast(odst) and inet6.usable(odst, scope) else None
    ns.count("icmp6", "error")
    _send(inet6, src, osrc, icmp6_error.error_message(icmp_type, code, param, orig),
          scope, f"out_{icmp_type}")


def _send(inet6: Inet6, src: bytes | None, dst: bytes, msg: wire.Icmp6Message, scope: int,
          counter: str) -> None:
    from rumpkernel.net.inet6.in6 import scope_of
    from rumpkernel.net.inet6.ip6 import ip6_output

    try:
        ifp, _nh, _rt = inet6.route_out(dst, scope if scope_of(dst) else 0)
        if src is None:
            src = inet6.select_source(dst, ifp)
        ip6_output(inet6, src, dst, NH_ICMPV6, msg.emit(src, dst),
                   scope=scope if scope_of(dst) else 0)
        inet6.ns.count("icmp6", counter)
    except KernelError as e:
        inet6.ns.count("icmp6", "senderr")
        inet6.k.log(f"icmp6: cannot send to {ip6str(dst)}: {e}")
