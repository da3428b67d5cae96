"""IPv6 input, output and forwarding (NetBSD's ip6_input.c, ip6_output.c, ip6_forward.c,
dest6.c, route6.c, frag6.c) around the sans-IO formats in ``net/wire/ipv6.py`` and
``frag6.py``.

Interface (the stack lock is held for all of them):
    ip6_input(inet6, ifp, buf)      a received datagram: validated (malformed ones counted by
                                    reason and dropped), its extension headers walked with the
                                    bounded parser (hop-by-hop and destination options acted on
                                    by their type's top bits, routing headers with segments
                                    left answered with parameter problem), reassembled, and
                                    handed to raw sockets and the upper protocol -- or forwarded
                                    when net.inet6.ip6.forwarding is on
    ip6_output(inet6, src, dst, nh, payload, *, hlim=None, tclass=0, scope=0, bound_if=0,
               dontfrag=False, mloop=False)
                                    route (or the zone for link-local/multicast), pick the
                                    source, fragment to the path MTU (the source alone
                                    fragments in IPv6), hand to the link layer.  ENETUNREACH,
                                    EHOSTUNREACH, EADDRNOTAVAIL, EMSGSIZE (dontfrag and too
                                    big; payload over 65535), ENETDOWN
    upper_offset(payload, nh) -> (upper protocol, offset) | None   for ICMPv6 errors' inner
                                    packets (bounded walk of a possibly truncated chain)

Counters ("ip6"): total, tooshort, toosmall, badvers, badaddr, notmember, badoptions,
badrouting, toomanyhdrs, fragments, fragdropped, fragtimeout, reassembled, delivered, noproto,
localout, noroute, fragmented, ofragments, cantfrag, forward, cantforward, odropped,
timeexceeded, tentative.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import IFF_LOOPBACK, RTF_BLACKHOLE, RTF_LOCAL, RTF_REJECT
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet6 import icmp6
from rumpkernel.net.inet6.frag6 import ParamProblemNeeded, Reassembled, fragment
from rumpkernel.net.inet6.in6 import Ip6In, is_v4mapped
from rumpkernel.net.inet6.nd6 import output6
from rumpkernel.net.wire import icmp6 as wire
from rumpkernel.net.wire import ipv6
from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.ipv6 import (
    HEADER_LEN,
    NH_ICMPV6,
    NH_NONE,
    FragmentHeader,
    Ipv6Packet,
    OptionsHeader,
    RoutingHeader,
    is_linklocal,
    is_multicast,
)

if TYPE_CHECKING:
    from rumpkernel.net.inet6.in6 import Inet6

REASONS = {"short": "tooshort", "version": "badvers", "length": "badlen"}
OPT_ROUTER_ALERT = ipv6.OPT_ROUTER_ALERT
ND_TYPES = (wire.ROUTER_SOLICIT, wire.ROUTER_ADVERT, wire.NEIGHBOR_SOLICIT,
            wire.NEIGHBOR_ADVERT, wire.REDIRECT)


# ---- input --------------------------------------------------------------------------------------
def ip6_input(inet6: Inet6, ifp: Any, buf: bytes) -> None:
    ns = inet6.ns
    ns.count("ip6", "total")
    try:
        v = ipv6.Ipv6View(buf)
    except FormatError as e:
        ns.count("ip6", REASONS.get(e.reason, "tooshort"))
        if ifp is not None:
            ifp.ierrors += 1
        return
    b = v.buf
    src = bytes(b[8:24])
    dst = bytes(b[24:40])
    loop = ifp is not None and bool(ifp.flags & IFF_LOOPBACK)
    if is_multicast(src) or is_v4mapped(src) or is_v4mapped(dst) or (
            not loop and (src == ipv6.LOOPBACK or dst == ipv6.LOOPBACK)) \
            or dst == ipv6.UNSPECIFIED:
        ns.count("ip6", "badaddr")
        return
    in6 = inet6.ifinfo(ifp) if ifp is not None else None
    if in6 is None:
        ns.count("ip6", "noinet6")
        return
    tentative = False
    if is_multicast(dst):
        if dst not in in6.groups:
            ns.count("ip6", "notmember")
            return
    else:
        owner = inet6.owner(dst, 0 if loop else ifp.index)
        if owner is None:
            if inet6.forwarding and not loop and not is_linklocal(dst) \
                    and not is_linklocal(src):
                ip6_forward(inet6, ifp, v)
            else:
                ns.count("ip6", "cantforward")
            return
        tentative = not owner.in6.ac.usable(dst)
    total = v.total
    orig = buf if total == len(buf) and isinstance(buf, bytes) else bytes(b[:total])
    deliver(inet6, ifp, orig, src, dst, b[6], orig[HEADER_LEN:total], b[7],
            v.traffic_class, tentative)


def deliver(inet6: Inet6, ifp: Any, orig: bytes, src: bytes, dst: bytes, nh: int,
            payload: bytes, hlim: int, tclass: int, tentative: bool, depth: int = 0) -> None:
    ns = inet6.ns
    if nh not in ipv6.EXTENSION_HEADERS and not tentative:      # the common case
        _upper(inet6, ifp, orig, src, dst, nh, payload, hlim, tclass, None)
        return
    try:
        chain = ipv6.parse_chain(payload, nh)
    except ipv6.ChainError as e:
        ns.count("ip6", "badoptions" if e.reason == "option" else "tooshort"
                 if e.reason == "short" else "badoptions")
        _param_problem(inet6, ifp, orig, e.code, e.pointer)
        return
    except FormatError:
        ns.count("ip6", "toomanyhdrs")
        return
    if not _headers_ok(inet6, ifp, orig, payload, chain, dst):
        return
    for h in chain.headers:
        if isinstance(h, FragmentHeader):
            if depth or tentative:
                ns.count("ip6", "fragdropped")
                return
            _reassemble(inet6, ifp, orig, src, dst, nh, payload, hlim, tclass, chain)
            return
    upper = chain.upper
    data = payload[chain.offset:]
    if tentative and not (upper == NH_ICMPV6 and len(data) > 0 and data[0] in
                          (wire.NEIGHBOR_SOLICIT, wire.NEIGHBOR_ADVERT)):
        ns.count("ip6", "tentative")
        return
    _upper(inet6, ifp, orig, src, dst, upper, data, hlim, tclass, chain)


def _upper(inet6: Inet6, ifp: Any, orig: bytes, src: bytes, dst: bytes, upper: int,
           data: bytes, hlim: int, tclass: int, chain: ipv6.Chain | None) -> None:
    """Raw sockets, then the upper-layer protocol (or parameter problem: unknown)."""
    ns = inet6.ns
    if upper == NH_NONE:
        return
    ip = Ip6In(ifp, src, dst, upper, hlim, tclass, orig)
    raw = inet6.raw
    took = raw.input(ip, data) if raw is not None else False
    handler = inet6.protocols.get(upper)
    if handler is None:
        if not took:
            ns.count("ip6", "noproto")
            ends = chain.ends if chain is not None else ()   # the field that named it
            ptr = HEADER_LEN + (ends[-2] if len(ends) >= 2 else 0) if ends else 6
            _param_problem(inet6, ifp, orig, ipv6.PP_NEXT_HEADER, ptr)
        return
    ns.count("ip6", "delivered")
    handler(ifp, ip, data)


def _headers_ok(inet6: Inet6, ifp: Any, orig: bytes, payload: bytes, chain: ipv6.Chain,
                dst: bytes) -> bool:
    """Options by the top two bits of their type (RFC 8200 4.2); a routing header with
    segments left is answered with parameter problem (no routing types here, RFC 5095)."""
    ns = inet6.ns
    for i, h in enumerate(chain.headers):
        start = chain.ends[i - 1] if i else 0
        if isinstance(h, OptionsHeader):
            for off, t in _option_offsets(payload[start : chain.ends[i]]):
                if t == OPT_ROUTER_ALERT:
                    continue
                act = ipv6.option_action(t)
                if act == ipv6.SKIP:
                    continue
                ns.count("ip6", "badoptions")
                if act == ipv6.DISCARD_ICMP or (act == ipv6.DISCARD_ICMP_UNICAST
                                                and not is_multicast(dst)):
                    _param_problem(inet6, ifp, orig, ipv6.PP_OPTION, HEADER_LEN + start + off)
                return False
        elif isinstance(h, RoutingHeader) and h.segments_left:
            ns.count("ip6", "badrouting")
            _param_problem(inet6, ifp, orig, ipv6.PP_HEADER, HEADER_LEN + start + 2)
            return False
    return True


def _option_offsets(h: bytes) -> list[tuple[int, int]]:
    """(offset within the header, type) of each non-padding option (lengths already checked by
    parse_chain)."""
    out = []
    i, n = 2, len(h)
    while i < n:
        t = h[i]
        if t == ipv6.OPT_PAD1:
            i += 1
            continue
        if i + 2 > n:
            break
        if t != ipv6.OPT_PADN:
            out.append((i, t))
        i += 2 + h[i + 1]
    return out


def _reassemble(inet6: Inet6, ifp: Any, orig: bytes, src: bytes, dst: bytes, nh: int,
                payload: bytes, hlim: int, tclass: int, chain: ipv6.Chain) -> None:
    ns = inet6.ns
    ns.count("ip6", "fragments")
    r = inet6.reass
    before = r.dropped + r.bad + r.overflows
    try:
        pkt = Ipv6Packet(src, dst, nh, payload, hlim, tclass)
        got = r.add(pkt, chain, inet6.now())
    except FormatError:
        got = None
        ns.count("ip6", "fragdropped")
    lost = r.dropped + r.bad + r.overflows - before
    if lost:
        ns.count("ip6", "fragdropped", lost)
    inet6.sync_reass()
    if isinstance(got, ParamProblemNeeded):
        _param_problem(inet6, ifp, orig, got.code, got.pointer)
    elif isinstance(got, Reassembled):
        ns.count("ip6", "reassembled")
        p = got.packet
        deliver(inet6, ifp, p.emit(), p.src, p.dst, p.next_header, p.payload, p.hop_limit,
                p.traffic_class, False, depth=1)


def _param_problem(inet6: Inet6, ifp: Any, orig: bytes, code: int, pointer: int) -> None:
    icmp6.error(inet6, ifp, orig, wire.PARAM_PROBLEM, code, pointer)


# ---- output -------------------------------------------------------------------------------------
def ip6_output(inet6: Inet6, src: bytes | None, dst: bytes, nh: int, payload: bytes, *,
               hlim: int | None = None, tclass: int = 0, scope: int = 0, bound_if: int = 0,
               dontfrag: bool = False, mloop: bool = False, route: tuple | None = None,
               src_ok: bool = False) -> None:
    """``route`` (ifp, nexthop, route) and ``src_ok`` (``src`` came from select_source)
    spare a caller that already knows them the work (in6_pcb.output)."""
    ns = inet6.ns
    if is_v4mapped(dst) or dst == ipv6.UNSPECIFIED:
        raise KernelError(Errno.ENETUNREACH, "not an IPv6 destination")
    ifp, nexthop, rt = route or inet6.route_out(dst, scope, bound_if)
    if rt is not None and rt.flags & RTF_BLACKHOLE:
        return
    in6 = ifp.in6
    if in6 is None:
        raise KernelError(Errno.ENETDOWN, f"{ifp.name}: IPv6 is not up")
    if src is None or src == ipv6.UNSPECIFIED:
        src = inet6.select_source(dst, ifp)
    elif not src_ok and not inet6.usable(src, ifp.index if is_linklocal(src) else 0):
        raise KernelError(Errno.EADDRNOTAVAIL, "source address is not ours (or tentative)")
    if len(payload) > ipv6.MAX_PAYLOAD:
        raise KernelError(Errno.EMSGSIZE, f"IPv6 payload of {len(payload)} bytes")
    multicast = dst[0] == 0xFF
    if hlim is None:
        hlim = 1 if multicast else (in6.hop_limit or inet6.hlim)
    ns.count("ip6", "localout")
    if rt is not None and rt.flags & RTF_LOCAL:
        out_ifp = rt.ifp                            # our own address: through lo0
    elif rt is None and not multicast and inet6.owner(dst, ifp.index) is not None:
        out_ifp = inet6.loopback_ifp() or ifp       # our own link-local address
    else:
        out_ifp = ifp
    mtu = out_ifp.in6.mtu if out_ifp.in6 is not None else out_ifp.mtu
    if inet6.pmtus:
        pm = inet6.pmtu(dst)
        if pm is not None:
            mtu = min(mtu, pm)
    if mloop and multicast and dst in in6.groups and not out_ifp.flags & IFF_LOOPBACK:
        ns.netisr_enqueue(ifp, "ip6", ipv6.header(src, dst, nh, len(payload), hlim, tclass)
                          + payload)
    if HEADER_LEN + len(payload) <= mtu:
        output6(out_ifp, ipv6.header(src, dst, nh, len(payload), hlim, tclass) + payload,
                nexthop)
    else:
        send(inet6, out_ifp, Ipv6Packet(src, dst, nh, payload, hlim, tclass), nexthop, mtu,
             dontfrag)


def send(inet6: Inet6, ifp: Any, pkt: Ipv6Packet, nexthop: bytes, mtu: int,
         dontfrag: bool = False) -> None:
    ns = inet6.ns
    if HEADER_LEN + len(pkt.payload) <= mtu:
        output6(ifp, pkt.emit(), nexthop)
        return
    if dontfrag:
        ns.count("ip6", "cantfrag")
        raise KernelError(Errno.EMSGSIZE, f"datagram of {HEADER_LEN + len(pkt.payload)} "
                          f"bytes, path MTU {mtu}")
    try:
        pieces = fragment(pkt, mtu, inet6.next_ident())
    except FormatError as e:
        raise KernelError(Errno.EMSGSIZE, f"cannot fragment: {e}") from None
    ns.count("ip6", "fragmented")
    for p in pieces:
        ns.count("ip6", "ofragments")
        output6(ifp, p.emit(), nexthop)


# ---- forwarding ---------------------------------------------------------------------------------
def ip6_forward(inet6: Inet6, ifp: Any, v: ipv6.Ipv6View) -> None:
    ns = inet6.ns
    orig = bytes(v.buf[: v.total])
    dst = v.dst
    if is_multicast(dst) or v.src == ipv6.UNSPECIFIED:
        ns.count("ip6", "cantforward")
        return
    if v.hop_limit <= 1:
        ns.count("ip6", "timeexceeded")
        icmp6.error(inet6, ifp, orig, wire.TIME_EXCEEDED, wire.TIMXCEED_HOPLIMIT, 0)
        return
    rt = inet6.routes.lookup(dst)
    if rt is None or rt.flags & RTF_REJECT:
        ns.count("ip6", "noroute")
        icmp6.error(inet6, ifp, orig, wire.DEST_UNREACH, wire.UNREACH_NOROUTE, 0)
        return
    out = rt.ifp
    if inet6.blackhole(rt) or out.flags & IFF_LOOPBACK or out.in6 is None:
        ns.count("ip6", "cantforward")
        return
    mtu = out.in6.mtu
    if len(orig) > mtu:
        ns.count("ip6", "cantfrag")
        icmp6.error(inet6, ifp, orig, wire.PACKET_TOO_BIG, 0, mtu)
        return
    fwd = bytearray(orig)
    fwd[7] -= 1
    try:
        output6(out, bytes(fwd), rt.gateway if rt.gateway is not None else dst)
    except KernelError:
        ns.count("ip6", "odropped")
        return
    ns.count("ip6", "forward")


# ---- helpers for ICMPv6 errors ------------------------------------------------------------------
def upper_offset(payload: bytes, nh: int) -> tuple[int, int] | None:
    """The upper-layer protocol and its offset in a (possibly truncated) payload."""
    try:
        ch = ipv6.parse_chain(payload, nh)
    except FormatError:
        return None
    if any(isinstance(h, FragmentHeader) and h.offset for h in ch.headers):
        return None
    return ch.upper, ch.offset
