"""ICMP for IPv4 (RFC 792), in two levels.

Interface:
    IcmpMessage(type, code, rest=0, payload=b"")   immutable repr; ``rest`` is the 32-bit
                                     "rest of header" word (echo: ident << 16 | seq; frag
                                     needed: next-hop MTU in the low 16 bits); ``emit()`` fills
                                     in the checksum
    echo(type, ident, seq, payload) -> IcmpMessage; ``.ident`` / ``.seq`` read them back
    parse(buf, verify=True) -> IcmpMessage     FormatError("short" | "checksum")
    ECHO_REPLY, UNREACH, SOURCE_QUENCH, REDIRECT, ECHO, TIME_EXCEEDED, PARAM_PROB, ...
    UNREACH_NET, UNREACH_HOST, UNREACH_PROTOCOL, UNREACH_PORT, UNREACH_NEEDFRAG, ...
    is_error(type) -> bool          error messages (which never answer other errors)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.checksum import internet_checksum

HEADER_LEN = 8
ECHO_REPLY, UNREACH, SOURCE_QUENCH, REDIRECT, ECHO = 0, 3, 4, 5, 8
TIME_EXCEEDED, PARAM_PROB, TIMESTAMP, TIMESTAMP_REPLY = 11, 12, 13, 14
UNREACH_NET, UNREACH_HOST, UNREACH_PROTOCOL, UNREACH_PORT = 0, 1, 2, 3
UNREACH_NEEDFRAG, UNREACH_SRCFAIL, UNREACH_FILTER_PROHIB = 4, 5, 13
TIMXCEED_INTRANS, TIMXCEED_REASS = 0, 1
_ERRORS = frozenset({UNREACH, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED, PARAM_PROB})
_HDR = struct.Struct("!BBHI")


def is_error(icmp_type: int) -> bool:
    return icmp_type in _ERRORS


@dataclass(frozen=True, slots=True)
class IcmpMessage:
    type: int
    code: int
    rest: int = 0
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.type <= 255 and 0 <= self.code <= 255 and 0 <= self.rest < 1 << 32):
            raise FormatError("ICMP field out of range")

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF

    def emit(self) -> bytes:
        return emit(self.type, self.code, self.rest, self.payload)


def emit(icmp_type: int, code: int, rest: int, payload: bytes) -> bytes:
    raw = _HDR.pack(icmp_type, code, 0, rest) + payload
    c = internet_checksum(raw)
    return raw[:2] + bytes((c >> 8, c & 0xFF)) + raw[4:]


def echo(icmp_type: int, ident: int, seq: int, payload: bytes = b"") -> IcmpMessage:
    return IcmpMessage(icmp_type, 0, ((ident & 0xFFFF) << 16) | (seq & 0xFFFF), payload)


def parse(buf: bytes | bytearray | memoryview, verify: bool = True) -> IcmpMessage:
    if len(buf) < HEADER_LEN:
        raise FormatError(f"ICMP message of {len(buf)} bytes", "short")
    if verify and internet_checksum(buf) != 0:
        raise FormatError("ICMP checksum", "checksum")
    t, c, _sum, rest = _HDR.unpack_from(buf)
    return IcmpMessage(t, c, rest, bytes(buf[HEADER_LEN:]))
