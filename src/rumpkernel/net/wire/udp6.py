"""UDP over IPv6 (RFC 768 with RFC 8200 8.1): the same datagram as udp.py, but the checksum
covers the IPv6 pseudo-header and is mandatory.

Interface:
    emit(sport, dport, payload, src, dst) -> bytes     checksum filled in (0 is sent as 0xffff)
    parse(buf, src, dst) -> udp.UdpDatagram            FormatError "short" / "length" /
                                                       "checksum" (a zero checksum included:
                                                       IPv6 receivers must drop it)
"""

from __future__ import annotations

from rumpkernel.net.wire import udp
from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.ipv6 import NH_UDP, checksum


def emit(sport: int, dport: int, payload: bytes, src: bytes, dst: bytes) -> bytes:
    raw = udp.emit_raw(sport, dport, payload)
    c = checksum(src, dst, NH_UDP, raw) or 0xFFFF
    return raw[:6] + bytes((c >> 8, c & 0xFF)) + raw[8:]


def parse(buf: bytes | bytearray | memoryview, src: bytes, dst: bytes) -> udp.UdpDatagram:
    d = udp.parse(buf)                       # lengths checked, no IPv4 checksum
    n = udp.HEADER_LEN + len(d.payload)
    if buf[6:8] == b"\0\0" or checksum(src, dst, NH_UDP, bytes(buf[:n])) != 0:
        raise FormatError("UDP/IPv6 checksum", "checksum")
    return d
