"""IPv6 fragment reassembly (RFC 8200 4.5, RFC 5722, RFC 6946, RFC 7112) and fragmentation on
output, sans-IO, with a timeout and a memory bound.

Interface:
    Reassembler6(timeout_ns=60 s, max_bytes=1 MiB, max_queues=64, max_frags=64)
    add(pkt, chain, now) -> Reassembled | ParamProblemNeeded | None
            ``pkt`` an Ipv6Packet whose ``chain`` (ipv6.parse_chain of its payload) holds a
            FragmentHeader.  Reassembled(packet): the whole datagram as an Ipv6Packet (its
            payload: the unfragmentable headers of the first fragment, then the data), to be
            processed again from the top.  ParamProblemNeeded(code, pointer): drop the fragment
            and answer with ICMPv6 parameter problem.  None: held, or dropped and counted.
    timeout(now) -> [first fragment bytes]    queues that timed out after their offset-0
            fragment arrived (the caller sends ICMPv6 time exceeded, code 1)
    deadline -> int | None;  held_bytes;  drop_all()
    counters: reassembled, atomic, dropped, overlaps, timeouts, overflows, bad
    fragment(pkt, mtu, ident) -> [Ipv6Packet]    split for a link of ``mtu`` (at least 1280 is
            assumed); the hop-by-hop, routing (and destination options before routing)
            headers are repeated in every fragment (RFC 8200 4.5); EMSGSIZE if even 8 data
            bytes do not fit

Rules: the key is (src, dst, ident); any overlap drops the whole datagram (RFC 5722) but an
exact duplicate is ignored; an atomic fragment (offset 0, no more) is returned at once and
never queued (RFC 6946); a non-final fragment whose data is not a multiple of 8 bytes, or data
ending past 65535, is a parameter problem (RFC 8200 4.5); a first fragment without the whole
header chain is dropped with parameter problem code 3 (RFC 7112, reported by parse_chain); at
most ``max_frags`` pieces per datagram, and when holding a fragment would pass ``max_bytes``
(or ``max_queues``) the oldest datagrams go first, so a flood costs bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.reass import ReassQueue, ReassTable
from rumpkernel.net.wire import ipv6
from rumpkernel.net.wire.ipv6 import (
    HEADER_LEN,
    NH_DSTOPTS,
    NH_FRAGMENT,
    NH_HOPOPTS,
    NH_ROUTING,
    PP_HEADER,
    FragmentHeader,
    Ipv6Packet,
)

SEC = 10**9


@dataclass(frozen=True, slots=True)
class Reassembled:
    packet: Ipv6Packet


@dataclass(frozen=True, slots=True)
class ParamProblemNeeded:
    code: int
    pointer: int


class _Queue(ReassQueue):
    """``first`` is the offset-0 fragment; ``unfrag`` its unfragmentable headers (next-header
    patched) and ``nh`` the next header after them."""

    __slots__ = ("nh", "unfrag")

    def __init__(self, expires: int) -> None:
        super().__init__(expires)
        self.unfrag = b""
        self.nh = 0


def _split(pkt: Ipv6Packet, chain: ipv6.Chain, i: int) -> tuple[bytes, int, bytes]:
    """(unfragmentable headers with the last next-header field set to the fragment header's,
    the fixed header's next-header value for them, fragment data)."""
    start = chain.ends[i - 1] if i else 0
    frag_nh = pkt.payload[start]
    unfrag = bytearray(pkt.payload[:start])
    if i:
        prev = chain.ends[i - 2] if i >= 2 else 0
        unfrag[prev] = frag_nh
        first_nh = pkt.next_header
    else:
        first_nh = frag_nh
    return bytes(unfrag), first_nh, pkt.payload[start + 8:]


class Reassembler6(ReassTable):
    queue_class = _Queue

    def __init__(self, timeout_ns: int = 60 * SEC, max_bytes: int = 1 << 20,
                 max_queues: int = 64, max_frags: int = 64) -> None:
        super().__init__(timeout_ns, max_bytes, max_queues, max_frags)
        self.reassembled = self.atomic = self.overlaps = 0

    def add(self, pkt: Ipv6Packet, chain: ipv6.Chain,
            now: int) -> Reassembled | ParamProblemNeeded | None:
        i = next((k for k, h in enumerate(chain.headers) if isinstance(h, FragmentHeader)), -1)
        if i < 0:
            raise KernelError(Errno.EINVAL, "not a fragment")
        fh = chain.headers[i]
        assert isinstance(fh, FragmentHeader)
        unfrag, first_nh, data = _split(pkt, chain, i)
        if fh.offset == 0 and not fh.more:
            self.atomic += 1
            return Reassembled(Ipv6Packet(pkt.src, pkt.dst, first_nh, unfrag + data,
                                          pkt.hop_limit, pkt.traffic_class, pkt.flow_label))
        frag_at = HEADER_LEN + (chain.ends[i - 1] if i else 0)
        if fh.more and len(data) % 8:
            self.bad += 1
            return ParamProblemNeeded(PP_HEADER, 4)               # the payload length field
        if fh.offset + len(data) > 65535 - len(unfrag) - 8:
            self.bad += 1
            return ParamProblemNeeded(PP_HEADER, frag_at + 2)     # the fragment offset field
        key = (pkt.src, pkt.dst, fh.ident)
        return self._insert(key, pkt, unfrag, first_nh, fh, data, now)

    def _insert(self, key: tuple, pkt: Ipv6Packet, unfrag: bytes, first_nh: int,
                fh: FragmentHeader, data: bytes, now: int) -> Reassembled | None:
        q = self._queue(key, len(data), now)
        start, end = fh.offset, fh.offset + len(data)
        for s, d in q.pieces:
            if s == start and len(d) == len(data):
                return None                                       # exact duplicate
            if s < end and start < s + len(d):
                self.overlaps += 1
                self._drop(key)
                return None
        if (not fh.more and q.total is not None and q.total != end) \
                or (q.total is not None and end > q.total) \
                or (not fh.more and any(s + len(d) > end for s, d in q.pieces)) \
                or len(q.pieces) >= self.max_frags:
            self.bad += 1
            self._drop(key)
            return None
        if not fh.more:
            q.total = end
        if fh.offset == 0:
            q.first, q.unfrag, q.nh = pkt, unfrag, first_nh
        if not self._hold(key, q, len(data)):
            return None
        q.pieces.append((start, data))
        return self._complete(key, q)

    def _complete(self, key: tuple, q: _Queue) -> Reassembled | None:
        if q.total is None or q.bytes != q.total or q.first is None:
            return None
        self._done(key, q)
        q.pieces.sort(key=lambda p: p[0])
        f = q.first
        self.reassembled += 1
        return Reassembled(Ipv6Packet(f.src, f.dst, q.nh,
                                      q.unfrag + b"".join(d for _, d in q.pieces),
                                      f.hop_limit, f.traffic_class, f.flow_label))

    def timeout(self, now: int) -> list[bytes]:
        """The offset-0 fragments of datagrams that timed out (for ICMPv6 time exceeded)."""
        return [q.first.emit() for q in self._expired(now) if q.first is not None]


# ---- fragmentation -----------------------------------------------------------------------------
def _unfragmentable_len(chain: ipv6.Chain) -> int:
    """Bytes of per-fragment headers: hop-by-hop, and everything up to the last routing
    header (destination options before it included)."""
    n = 0
    for k, h in enumerate(chain.headers):
        kind = ipv6._kind(h)
        if kind in (NH_HOPOPTS, NH_ROUTING):
            n = chain.ends[k]
        elif kind in (NH_DSTOPTS, NH_FRAGMENT):
            continue
    return n


def fragment(pkt: Ipv6Packet, mtu: int, ident: int) -> list[Ipv6Packet]:
    if HEADER_LEN + len(pkt.payload) <= mtu:
        return [pkt]
    chain = ipv6.parse_chain(pkt.payload, pkt.next_header, max_bytes=65535)
    u = _unfragmentable_len(chain)
    room = (max(mtu, ipv6.MIN_MTU) - HEADER_LEN - u - 8) & ~7
    if room < 8:
        raise KernelError(Errno.EMSGSIZE, "headers leave no room for fragment data")
    unfrag = bytearray(pkt.payload[:u])
    if u:
        last = max(e for e in (0, *chain.ends) if e < u)
        nh_after = unfrag[last]
        unfrag[last] = NH_FRAGMENT
        first_nh = pkt.next_header
    else:
        nh_after = pkt.next_header
        first_nh = NH_FRAGMENT
    data = pkt.payload[u:]
    out = []
    for off in range(0, len(data), room):
        piece = data[off : off + room]
        fh = FragmentHeader(off, off + room < len(data), ident).emit(nh_after)
        out.append(Ipv6Packet(pkt.src, pkt.dst, first_nh, bytes(unfrag) + fh + piece,
                              pkt.hop_limit, pkt.traffic_class, pkt.flow_label))
    return out
