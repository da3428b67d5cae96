"""ICMPv6 (RFC 4443) and neighbour discovery messages (RFC 4861, RDNSS from RFC 8106), in two
levels (DESIGN rule 8).

Interface:
    Icmp6Message(type, code, rest=0, body=b"")   the generic level: ``rest`` is the 32-bit word
                            after the checksum, ``body`` the bytes after it
        .emit(src, dst) -> bytes                 with the checksum over the IPv6 pseudo-header
    parse(buf, src, dst, verify=True) -> Icmp6Message    FormatError "short" / "checksum"
    decode(msg) -> a typed record (below) or ``msg`` itself for types not listed
                            FormatError "nd" for an ND message that fails RFC 4861's length,
                            code, target or option checks (such messages are dropped)
    typed records, each with .message() -> Icmp6Message and .emit(src, dst):
        Echo(request, ident, seq, data)
        DestUnreachable(code, invoking)     PacketTooBig(mtu, invoking)
        TimeExceeded(code, invoking)        ParamProblem(code, pointer, invoking)
        RouterSolicitation(options)
        RouterAdvertisement(cur_hop_limit, flags, router_lifetime, reachable_time,
                            retrans_timer, options)   flags: RA_MANAGED, RA_OTHER (+ the rest)
        NeighborSolicitation(target, options)
        NeighborAdvertisement(target, flags, options)  flags: NA_ROUTER, NA_SOLICITED,
                                                       NA_OVERRIDE
        Redirect(target, destination, options)
    ND options: LinkAddr(kind, addr) (kind OPT_SOURCE_LLADDR / OPT_TARGET_LLADDR),
        PrefixInfo(prefix_len, flags, valid_lifetime, preferred_lifetime, prefix) (flags
        PI_ONLINK, PI_AUTO), Mtu(mtu), Rdnss(lifetime, servers), RedirectedHeader(data),
        Nonce(value) (RFC 7527 enhanced DAD: Linux puts 6 random bytes in its DAD probes),
        UnknownOption(type, data);  parse_options(buf) / emit_options(opts)
    find(options, cls, kind=None) -> the first option of that class (or None)
    is_error(type) -> bool      error messages (types 0..127) never answer other errors

Rules: lifetimes are seconds as on the wire (0xffffffff = infinity); an option whose length
field is 0 or runs past the message makes the whole message invalid; unknown options are kept
(round trip) and ignored by the engines.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.ipv6 import NH_ICMPV6, checksum, is_multicast

HEADER_LEN = 8
DEST_UNREACH, PACKET_TOO_BIG, TIME_EXCEEDED, PARAM_PROBLEM = 1, 2, 3, 4
ECHO_REQUEST, ECHO_REPLY = 128, 129
MLD_QUERY, MLD_REPORT, MLD_DONE, MLDV2_REPORT = 130, 131, 132, 143
ROUTER_SOLICIT, ROUTER_ADVERT, NEIGHBOR_SOLICIT, NEIGHBOR_ADVERT, REDIRECT = 133, 134, 135, 136, 137
# destination unreachable codes
UNREACH_NOROUTE, UNREACH_ADMIN, UNREACH_BEYONDSCOPE, UNREACH_ADDR, UNREACH_PORT = 0, 1, 2, 3, 4
UNREACH_POLICY, UNREACH_REJECT = 5, 6
TIMXCEED_HOPLIMIT, TIMXCEED_REASS = 0, 1
RA_MANAGED, RA_OTHER = 0x80, 0x40
NA_ROUTER, NA_SOLICITED, NA_OVERRIDE = 0x80000000, 0x40000000, 0x20000000
OPT_SOURCE_LLADDR, OPT_TARGET_LLADDR, OPT_PREFIX_INFO, OPT_REDIRECTED, OPT_MTU = 1, 2, 3, 4, 5
OPT_NONCE, OPT_RDNSS = 14, 25
PI_ONLINK, PI_AUTO = 0x80, 0x40
INFINITY = 0xFFFFFFFF
_HDR = struct.Struct("!BBHI")
_PI = struct.Struct("!BBIII16s")


def is_error(icmp_type: int) -> bool:
    return icmp_type < 128


@dataclass(frozen=True, slots=True)
class Icmp6Message:
    type: int
    code: int
    rest: int = 0
    body: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.type <= 255 and 0 <= self.code <= 255 and 0 <= self.rest < 1 << 32):
            raise FormatError("ICMPv6 field out of range")

    def emit(self, src: bytes, dst: bytes) -> bytes:
        raw = _HDR.pack(self.type, self.code, 0, self.rest) + self.body
        c = checksum(src, dst, NH_ICMPV6, raw)
        return raw[:2] + bytes((c >> 8, c & 0xFF)) + raw[4:]


def parse(buf: bytes | bytearray | memoryview, src: bytes, dst: bytes,
          verify: bool = True) -> Icmp6Message:
    if len(buf) < HEADER_LEN:
        raise FormatError(f"ICMPv6 message of {len(buf)} bytes", "short")
    if verify and checksum(src, dst, NH_ICMPV6, buf) != 0:
        raise FormatError("ICMPv6 checksum", "checksum")
    t, c, _sum, rest = _HDR.unpack_from(buf)
    return Icmp6Message(t, c, rest, bytes(buf[HEADER_LEN:]))


# ---- ND options --------------------------------------------------------------------------------
def _opt_len_ok(data: bytes) -> bool:
    return (2 + len(data)) % 8 == 0 and 2 + len(data) <= 255 * 8


@dataclass(frozen=True, slots=True)
class LinkAddr:
    kind: int                         # OPT_SOURCE_LLADDR or OPT_TARGET_LLADDR
    addr: bytes                       # 6 bytes on Ethernet

    def __post_init__(self) -> None:
        if self.kind not in (OPT_SOURCE_LLADDR, OPT_TARGET_LLADDR) or not _opt_len_ok(self.addr):
            raise FormatError("link-layer address option")

    def emit(self) -> bytes:
        return bytes((self.kind, (2 + len(self.addr)) // 8)) + self.addr


@dataclass(frozen=True, slots=True)
class PrefixInfo:
    prefix_len: int
    flags: int                        # PI_ONLINK | PI_AUTO (other bits kept)
    valid_lifetime: int
    preferred_lifetime: int
    prefix: bytes
    reserved: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.prefix_len <= 255 and 0 <= self.flags <= 255) \
                or len(self.prefix) != 16 or not 0 <= self.reserved < 1 << 32 \
                or not (0 <= self.valid_lifetime <= INFINITY
                        and 0 <= self.preferred_lifetime <= INFINITY):
            raise FormatError("prefix information option")

    @property
    def onlink(self) -> bool:
        return bool(self.flags & PI_ONLINK)

    @property
    def autonomous(self) -> bool:
        return bool(self.flags & PI_AUTO)

    def emit(self) -> bytes:
        return bytes((OPT_PREFIX_INFO, 4)) + _PI.pack(
            self.prefix_len, self.flags, self.valid_lifetime, self.preferred_lifetime,
            self.reserved, self.prefix)


@dataclass(frozen=True, slots=True)
class Mtu:
    mtu: int

    def __post_init__(self) -> None:
        if not 0 <= self.mtu <= INFINITY:
            raise FormatError("MTU option")

    def emit(self) -> bytes:
        return struct.pack("!BBHI", OPT_MTU, 1, 0, self.mtu)


@dataclass(frozen=True, slots=True)
class Rdnss:
    lifetime: int
    servers: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.servers or len(self.servers) > 127 or any(len(s) != 16
                                                              for s in self.servers) \
                or not 0 <= self.lifetime <= INFINITY:
            raise FormatError("RDNSS option")

    def emit(self) -> bytes:
        return struct.pack("!BBHI", OPT_RDNSS, 1 + 2 * len(self.servers), 0,
                           self.lifetime) + b"".join(self.servers)


@dataclass(frozen=True, slots=True)
class RedirectedHeader:
    data: bytes                       # as much of the redirected packet as fits

    def __post_init__(self) -> None:
        if len(self.data) % 8 or 8 + len(self.data) > 255 * 8:
            raise FormatError("redirected header option")

    def emit(self) -> bytes:
        return bytes((OPT_REDIRECTED, 1 + len(self.data) // 8)) + bytes(6) + self.data


@dataclass(frozen=True, slots=True)
class Nonce:
    value: bytes                      # 6 bytes (or 8k + 6)

    def __post_init__(self) -> None:
        if not _opt_len_ok(self.value):
            raise FormatError("nonce option")

    def emit(self) -> bytes:
        return bytes((OPT_NONCE, (2 + len(self.value)) // 8)) + self.value


@dataclass(frozen=True, slots=True)
class UnknownOption:
    type: int
    data: bytes

    def __post_init__(self) -> None:
        if self.type in _KNOWN or not 0 <= self.type <= 255 or not _opt_len_ok(self.data):
            raise FormatError("ND option")

    def emit(self) -> bytes:
        return bytes((self.type, (2 + len(self.data)) // 8)) + self.data


NdOption = LinkAddr | PrefixInfo | Mtu | Rdnss | RedirectedHeader | Nonce | UnknownOption
_KNOWN = frozenset({OPT_SOURCE_LLADDR, OPT_TARGET_LLADDR, OPT_PREFIX_INFO, OPT_REDIRECTED,
                    OPT_MTU, OPT_RDNSS, OPT_NONCE})


def emit_options(opts: tuple[NdOption, ...]) -> bytes:
    return b"".join(o.emit() for o in opts)


def parse_options(buf: bytes | memoryview) -> tuple[NdOption, ...]:
    """All options in ``buf``; FormatError("nd") for a zero length or one past the end."""
    b = memoryview(buf)
    out: list[NdOption] = []
    i, n = 0, len(b)
    while i < n:
        if i + 2 > n or b[i + 1] == 0 or i + b[i + 1] * 8 > n:
            raise FormatError("ND option with zero length or past the message", "nd")
        t, ln = b[i], b[i + 1] * 8
        out.append(_parse_option(t, bytes(b[i : i + ln])))
        i += ln
    return tuple(out)


def _parse_option(t: int, o: bytes) -> NdOption:
    if t in (OPT_SOURCE_LLADDR, OPT_TARGET_LLADDR):
        return LinkAddr(t, o[2:])
    if t == OPT_PREFIX_INFO and len(o) == 32:
        plen, flags, valid, pref, res, prefix = _PI.unpack_from(o, 2)
        return PrefixInfo(plen, flags, valid, pref, prefix, res)
    if t == OPT_MTU and len(o) == 8:
        return Mtu(struct.unpack_from("!I", o, 4)[0])
    if t == OPT_RDNSS and len(o) >= 24 and (len(o) - 8) % 16 == 0:
        return Rdnss(struct.unpack_from("!I", o, 4)[0],
                     tuple(o[k : k + 16] for k in range(8, len(o), 16)))
    if t == OPT_REDIRECTED:
        return RedirectedHeader(o[8:])
    if t == OPT_NONCE:
        return Nonce(o[2:])
    if t in _KNOWN:
        raise FormatError(f"ND option {t} of {len(o)} bytes", "nd")
    return UnknownOption(t, o[2:])


def find(options: tuple[NdOption, ...], cls: type, kind: int | None = None) -> NdOption | None:
    for o in options:
        if isinstance(o, cls) and (kind is None or getattr(o, "kind", None) == kind):
            return o
    return None


# ---- typed messages ----------------------------------------------------------------------------
class _Typed:
    __slots__ = ()

    def message(self) -> Icmp6Message:
        raise NotImplementedError

    def emit(self, src: bytes, dst: bytes) -> bytes:
        return self.message().emit(src, dst)


@dataclass(frozen=True, slots=True)
class Echo(_Typed):
    request: bool
    ident: int
    seq: int
    data: bytes = b""

    def message(self) -> Icmp6Message:
        return Icmp6Message(ECHO_REQUEST if self.request else ECHO_REPLY, 0,
                            ((self.ident & 0xFFFF) << 16) | (self.seq & 0xFFFF), self.data)


@dataclass(frozen=True, slots=True)
class DestUnreachable(_Typed):
    code: int
    invoking: bytes

    def message(self) -> Icmp6Message:
        return Icmp6Message(DEST_UNREACH, self.code, 0, self.invoking)


@dataclass(frozen=True, slots=True)
class PacketTooBig(_Typed):
    mtu: int
    invoking: bytes

    def message(self) -> Icmp6Message:
        return Icmp6Message(PACKET_TOO_BIG, 0, self.mtu, self.invoking)


@dataclass(frozen=True, slots=True)
class TimeExceeded(_Typed):
    code: int
    invoking: bytes

    def message(self) -> Icmp6Message:
        return Icmp6Message(TIME_EXCEEDED, self.code, 0, self.invoking)


@dataclass(frozen=True, slots=True)
class ParamProblem(_Typed):
    code: int
    pointer: int
    invoking: bytes

    def message(self) -> Icmp6Message:
        return Icmp6Message(PARAM_PROBLEM, self.code, self.pointer, self.invoking)


@dataclass(frozen=True, slots=True)
class RouterSolicitation(_Typed):
    options: tuple[NdOption, ...] = ()

    def message(self) -> Icmp6Message:
        return Icmp6Message(ROUTER_SOLICIT, 0, 0, emit_options(self.options))


@dataclass(frozen=True, slots=True)
class RouterAdvertisement(_Typed):
    cur_hop_limit: int = 0
    flags: int = 0
    router_lifetime: int = 0          # seconds; 0: not a default router
    reachable_time: int = 0           # milliseconds; 0: unspecified
    retrans_timer: int = 0            # milliseconds; 0: unspecified
    options: tuple[NdOption, ...] = ()

    def __post_init__(self) -> None:
        if not (0 <= self.cur_hop_limit <= 255 and 0 <= self.flags <= 255
                and 0 <= self.router_lifetime <= 0xFFFF and 0 <= self.reachable_time < 1 << 32
                and 0 <= self.retrans_timer < 1 << 32):
            raise FormatError("router advertisement field out of range")

    def message(self) -> Icmp6Message:
        rest = (self.cur_hop_limit << 24) | (self.flags << 16) | self.router_lifetime
        return Icmp6Message(ROUTER_ADVERT, 0, rest,
                            struct.pack("!II", self.reachable_time, self.retrans_timer)
                            + emit_options(self.options))


@dataclass(frozen=True, slots=True)
class NeighborSolicitation(_Typed):
    target: bytes
    options: tuple[NdOption, ...] = ()

    def message(self) -> Icmp6Message:
        return Icmp6Message(NEIGHBOR_SOLICIT, 0, 0, self.target + emit_options(self.options))


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement(_Typed):
    target: bytes
    flags: int = 0                    # NA_ROUTER | NA_SOLICITED | NA_OVERRIDE
    options: tuple[NdOption, ...] = ()

    @property
    def router(self) -> bool:
        return bool(self.flags & NA_ROUTER)

    @property
    def solicited(self) -> bool:
        return bool(self.flags & NA_SOLICITED)

    @property
    def override(self) -> bool:
        return bool(self.flags & NA_OVERRIDE)

    def message(self) -> Icmp6Message:
        return Icmp6Message(NEIGHBOR_ADVERT, 0, self.flags,
                            self.target + emit_options(self.options))


@dataclass(frozen=True, slots=True)
class Redirect(_Typed):
    target: bytes
    destination: bytes
    options: tuple[NdOption, ...] = ()

    def message(self) -> Icmp6Message:
        return Icmp6Message(REDIRECT, 0, 0,
                            self.target + self.destination + emit_options(self.options))


Typed = (Echo | DestUnreachable | PacketTooBig | TimeExceeded | ParamProblem
         | RouterSolicitation | RouterAdvertisement | NeighborSolicitation
         | NeighborAdvertisement | Redirect)
_ND_MIN_BODY = {ROUTER_SOLICIT: 0, ROUTER_ADVERT: 8, NEIGHBOR_SOLICIT: 16, NEIGHBOR_ADVERT: 16,
                REDIRECT: 32}


def decode(m: Icmp6Message) -> Typed | Icmp6Message:
    t, body = m.type, m.body
    if t in (ECHO_REQUEST, ECHO_REPLY):
        return Echo(t == ECHO_REQUEST, m.rest >> 16, m.rest & 0xFFFF, body)
    if t == DEST_UNREACH:
        return DestUnreachable(m.code, body)
    if t == PACKET_TOO_BIG:
        return PacketTooBig(m.rest, body)
    if t == TIME_EXCEEDED:
        return TimeExceeded(m.code, body)
    if t == PARAM_PROBLEM:
        return ParamProblem(m.code, m.rest, body)
    if t not in _ND_MIN_BODY:
        return m
    if m.code != 0 or len(body) < _ND_MIN_BODY[t]:
        raise FormatError(f"ND message type {t}: code {m.code}, {len(body)} bytes", "nd")
    return _decode_nd(m)


def _decode_nd(m: Icmp6Message) -> Typed:
    t, body = m.type, m.body
    if t == ROUTER_SOLICIT:
        return RouterSolicitation(parse_options(body))
    if t == ROUTER_ADVERT:
        reach, retrans = struct.unpack_from("!II", body)
        return RouterAdvertisement(m.rest >> 24, (m.rest >> 16) & 0xFF, m.rest & 0xFFFF, reach,
                                   retrans, parse_options(body[8:]))
    target = body[:16]
    if t != REDIRECT and is_multicast(target):
        raise FormatError("ND target is a multicast address", "nd")
    if t == NEIGHBOR_SOLICIT:
        return NeighborSolicitation(target, parse_options(body[16:]))
    if t == NEIGHBOR_ADVERT:
        return NeighborAdvertisement(target, m.rest, parse_options(body[16:]))
    if is_multicast(body[16:32]):
        raise FormatError("redirect destination is a multicast address", "nd")
    return Redirect(target, body[16:32], parse_options(body[32:]))
