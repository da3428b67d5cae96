"""TCP segmentation offload in software (Linux's GSO) and the virtio-net header.

A *super-segment* is an IPv4 or IPv6 TCP datagram longer than the link MTU that TCP handed
down whole (TSO): its TCP checksum field holds only the folded pseudo-header sum (Linux's
CHECKSUM_PARTIAL convention, with the datagram's full length), and it is cut into pieces of
``mss`` payload bytes either by the device (virtio-net GSO on a TAP) or by ``tcp_segment``
here.  Each piece gets the original headers with its own sequence number, IPv4 length,
identification and header checksum, and a complete TCP checksum; FIN and PSH stay on the last
piece only, CWR on the first.

Interface:
    partial_checksum(pseudo) -> int         the value TCP writes in the checksum field of a
                                            super-segment (``pseudo``: unfolded pseudo sum)
    complete_checksum(frame, start, offset) -> bytes   finish a NEEDS_CSUM frame in software
    tcp_segment(pkt, mss) -> list[bytes]    software GSO of one IPv4/IPv6 TCP datagram
                                            (FormatError for anything else)
    gso_size_for(pkt, mtu) -> int           the piece size for a datagram on a link of ``mtu``
    VnetHdr / vnet_parse(buf) / vnet_emit(...)   struct virtio_net_hdr (10 bytes, little
                                            endian): flags, gso_type, hdr_len, gso_size,
                                            csum_start, csum_offset
    F_NEEDS_CSUM, F_DATA_VALID, GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_ECN

Rules: the piece size is the link MTU less the datagram's IP and TCP headers (TCP only builds
super-segments when the peer's MSS is at least the link's, so this is its MSS less options);
hostile lengths give FormatError, never an IndexError.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.checksum import internet_checksum, ones_complement_sum

F_NEEDS_CSUM, F_DATA_VALID = 1, 2
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_ECN = 0, 1, 3, 4, 0x80
VNET_HDR_LEN = 10
_VNET = struct.Struct("<BBHHHH")
_IPPROTO_TCP = 6
_FIN, _PSH, _CWR = 0x01, 0x08, 0x80


class VnetHdr(NamedTuple):
    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int
    csum_offset: int


def vnet_parse(buf: bytes | memoryview) -> VnetHdr:
    if len(buf) < VNET_HDR_LEN:
        raise FormatError("virtio-net header too short", "short")
    return VnetHdr(*_VNET.unpack_from(buf, 0))


def vnet_emit(flags: int = 0, gso_type: int = GSO_NONE, hdr_len: int = 0, gso_size: int = 0,
              csum_start: int = 0, csum_offset: int = 0) -> bytes:
    return _VNET.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


VNET_NONE = vnet_emit()


def partial_checksum(pseudo: int) -> int:
    """The folded, uncomplemented pseudo-header sum a device completes (CHECKSUM_PARTIAL)."""
    return ones_complement_sum(b"", pseudo)


def complete_checksum(frame: bytes, csum_start: int, csum_offset: int) -> bytes:
    """``frame`` with the partial checksum at ``csum_start + csum_offset`` completed over
    ``frame[csum_start:]`` (what a device does for NEEDS_CSUM); FormatError when out of it."""
    at = csum_start + csum_offset
    if csum_start < 0 or at + 2 > len(frame):
        raise FormatError(f"checksum at {csum_start}+{csum_offset} outside the frame", "field")
    c = internet_checksum(memoryview(frame)[csum_start:])
    return b"".join((frame[:at], c.to_bytes(2, "big"), frame[at + 2:]))


def _headers(pkt: bytes | memoryview) -> tuple[int, int, int]:
    """(ip header length, tcp header length, version) of a TCP datagram; FormatError else."""
    n = len(pkt)
    if n < 1:
        raise FormatError("empty datagram", "short")
    version = pkt[0] >> 4
    if version == 4:
        if n < 20 or pkt[9] != _IPPROTO_TCP:
            raise FormatError("not an IPv4 TCP datagram", "field")
        ihl = (pkt[0] & 0xF) * 4
    elif version == 6:
        if n < 40 or pkt[6] != _IPPROTO_TCP:
            raise FormatError("not an IPv6 TCP datagram (extension headers unsupported)",
                              "field")
        ihl = 40
    else:
        raise FormatError(f"IP version {version}", "version")
    if ihl < 20 or n < ihl + 20:
        raise FormatError("datagram shorter than its headers", "short")
    thl = (pkt[ihl + 12] >> 4) * 4
    if thl < 20 or n < ihl + thl:
        raise FormatError("TCP header outside the datagram", "short")
    return ihl, thl, version


def gso_size_for(pkt: bytes | memoryview, mtu: int) -> int:
    ihl, thl, _ = _headers(pkt)
    size = mtu - ihl - thl
    if size < 1:
        raise FormatError(f"MTU {mtu} leaves no room for TCP data", "length")
    return size


def tcp_segment(pkt: bytes | memoryview, mss: int) -> list[bytes]:
    """Cut super-segment ``pkt`` (an IP datagram) into datagrams of at most ``mss`` TCP
    payload bytes, each with complete IP and TCP checksums."""
    ihl, thl, version = _headers(pkt)
    if mss < 1:
        raise FormatError("GSO size 0", "field")
    hdrs = ihl + thl
    view = memoryview(pkt)
    payload = view[hdrs:]
    total = len(payload)
    if version == 4:
        src, dst = bytes(view[12:16]), bytes(view[16:20])
        addr = (int.from_bytes(src + dst, "big") % 0xFFFF) + _IPPROTO_TCP
        ident = int.from_bytes(view[4:6], "big")
    else:
        src, dst = bytes(view[8:24]), bytes(view[24:40])
        addr = (int.from_bytes(src + dst, "big") % 0xFFFF) + _IPPROTO_TCP
        ident = 0
    iph = bytearray(view[:ihl])
    th = bytearray(view[ihl:hdrs])
    seq0 = int.from_bytes(th[4:8], "big")
    flags0 = th[13]
    out: list[bytes] = []
    off = 0
    i = 0
    while True:
        chunk = payload[off:off + mss]
        n = len(chunk)
        last = off + n >= total
        f = flags0 if last else flags0 & ~(_FIN | _PSH)
        if i:
            f &= ~_CWR
        th[4:8] = ((seq0 + off) & 0xFFFFFFFF).to_bytes(4, "big")
        th[13] = f
        th[16:18] = b"\0\0"
        tlen = thl + n
        c = internet_checksum(chunk, ones_complement_sum(th, addr + (tlen >> 16) + (tlen & 0xFFFF)))
        th[16:18] = c.to_bytes(2, "big")
        if version == 4:
            iph[2:4] = (ihl + tlen).to_bytes(2, "big")
            iph[4:6] = ((ident + i) & 0xFFFF).to_bytes(2, "big")
            iph[10:12] = b"\0\0"
            iph[10:12] = internet_checksum(iph).to_bytes(2, "big")
        else:
            iph[4:6] = tlen.to_bytes(2, "big")
        out.append(b"".join((iph, th, chunk)))
        off += n
        i += 1
        if last:
            return out
