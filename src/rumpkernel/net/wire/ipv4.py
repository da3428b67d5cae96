"""IPv4 datagrams (RFC 791), in two levels.

Interface:
    Ipv4Packet(src, dst, proto, payload, ttl=64, tos=0, ident=0, flags=0, frag_offset=0,
               options=b"")          immutable, validated repr; ``emit()`` -> bytes with the
                                     total length and header checksum filled in
    parse(buf, verify=True) -> Ipv4Packet
                                     FormatError with reason "short" / "version" / "length" /
                                     "checksum"; bytes past the total length (link padding) are
                                     dropped
    Ipv4View(buf)                    raw view: header fields without copying the payload
    header(src, dst, proto, length, ttl, tos, ident, flags, frag_offset, options) -> bytes
                                     the fast path used by ip_output
    FLAG_DF, FLAG_MF, HEADER_LEN, MAX_PACKET

Rules: ``flags`` is the 3-bit field (0x4 reserved, 0x2 DF, 0x1 MF); ``frag_offset`` is in
bytes and must be a multiple of 8; options are raw bytes, a multiple of 4, at most 40.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.checksum import internet_checksum

HEADER_LEN = 20
MAX_PACKET = 65535
FLAG_DF, FLAG_MF = 0x2, 0x1
_HDR = struct.Struct("!BBHHHBBH4s4s")


@dataclass(frozen=True, slots=True)
class Ipv4Packet:
    src: bytes
    dst: bytes
    proto: int
    payload: bytes = b""
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    flags: int = 0
    frag_offset: int = 0
    options: bytes = b""

    def __post_init__(self) -> None:
        if len(self.src) != 4 or len(self.dst) != 4:
            raise FormatError("IPv4 addresses are 4 bytes")
        for name, v, hi in (("proto", self.proto, 255), ("ttl", self.ttl, 255),
                            ("tos", self.tos, 255), ("ident", self.ident, 0xFFFF),
                            ("flags", self.flags, 7)):
            if not 0 <= v <= hi:
                raise FormatError(f"IPv4 {name} {v} out of range")
        if not 0 <= self.frag_offset <= 0x1FFF * 8 or self.frag_offset % 8:
            raise FormatError(f"IPv4 fragment offset {self.frag_offset}")
        if len(self.options) % 4 or len(self.options) > 40:
            raise FormatError("IPv4 options must be a multiple of 4 bytes, at most 40")
        if HEADER_LEN + len(self.options) + len(self.payload) > MAX_PACKET:
            raise FormatError("IPv4 datagram longer than 65535 bytes", "length")

    @property
    def header_len(self) -> int:
        return HEADER_LEN + len(self.options)

    def emit(self) -> bytes:
        return header(self.src, self.dst, self.proto, len(self.payload), self.ttl, self.tos,
                      self.ident, self.flags, self.frag_offset, self.options) + self.payload


def header(src: bytes, dst: bytes, proto: int, length: int, ttl: int = 64, tos: int = 0,
           ident: int = 0, flags: int = 0, frag_offset: int = 0, options: bytes = b"") -> bytes:
    """A header with checksum for ``length`` payload bytes."""
    hl = HEADER_LEN + len(options)
    raw = _HDR.pack(0x40 | (hl >> 2), tos, hl + length, ident,
                    (flags << 13) | (frag_offset >> 3), ttl, proto, 0, src, dst) + options
    c = internet_checksum(raw)
    return raw[:10] + bytes((c >> 8, c & 0xFF)) + raw[12:]


def parse(buf: bytes | bytearray | memoryview, verify: bool = True) -> Ipv4Packet:
    v = Ipv4View(buf, verify)
    b = v.buf
    return Ipv4Packet(bytes(b[12:16]), bytes(b[16:20]), b[9], bytes(b[v.hlen : v.total]),
                      b[8], b[1], v.ident, v.flags, v.frag_offset, bytes(b[20 : v.hlen]))


class Ipv4View:
    """Checked header fields over received bytes.  ``hlen`` and ``total`` are validated;
    ``payload`` is a memoryview of exactly the datagram's payload."""

    __slots__ = ("buf", "hlen", "total")

    def __init__(self, buf: bytes | bytearray | memoryview, verify: bool = True) -> None:
        n = len(buf)
        if n < HEADER_LEN:
            raise FormatError(f"IPv4 datagram of {n} bytes", "short")
        b = memoryview(buf)
        vihl = b[0]
        if vihl >> 4 != 4:
            raise FormatError(f"IP version {vihl >> 4}", "version")
        hlen = (vihl & 0xF) * 4
        total = (b[2] << 8) | b[3]
        if hlen < HEADER_LEN or total < hlen:
            raise FormatError(f"IPv4 header length {hlen}, total {total}", "length")
        if total > n:
            raise FormatError(f"IPv4 datagram of {total} bytes truncated to {n}", "short")
        if verify and internet_checksum(b[:hlen]) != 0:
            raise FormatError("IPv4 header checksum", "checksum")
        self.buf = b
        self.hlen = hlen
        self.total = total

    @property
    def tos(self) -> int:
        return self.buf[1]

    @property
    def ident(self) -> int:
        return (self.buf[4] << 8) | self.buf[5]

    @property
    def flags(self) -> int:
        return self.buf[6] >> 5

    @property
    def frag_offset(self) -> int:
        return (((self.buf[6] & 0x1F) << 8) | self.buf[7]) * 8

    @property
    def ttl(self) -> int:
        return self.buf[8]

    @property
    def proto(self) -> int:
        return self.buf[9]

    @property
    def src(self) -> bytes:
        return bytes(self.buf[12:16])

    @property
    def dst(self) -> bytes:
        return bytes(self.buf[16:20])

    @property
    def options(self) -> bytes:
        return bytes(self.buf[HEADER_LEN : self.hlen])

    @property
    def payload(self) -> memoryview:
        return self.buf[self.hlen : self.total]
