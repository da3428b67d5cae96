"""IPv4 input, output, forwarding, fragmentation and reassembly (NetBSD's ip_input.c,
ip_output.c), around the sans-IO formats in ``net/wire/ipv4.py`` and ``ip_reass.py``.

Interface (the stack lock is held for all of them):
    ip_input(inet, ifp, buf)          a received datagram: validated (malformed ones counted by
                                      reason and dropped), reassembled, delivered to raw sockets
                                      and the protocol, or forwarded when
                                      net.inet.ip.forwarding is on
    ip_output(inet, src, dst, proto, payload, ttl=None, tos=0, df=False, broadcast_ok=False,
              bound=None, bound_if=0, gso=False)
                                      route (through interface index ``bound_if`` only, when
                                      set: SO_BINDTODEVICE), pick the source address, fragment
                                      to the MTU and
                                      hand to the interface.  ENETUNREACH (no route),
                                      EHOSTUNREACH (reject route), EACCES (broadcast without
                                      SO_BROADCAST), EMSGSIZE (DF and too big), ENETDOWN,
                                      EHOSTDOWN (ARP gave up), EADDRNOTAVAIL.
                                      ``gso``: ``payload`` is a TCP super-segment with a
                                      partial checksum (net/wire/gso.py): handed whole to an
                                      interface with ``tso_max`` room, else cut in software
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import IFF_LOOPBACK, RTF_BLACKHOLE, RTF_LOCAL, RTF_REJECT
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet import icmp
from rumpkernel.net.inet.inet import ANY, BROADCAST_ALL, IpIn
from rumpkernel.net.wire import gso, ipv4
from rumpkernel.net.wire import tcp as tcpwire
from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.checksum import internet_checksum

if TYPE_CHECKING:
    from rumpkernel.net.inet.inet import Inet

REASONS = {"short": "tooshort", "version": "badvers", "length": "badlen",
           "checksum": "badsum", "field": "badhlen"}


def ip_input(inet: Inet, ifp: Any, buf: bytes) -> None:
    ns = inet.ns
    ns.count("ip", "total")
    try:
        v = ipv4.Ipv4View(buf)
    except FormatError as e:
        ns.count("ip", REASONS.get(e.reason, "bad"))
        if ifp is not None:
            ifp.ierrors += 1
        return
    b = v.buf
    src = bytes(b[12:16])
    dst = bytes(b[16:20])
    if src[0] >= 224 or src == BROADCAST_ALL or (src[0] == 127 and not (
            ifp is not None and ifp.flags & IFF_LOOPBACK)):
        ns.count("ip", "badaddr")
        return
    broadcast = False
    if dst not in inet.local:
        if inet.is_broadcast(dst, None) or dst == ANY:
            broadcast = True
        elif dst[0] >= 224:
            ns.count("ip", "nomcast")
            return
        else:
            if inet.forwarding and not (ifp is not None and ifp.flags & IFF_LOOPBACK):
                ip_forward(inet, ifp, v)
            else:
                ns.count("ip", "cantforward")
            return
    total = v.total
    hlen = v.hlen
    frag = (b[6] & 0x3F) | b[7]
    if frag:
        got = _reassemble(inet, v, src, dst)
        if got is None:
            return
        header, payload = got
    else:
        header = bytes(b[:hlen])
        # TCP copies the data once, into the socket buffer: it gets a view of the frame
        payload = b[hlen:total] if b[9] == 6 else bytes(b[hlen:total])
    deliver(inet, ifp, header, payload, src, dst, broadcast)


def _reassemble(inet: Inet, v: ipv4.Ipv4View, src: bytes, dst: bytes) -> tuple[bytes, bytes] | None:
    ns = inet.ns
    ns.count("ip", "fragments")
    more = bool(v.flags & ipv4.FLAG_MF)
    header = bytes(v.buf[: v.hlen])
    r = inet.reass
    before = r.dropped + r.bad
    got = r.add((src, dst, v.proto, v.ident), v.frag_offset, more, bytes(v.payload), header,
                inet.now())
    dropped = r.dropped + r.bad - before
    if dropped:
        ns.count("ip", "fragdropped", dropped)
    inet.sync_reass_memory()
    if got is None:
        return None
    payload, first = got
    ns.count("ip", "reassembled")
    hl = (first[0] & 0xF) * 4
    hdr = ipv4.header(src, dst, first[9], len(payload), first[8], first[1],
                      (first[4] << 8) | first[5], 0, 0, first[20:hl])
    return hdr, payload


def deliver(inet: Inet, ifp: Any, header: bytes, payload: bytes, src: bytes, dst: bytes,
            broadcast: bool) -> None:
    ns = inet.ns
    proto = header[9]
    ip = IpIn(ifp, src, dst, proto, header[8], header[1], header, broadcast)
    took = inet.raw.input(ip, header + payload) if inet.raw is not None else False
    handler = inet.protocols.get(proto)
    if handler is None:
        if not took:
            ns.count("ip", "noproto")
            if not broadcast:
                icmp.error(inet, header + payload, icmp.UNREACH, icmp.UNREACH_PROTOCOL)
        return
    ns.count("ip", "delivered")
    handler(ifp, ip, payload)


# ---- output ---------------------------------------------------------------------------------
def ip_output(inet: Inet, src: bytes | None, dst: bytes, proto: int, payload: bytes, *,
              ttl: int | None = None, tos: int = 0, df: bool = False,
              broadcast_ok: bool = False, bound: bytes | None = None,
              options: bytes = b"", bound_if: int = 0, gso: bool = False) -> None:
    ns = inet.ns
    source, rt = inet.select_source(dst, src if src not in (None, ANY) else bound, bound_if)
    if source == ANY and bound_if and (dst == BROADCAST_ALL or inet.is_broadcast(dst, rt.ifp)):
        pass                                    # DHCP from an interface with no address yet
    elif source not in inet.local and not (rt.flags & RTF_LOCAL and source == dst):
        raise KernelError(Errno.EADDRNOTAVAIL, "source address is not local")
    if rt.flags & RTF_REJECT:
        raise KernelError(Errno.EHOSTUNREACH, "reject route")
    if rt.flags & RTF_BLACKHOLE:
        return
    ifp = rt.ifp
    broadcast = dst == BROADCAST_ALL or inet.is_broadcast(dst, ifp)
    if broadcast and not broadcast_ok:
        raise KernelError(Errno.EACCES, "broadcast needs SO_BROADCAST")
    ns.count("ip", "localout")
    ttl = inet.ttl if ttl is None else ttl
    ident = inet.next_ident()
    hl = ipv4.HEADER_LEN + len(options)
    if hl + len(payload) > ipv4.MAX_PACKET:
        raise KernelError(Errno.EMSGSIZE, "datagram longer than 65535 bytes")
    flags = ipv4.FLAG_DF if df else 0
    if broadcast and ifp.kind == "ether":
        # the sender is on the network too (IFF_SIMPLEX): loop a copy back
        ns.netisr_enqueue(ifp, "ip", ipv4.header(source, dst, proto, len(payload), ttl, tos,
                                                 ident, flags, 0, options) + payload)
    nexthop = BROADCAST_ALL if broadcast else rt.nexthop(dst)
    if gso:
        _send_gso(ifp, nexthop, ipv4.header(source, dst, proto, len(payload), ttl, tos, ident,
                                            flags, 0, options) + payload)
        return
    send_fragmented(inet, ifp, nexthop, source, dst, proto, payload, ttl, tos, ident, flags,
                    options)


def _send_gso(ifp: Any, nexthop: bytes, pkt: bytes) -> None:
    """A TCP super-segment: whole to a TSO interface, else MTU-sized segments (software GSO,
    which also completes the partial checksum when it fits as it is)."""
    n = len(pkt)
    if ifp.mtu < n <= ifp.tso_max:
        ifp.output(pkt, nexthop)
        return
    try:
        pieces = gso.tcp_segment(pkt, gso.gso_size_for(pkt, ifp.mtu))
    except FormatError as e:
        raise KernelError(Errno.EMSGSIZE, f"software GSO: {e}") from None
    ifp.ns.count("ip", "gso_software")
    for piece in pieces:
        ifp.output(piece, nexthop)


def send_fragmented(inet: Inet, ifp: Any, nexthop: bytes, src: bytes, dst: bytes, proto: int,
                    payload: bytes, ttl: int, tos: int, ident: int, flags: int,
                    options: bytes, frag_offset: int = 0, last_more: bool = False) -> None:
    """One datagram (or, for a forwarded fragment, a piece of one starting at
    ``frag_offset``) out through ``ifp``, in fragments when it exceeds the MTU."""
    ns = inet.ns
    hl = ipv4.HEADER_LEN + len(options)
    mtu = ifp.mtu
    if hl + len(payload) <= mtu:
        f = flags | (ipv4.FLAG_MF if last_more else 0)
        ifp.output(ipv4.header(src, dst, proto, len(payload), ttl, tos, ident, f, frag_offset,
                               options) + payload, nexthop)
        return
    if flags & ipv4.FLAG_DF:
        ns.count("ip", "cantfrag")
        raise KernelError(Errno.EMSGSIZE, f"datagram of {hl + len(payload)} bytes, MTU {mtu}")
    step = (mtu - hl) & ~7
    if step < 8:
        raise KernelError(Errno.EMSGSIZE, f"MTU {mtu} too small to fragment")
    ns.count("ip", "fragmented")
    n = len(payload)
    for off in range(0, n, step):
        chunk = payload[off : off + step]
        more = off + step < n or last_more
        opts = options if off == 0 and frag_offset == 0 else b""
        ns.count("ip", "ofragments")
        ifp.output(ipv4.header(src, dst, proto, len(chunk), ttl, tos, ident,
                               flags | (ipv4.FLAG_MF if more else 0), frag_offset + off, opts)
                   + chunk, nexthop)


# ---- forwarding ----------------------------------------------------------------------------
def ip_forward(inet: Inet, ifp: Any, v: ipv4.Ipv4View) -> None:
    ns = inet.ns
    orig = bytes(v.buf[: v.total])
    dst = v.dst
    if v.ttl <= 1:
        ns.count("ip", "timeexceeded")
        icmp.error(inet, orig, icmp.TIME_EXCEEDED, icmp.TIMXCEED_INTRANS)
        return
    rt = ns.routes.lookup(dst)
    if rt is None or rt.flags & RTF_REJECT:
        ns.count("ip", "noroute")
        icmp.error(inet, orig, icmp.UNREACH, icmp.UNREACH_HOST if rt else icmp.UNREACH_NET)
        return
    if rt.flags & RTF_BLACKHOLE:
        return
    out = rt.ifp
    if out.flags & IFF_LOOPBACK:
        ns.count("ip", "cantforward")
        return
    hdr = bytearray(v.buf[: v.hlen])
    hdr[8] -= 1
    hdr[10:12] = b"\0\0"
    c = internet_checksum(bytes(hdr))
    hdr[10:12] = bytes((c >> 8, c & 0xFF))
    payload = bytes(v.payload)
    nexthop = rt.nexthop(dst)
    try:
        if len(hdr) + len(payload) <= out.mtu:
            out.output(bytes(hdr) + payload, nexthop)
        elif v.proto == 6 and ifp is not None and v.total > ifp.mtu:
            # a GRO super-frame from the host (larger than the link it came on): cut it
            # back into segments for the next link, as Linux's GSO does when forwarding; its
            # checksum (complete, or partial from the host) becomes the partial one TSO takes
            pkt = bytearray(hdr + payload)
            if len(payload) >= 20:
                at = len(hdr) + 16
                pkt[at:at + 2] = gso.partial_checksum(
                    tcpwire.pseudo_sum(v.src, dst, len(payload))).to_bytes(2, "big")
            _send_gso(out, nexthop, bytes(pkt))
        elif v.flags & ipv4.FLAG_DF:
            ns.count("ip", "cantfrag")
            icmp.error(inet, orig, icmp.UNREACH, icmp.UNREACH_NEEDFRAG, mtu=out.mtu)
            return
        else:
            send_fragmented(inet, out, nexthop, v.src, dst, v.proto, payload, hdr[8], v.tos,
                            v.ident, v.flags & ~ipv4.FLAG_MF, v.options, v.frag_offset,
                            bool(v.flags & ipv4.FLAG_MF))
    except KernelError as e:
        ns.count("ip", "odropped")
        if e.errno == Errno.EHOSTDOWN:
            icmp.error(inet, orig, icmp.UNREACH, icmp.UNREACH_HOST)
        return
    ns.count("ip", "forward")
