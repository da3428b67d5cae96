"""UDP datagrams (RFC 768), in two levels.

Interface:
    UdpDatagram(sport, dport, payload)      immutable repr
    emit(d, src=None, dst=None) -> bytes    with IPv4 addresses the checksum is computed
                                            (0 becomes 0xffff); without them it is 0 ("none")
    parse(buf, src=None, dst=None) -> UdpDatagram
                                            FormatError("short" | "length" | "checksum"); the
                                            checksum is verified when addresses are given and
                                            the field is not 0; bytes past the length field
                                            are dropped
    HEADER_LEN, MAX_PAYLOAD
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.checksum import internet_checksum, pseudo_header_sum_v4

HEADER_LEN = 8
IPPROTO_UDP = 17
MAX_PAYLOAD = 65535 - 20 - HEADER_LEN
_HDR = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    sport: int
    dport: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.sport <= 0xFFFF and 0 <= self.dport <= 0xFFFF):
            raise FormatError("UDP port out of range")
        if len(self.payload) > 0xFFFF - HEADER_LEN:
            raise FormatError("UDP payload too long", "length")


def emit(d: UdpDatagram, src: bytes | None = None, dst: bytes | None = None) -> bytes:
    return emit_raw(d.sport, d.dport, d.payload, src, dst)


def emit_raw(sport: int, dport: int, payload: bytes, src: bytes | None = None,
             dst: bytes | None = None) -> bytes:
    n = HEADER_LEN + len(payload)
    raw = _HDR.pack(sport, dport, n, 0) + payload
    if src is None or dst is None:
        return raw
    c = internet_checksum(raw, pseudo_header_sum_v4(src, dst, IPPROTO_UDP, n)) or 0xFFFF
    return raw[:6] + bytes((c >> 8, c & 0xFF)) + raw[8:]


def parse(buf: bytes | bytearray | memoryview, src: bytes | None = None,
          dst: bytes | None = None) -> UdpDatagram:
    n = len(buf)
    if n < HEADER_LEN:
        raise FormatError(f"UDP datagram of {n} bytes", "short")
    sport, dport, length, csum = _HDR.unpack_from(buf)
    if length < HEADER_LEN or length > n:
        raise FormatError(f"UDP length {length} in {n} bytes", "length")
    if csum and src is not None and dst is not None:
        if internet_checksum(buf[:length], pseudo_header_sum_v4(src, dst, IPPROTO_UDP,
                                                                length)) != 0:
            raise FormatError("UDP checksum", "checksum")
    return UdpDatagram(sport, dport, bytes(buf[HEADER_LEN:length]))
