"""The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-header sums TCP and UDP add to it.

Interface (stable: IPv4, ICMP, UDP and TCP all use it):
    ones_complement_sum(data, initial=0) -> int  -- 16-bit one's complement sum of ``data`` (odd
                                                    length padded with a zero byte) plus
                                                    ``initial`` (a partial sum); 0..0xffff, and 0
                                                    only when everything summed was zero.
    internet_checksum(data, initial=0) -> int    -- the value for the checksum field: the
                                                    complement of ones_complement_sum.  A received
                                                    packet (checksum field included) is intact when
                                                    this returns 0.
    pseudo_header_sum_v4(src, dst, proto, length) -> int
    pseudo_header_sum_v6(src, dst, next_header, length) -> int
                                                 -- partial sums to pass as ``initial``; ``src`` and
                                                    ``dst`` are 4 (or 16) address bytes, ``length``
                                                    the upper-layer length in bytes.

Method: a big-endian integer of the whole buffer is congruent modulo 0xffff to the sum of its
16-bit words (2**16 == 1 mod 0xffff), and Python's bignum ``%`` runs in C, so
``int.from_bytes(data, 'big') % 0xffff`` is the one's complement sum except that a non-zero sum
that is a multiple of 0xffff comes out 0 instead of 0xffff (fixed below).  benchmarks/
bench_tcp_engine.py measures it against array/struct/memoryview word sums (about 4-10x faster).
"""

from __future__ import annotations

_from_bytes = int.from_bytes


def ones_complement_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """One's complement 16-bit sum of ``data`` (big-endian words) and ``initial``."""
    n = _from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    n += initial
    s = n % 0xFFFF
    if s == 0 and n:
        return 0xFFFF
    return s


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Checksum field value for ``data`` with partial sum ``initial`` (RFC 1071)."""
    n = _from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    n += initial
    s = n % 0xFFFF
    if s == 0 and n:
        return 0
    return 0xFFFF - s


def pseudo_header_sum_v4(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Partial sum of the IPv4 pseudo-header (RFC 9293 3.1): src, dst, zero, protocol, length."""
    if len(src) != 4 or len(dst) != 4:
        raise ValueError("IPv4 pseudo-header needs 4-byte addresses")
    n = (_from_bytes(src, "big") + _from_bytes(dst, "big")) % 0xFFFF
    return ones_complement_sum(b"", n + proto + length)


def pseudo_header_sum_v6(src: bytes, dst: bytes, next_header: int, length: int) -> int:
    """Partial sum of the IPv6 pseudo-header (RFC 8200 8.1): src, dst, 32-bit length, zero,
    next header."""
    if len(src) != 16 or len(dst) != 16:
        raise ValueError("IPv6 pseudo-header needs 16-byte addresses")
    n = (_from_bytes(src, "big") + _from_bytes(dst, "big")) % 0xFFFF
    return ones_complement_sum(b"", n + (length >> 16) + (length & 0xFFFF) + next_header)
