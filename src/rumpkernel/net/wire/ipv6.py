"""IPv6 datagrams (RFC 8200) and their extension headers, in two levels (DESIGN rule 8).

Interface:
    Ipv6Packet(src, dst, next_header, payload, hop_limit=64, traffic_class=0, flow_label=0)
                            immutable repr of the fixed header; ``payload`` is everything after
                            it (extension headers included); ``emit()`` fills in the length
    parse(buf) -> Ipv6Packet        FormatError "short" / "version" / "length"; bytes past the
                                    payload length (link padding) are dropped
    Ipv6View(buf)                   raw view of the fixed header, lengths checked, no copies
    header(src, dst, next_header, length, hop_limit, traffic_class, flow_label) -> 40 bytes

  Extension headers (RFC 8200 4):
    Option(type, data)              one TLV of a hop-by-hop or destination options header
    OptionsHeader(kind, options)    kind HOPOPTS or DSTOPTS; Pad1/PadN are added by ``emit``
                                    and dropped by the parser, so they never appear in a repr
    RoutingHeader(routing_type, segments_left, data)
    FragmentHeader(offset, more, ident)    ``offset`` in bytes (a multiple of 8)
    emit_chain(headers, upper) -> (first next-header value, bytes)
    parse_chain(buf, first, max_count=MAX_EXT_COUNT, max_bytes=MAX_EXT_BYTES) -> Chain
                            walks the chain to the upper-layer protocol.  Chain(headers, upper,
                            offset): ``offset`` is where the upper-layer data starts in ``buf``.
                            ChainError (a FormatError) carries the ICMPv6 parameter-problem
                            ``code`` and ``pointer`` (from the start of ``buf``) to report.
    option_action(type) -> SKIP / DISCARD / DISCARD_ICMP / DISCARD_ICMP_UNICAST (RFC 8200 4.2)

  Addresses: ip6(text) -> 16 bytes, ip6str(b) -> RFC 5952 text; UNSPECIFIED, LOOPBACK,
    ALL_NODES, ALL_ROUTERS; is_multicast / is_linklocal / is_unspecified / is_loopback;
    solicited_node(addr) (ff02::1:ffXX:XXXX); multicast_mac(group) (33:33:...);
    prefix_match(a, b, plen); prefix_of(addr, plen)
  checksum(src, dst, next_header, data) -> int   upper-layer checksum field value (RFC 8200 8.1)

Rules: a non-first fragment ends the walk (what follows is data); a chain is bounded: at
most ``max_count`` extension headers and ``max_bytes`` of them, else FormatError("chain"); a
hop-by-hop header anywhere but first is a ChainError (code 1); the parser never reads past
``buf`` and never loops (each header advances at least 8 bytes).  ESP (50) and no-next-header
(59) end the chain; AH (51) is not skipped (no IPsec here).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.checksum import internet_checksum, pseudo_header_sum_v6

HEADER_LEN = 40
MAX_PAYLOAD = 65535
MIN_MTU = 1280
NH_HOPOPTS, NH_TCP, NH_UDP, NH_ROUTING, NH_FRAGMENT = 0, 6, 17, 43, 44
NH_ESP, NH_AH, NH_ICMPV6, NH_NONE, NH_DSTOPTS = 50, 51, 58, 59, 60
EXTENSION_HEADERS = frozenset({NH_HOPOPTS, NH_ROUTING, NH_FRAGMENT, NH_DSTOPTS})
MAX_EXT_COUNT = 8           # Linux's max_{hbh,dst}_opts_number is 8 options; we bound headers
MAX_EXT_BYTES = 1024
OPT_PAD1, OPT_PADN, OPT_ROUTER_ALERT, OPT_JUMBO = 0, 1, 5, 0xC2
SKIP, DISCARD, DISCARD_ICMP, DISCARD_ICMP_UNICAST = 0, 1, 2, 3
# parameter problem codes (RFC 4443 3.4, RFC 7112)
PP_HEADER, PP_NEXT_HEADER, PP_OPTION, PP_INCOMPLETE_CHAIN = 0, 1, 2, 3

UNSPECIFIED = bytes(16)
LOOPBACK = bytes(15) + b"\x01"
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")
_V4MAPPED = bytes(10) + b"\xff\xff"
_SOLICITED = bytes.fromhex("ff0200000000000000000001ff")
_HDR = struct.Struct("!IHBB16s16s")


# ---- addresses ---------------------------------------------------------------------------------
def ip6(text: str) -> bytes:
    """``"fe80::1"`` -> 16 bytes (FormatError on anything else, scope ids included)."""
    if not isinstance(text, str) or "%" in text or len(text) > 45:
        raise FormatError(f"not an IPv6 address: {text!r}")
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        raise FormatError(f"not an IPv6 address: {text!r}") from None


def ip6str(b: bytes) -> str:
    if len(b) != 16:
        raise FormatError("IPv6 addresses are 16 bytes")
    if b[:12] == _V4MAPPED:                     # RFC 5952 5, as inet_ntop writes it
        return "::ffff:" + ".".join(str(x) for x in b[12:])
    return str(ipaddress.IPv6Address(bytes(b)))


def is_multicast(a: bytes) -> bool:
    return a[0] == 0xFF


def is_linklocal(a: bytes) -> bool:
    return a[0] == 0xFE and a[1] & 0xC0 == 0x80


def is_unspecified(a: bytes) -> bool:
    return a == UNSPECIFIED


def is_loopback(a: bytes) -> bool:
    return a == LOOPBACK


def solicited_node(a: bytes) -> bytes:
    """The solicited-node multicast group of ``a`` (RFC 4291 2.7.1)."""
    return _SOLICITED + bytes(a[13:16])


def multicast_mac(group: bytes) -> bytes:
    """The Ethernet address an IPv6 multicast group maps to (RFC 2464 7)."""
    return b"\x33\x33" + bytes(group[12:16])


def prefix_of(a: bytes, plen: int) -> bytes:
    if not 0 <= plen <= 128:
        raise FormatError(f"IPv6 prefix length {plen} out of range")
    v = int.from_bytes(a, "big") >> (128 - plen) << (128 - plen) if plen else 0
    return v.to_bytes(16, "big")


def prefix_match(a: bytes, b: bytes, plen: int) -> bool:
    return prefix_of(a, plen) == prefix_of(b, plen)


def checksum(src: bytes, dst: bytes, next_header: int, data: bytes) -> int:
    """The value for an upper-layer checksum field (0 when ``data`` already carries a good one)."""
    return internet_checksum(data, pseudo_header_sum_v6(src, dst, next_header, len(data)))


# ---- fixed header ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ipv6Packet:
    src: bytes
    dst: bytes
    next_header: int
    payload: bytes = b""
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    def __post_init__(self) -> None:
        if len(self.src) != 16 or len(self.dst) != 16:
            raise FormatError("IPv6 addresses are 16 bytes")
        for name, v, hi in (("next header", self.next_header, 255),
                            ("hop limit", self.hop_limit, 255),
                            ("traffic class", self.traffic_class, 255),
                            ("flow label", self.flow_label, 0xFFFFF)):
            if not 0 <= v <= hi:
                raise FormatError(f"IPv6 {name} {v} out of range")
        if len(self.payload) > MAX_PAYLOAD:
            raise FormatError("IPv6 payload longer than 65535 bytes (no jumbograms)", "length")

    def emit(self) -> bytes:
        return header(self.src, self.dst, self.next_header, len(self.payload), self.hop_limit,
                      self.traffic_class, self.flow_label) + self.payload


def header(src: bytes, dst: bytes, next_header: int, length: int, hop_limit: int = 64,
           traffic_class: int = 0, flow_label: int = 0) -> bytes:
    """The 40-byte fixed header for ``length`` payload bytes."""
    return _HDR.pack(0x60000000 | (traffic_class << 20) | flow_label, length, next_header,
                     hop_limit, src, dst)


def parse(buf: bytes | bytearray | memoryview) -> Ipv6Packet:
    v = Ipv6View(buf)
    return Ipv6Packet(v.src, v.dst, v.next_header, bytes(v.payload), v.hop_limit,
                      v.traffic_class, v.flow_label)


class Ipv6View:
    """Checked fixed-header fields over received bytes; ``payload`` is a memoryview of exactly
    the payload-length bytes after the header."""

    __slots__ = ("buf", "total")

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        n = len(buf)
        if n < HEADER_LEN:
            raise FormatError(f"IPv6 datagram of {n} bytes", "short")
        b = memoryview(buf)
        if b[0] >> 4 != 6:
            raise FormatError(f"IP version {b[0] >> 4}", "version")
        plen = (b[4] << 8) | b[5]
        if HEADER_LEN + plen > n:
            raise FormatError(f"IPv6 payload of {plen} bytes truncated to {n - HEADER_LEN}",
                              "short")
        self.buf = b
        self.total = HEADER_LEN + plen

    @property
    def traffic_class(self) -> int:
        return ((self.buf[0] & 0xF) << 4) | (self.buf[1] >> 4)

    @property
    def flow_label(self) -> int:
        return ((self.buf[1] & 0xF) << 16) | (self.buf[2] << 8) | self.buf[3]

    @property
    def payload_length(self) -> int:
        return self.total - HEADER_LEN

    @property
    def next_header(self) -> int:
        return self.buf[6]

    @property
    def hop_limit(self) -> int:
        return self.buf[7]

    @property
    def src(self) -> bytes:
        return bytes(self.buf[8:24])

    @property
    def dst(self) -> bytes:
        return bytes(self.buf[24:40])

    @property
    def payload(self) -> memoryview:
        return self.buf[HEADER_LEN : self.total]


# ---- extension headers -------------------------------------------------------------------------
class ChainError(FormatError):
    """A bad extension header: ``code``/``pointer`` are what ICMPv6 parameter problem reports
    (``pointer`` counts from the start of the buffer handed to parse_chain)."""

    def __init__(self, what: str, code: int, pointer: int, reason: str = "chain") -> None:
        super().__init__(what, reason)
        self.code = code
        self.pointer = pointer


def option_action(opt_type: int) -> int:
    """What to do with an option this node does not recognise: the top two bits of its type."""
    return opt_type >> 6


@dataclass(frozen=True, slots=True)
class Option:
    type: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 2 <= self.type <= 255:
            raise FormatError(f"IPv6 option type {self.type} (0 and 1 are padding)")
        if len(self.data) > 255:
            raise FormatError("IPv6 option data longer than 255 bytes")


@dataclass(frozen=True, slots=True)
class OptionsHeader:
    kind: int                        # NH_HOPOPTS or NH_DSTOPTS
    options: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in (NH_HOPOPTS, NH_DSTOPTS):
            raise FormatError(f"options header kind {self.kind}")
        if 2 + sum(2 + len(o.data) for o in self.options) > 2048:
            raise FormatError("options header longer than 2048 bytes")

    def emit(self, next_header: int) -> bytes:
        body = b"".join(bytes((o.type, len(o.data))) + o.data for o in self.options)
        pad = -(2 + len(body)) % 8
        if pad == 1:
            body += b"\x00"
        elif pad:
            body += bytes((OPT_PADN, pad - 2)) + bytes(pad - 2)
        return bytes((next_header, (2 + len(body)) // 8 - 1)) + body


@dataclass(frozen=True, slots=True)
class RoutingHeader:
    routing_type: int
    segments_left: int
    data: bytes = bytes(4)           # type-specific; 4 + len(data) is a multiple of 8

    def __post_init__(self) -> None:
        if not (0 <= self.routing_type <= 255 and 0 <= self.segments_left <= 255):
            raise FormatError("routing header field out of range")
        if (4 + len(self.data)) % 8 or 4 + len(self.data) > 2048:
            raise FormatError("routing header data must make the header a multiple of 8")

    def emit(self, next_header: int) -> bytes:
        return bytes((next_header, (4 + len(self.data)) // 8 - 1, self.routing_type,
                      self.segments_left)) + self.data


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    offset: int                      # bytes, a multiple of 8
    more: bool
    ident: int

    def __post_init__(self) -> None:
        if not 0 <= self.offset <= 0x1FFF * 8 or self.offset % 8:
            raise FormatError(f"IPv6 fragment offset {self.offset}")
        if not 0 <= self.ident < 1 << 32:
            raise FormatError("IPv6 fragment identification out of range")

    def emit(self, next_header: int) -> bytes:
        return struct.pack("!BBHI", next_header, 0, self.offset | int(self.more), self.ident)


ExtHeader = OptionsHeader | RoutingHeader | FragmentHeader


def _kind(h: ExtHeader) -> int:
    if isinstance(h, OptionsHeader):
        return h.kind
    return NH_ROUTING if isinstance(h, RoutingHeader) else NH_FRAGMENT


def emit_chain(headers: tuple[ExtHeader, ...] | list[ExtHeader], upper: int) -> tuple[int, bytes]:
    """(value for the fixed header's next-header field, the chain's bytes)."""
    out = []
    for i, h in enumerate(headers):
        nxt = _kind(headers[i + 1]) if i + 1 < len(headers) else upper
        out.append(h.emit(nxt))
    return (_kind(headers[0]) if headers else upper), b"".join(out)


@dataclass(frozen=True, slots=True)
class Chain:
    headers: tuple[ExtHeader, ...]
    upper: int                       # the upper-layer protocol (or NH_NONE / NH_ESP / unknown)
    offset: int                      # where its data starts in the parsed buffer
    ends: tuple[int, ...] = ()       # offset just past each header (for the fragmentable split)


def parse_chain(buf: bytes | bytearray | memoryview, first: int,
                max_count: int = MAX_EXT_COUNT, max_bytes: int = MAX_EXT_BYTES,
                base: int = HEADER_LEN) -> Chain:
    """Walk the extension headers of a payload whose first next-header value is ``first``.
    ``base`` is added to reported pointers (40: pointers count from the IPv6 header)."""
    b = memoryview(buf)
    n = len(b)
    nh, off = first, 0
    headers: list[ExtHeader] = []
    ends: list[int] = []
    while nh in EXTENSION_HEADERS:
        if nh == NH_HOPOPTS and headers:
            ptr = base + (ends[-2] if len(ends) >= 2 else 0)   # the field that named it
            raise ChainError("hop-by-hop options header not first", PP_NEXT_HEADER, ptr)
        if len(headers) >= max_count:
            raise FormatError(f"more than {max_count} IPv6 extension headers", "chain")
        if off + 8 > n:
            raise ChainError("IPv6 extension header truncated", PP_INCOMPLETE_CHAIN, base + off,
                             "short")
        hlen = 8 if nh == NH_FRAGMENT else (b[off + 1] + 1) * 8
        if off + hlen > max_bytes:
            raise FormatError(f"IPv6 extension headers longer than {max_bytes} bytes", "chain")
        if off + hlen > n:
            raise ChainError("IPv6 extension header truncated", PP_INCOMPLETE_CHAIN, base + off,
                             "short")
        h = _parse_one(nh, b[off : off + hlen], base + off)
        headers.append(h)
        nh = b[off]
        off += hlen
        ends.append(off)
        if isinstance(h, FragmentHeader) and h.offset:
            break                    # the rest is fragment data, not headers
    return Chain(tuple(headers), nh, off, tuple(ends))


def _parse_one(kind: int, h: memoryview, at: int) -> ExtHeader:
    if kind == NH_FRAGMENT:
        _nh, _res, offm, ident = struct.unpack_from("!BBHI", h)
        return FragmentHeader(offm & 0xFFF8, bool(offm & 1), ident)
    if kind == NH_ROUTING:
        return RoutingHeader(h[2], h[3], bytes(h[4:]))
    return OptionsHeader(kind, _parse_options(h, at))


def _parse_options(h: memoryview, at: int) -> tuple[Option, ...]:
    opts: list[Option] = []
    i, n = 2, len(h)
    while i < n:
        t = h[i]
        if t == OPT_PAD1:
            i += 1
            continue
        if i + 2 > n or i + 2 + h[i + 1] > n:
            raise ChainError("IPv6 option runs past its header", PP_HEADER, at + i, "option")
        ln = h[i + 1]
        if t != OPT_PADN:
            opts.append(Option(t, bytes(h[i + 2 : i + 2 + ln])))
        i += 2 + ln
    return tuple(opts)
