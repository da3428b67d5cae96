"""ARP for IPv4 over Ethernet (RFC 826), in two levels.

Interface:
    ArpPacket(op, sha, spa, tha, tpa)     immutable repr; ``emit()`` -> 28 bytes
    parse(buf) -> ArpPacket               FormatError("short" | "field") -- hardware type 1,
                                          protocol 0x0800, lengths 6 and 4 only
    OP_REQUEST, OP_REPLY, LENGTH

Trailing bytes (Ethernet padding) are ignored, so parse(emit(x)) == x.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rumpkernel.net.wire.base import FormatError

OP_REQUEST, OP_REPLY = 1, 2
LENGTH = 28
_HDR = struct.Struct("!HHBBH6s4s6s4s")


@dataclass(frozen=True, slots=True)
class ArpPacket:
    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.op <= 0xFFFF:
            raise FormatError("ARP opcode out of range")
        if len(self.sha) != 6 or len(self.tha) != 6 or len(self.spa) != 4 or len(self.tpa) != 4:
            raise FormatError("ARP addresses: 6-byte hardware, 4-byte protocol")

    def emit(self) -> bytes:
        return _HDR.pack(1, 0x0800, 6, 4, self.op, self.sha, self.spa, self.tha, self.tpa)


def parse(buf: bytes | bytearray | memoryview) -> ArpPacket:
    if len(buf) < LENGTH:
        raise FormatError(f"ARP packet of {len(buf)} bytes", "short")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _HDR.unpack_from(buf)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        raise FormatError(f"ARP for hardware {htype}/protocol 0x{ptype:04x}", "field")
    return ArpPacket(op, sha, spa, tha, tpa)
