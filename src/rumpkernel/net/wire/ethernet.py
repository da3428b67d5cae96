"""Ethernet II frames (IEEE 802.3 with an EtherType), in two levels (DESIGN rule 8).

Interface:
    EthernetFrame(dst, src, ethertype, payload)   immutable repr; ``emit()`` -> bytes
    parse(buf) -> EthernetFrame                   FormatError("short") below 14 bytes
    EthernetView(buf)                             raw view: dst, src, ethertype, payload (a
                                                  memoryview); lengths checked on creation
    BROADCAST, ETHERTYPE_IP, ETHERTYPE_ARP, ETHERTYPE_IPV6, HEADER_LEN, MIN_FRAME, MAX_FRAME

Rules: frames are kept exactly as given: a short payload is padded to the 60-byte minimum by
``pad()``, not by ``emit``, so parse(emit(x)) == x; the FCS is not part of the frame (no host
interface hands it over).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rumpkernel.net.wire.base import FormatError

HEADER_LEN = 14
MIN_FRAME = 60            # without the FCS
MAX_FRAME = 1514          # MTU 1500 + header
ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100
BROADCAST = b"\xff" * 6
_HDR = struct.Struct("!6s6sH")


@dataclass(frozen=True, slots=True)
class EthernetFrame:
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if len(self.dst) != 6 or len(self.src) != 6:
            raise FormatError("Ethernet addresses are 6 bytes")
        if not 0 <= self.ethertype <= 0xFFFF:
            raise FormatError("EtherType out of range")

    def emit(self) -> bytes:
        return _HDR.pack(self.dst, self.src, self.ethertype) + self.payload


def emit(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    """The fast path: a frame's bytes without building the record."""
    return _HDR.pack(dst, src, ethertype) + payload


def pad(frame: bytes) -> bytes:
    """``frame`` padded with zeros to the 60-byte minimum an Ethernet needs."""
    n = len(frame)
    return frame if n >= MIN_FRAME else frame + bytes(MIN_FRAME - n)


def parse(buf: bytes | bytearray | memoryview) -> EthernetFrame:
    if len(buf) < HEADER_LEN:
        raise FormatError(f"Ethernet frame of {len(buf)} bytes", "short")
    dst, src, et = _HDR.unpack_from(buf)
    return EthernetFrame(dst, src, et, bytes(buf[HEADER_LEN:]))


class EthernetView:
    """Field access over received bytes without copying them."""

    __slots__ = ("buf",)

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        if len(buf) < HEADER_LEN:
            raise FormatError(f"Ethernet frame of {len(buf)} bytes", "short")
        self.buf = memoryview(buf)

    @property
    def dst(self) -> bytes:
        return bytes(self.buf[0:6])

    @property
    def src(self) -> bytes:
        return bytes(self.buf[6:12])

    @property
    def ethertype(self) -> int:
        return (self.buf[12] << 8) | self.buf[13]

    @property
    def payload(self) -> memoryview:
        return self.buf[HEADER_LEN:]


def is_multicast(addr: bytes) -> bool:
    """True for group addresses (broadcast included): the I/G bit."""
    return bool(addr[0] & 1)
