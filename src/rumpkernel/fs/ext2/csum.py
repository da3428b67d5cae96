"""Checksums and hashes of the ext family: crc32c and crc16 for metadata, the directory-index
name hashes (legacy, half-MD4, TEA; signed and unsigned char variants) and the extended
attribute entry/block hashes.

Interface:
    ext_crc32c(seed, data) -> int   -- the kernel's raw crc32c (no pre/post inversion), chainable:
                                       ext_crc32c(ext_crc32c(s, a), b) == ext_crc32c(s, a + b).
    crc16(crc, data) -> int         -- CRC-16/ANSI (reflected 0xA001) used by ``gdt_csum``.
    dx_hash(name, version, seed, unsigned) -> (major, minor)
    xattr_entry_hash(name, value_or_None) / xattr_block_hash(entry_hashes)

Rules: pure functions over bytes; 32-bit arithmetic everywhere.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from rumpkernel.kern.crc32c import crc32c as _crc32c

M32 = 0xFFFFFFFF


def ext_crc32c(seed: int, data: bytes | bytearray | memoryview) -> int:
    return (~_crc32c(data, (~seed) & M32)) & M32


def _crc16_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC16 = _crc16_table()


def crc16(crc: int, data: bytes | bytearray | memoryview) -> int:
    table = _CRC16
    for b in bytes(data):
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc & 0xFFFF


# -- directory index hashes ---------------------------------------------------------------------
DX_LEGACY, DX_HALF_MD4, DX_TEA = 0, 1, 2
DX_HASH_VERSIONS = (DX_LEGACY, DX_HALF_MD4, DX_TEA)
_EOF_32 = 0x7FFFFFFF


def _chars(name: bytes, unsigned: bool) -> list[int]:
    if unsigned:
        return list(name)
    return [c - 256 if c >= 128 else c for c in name]


def _legacy(chars: list[int]) -> int:
    h0, h1 = 0x12A3FE2D, 0x37ABE8F9
    for c in chars:
        h = (h1 + (h0 ^ ((c * 7152373) & M32))) & M32
        if h & 0x80000000:
            h = (h - 0x7FFFFFFF) & M32
        h1, h0 = h0, h
    return (h0 << 1) & M32


def _str2hashbuf(chars: list[int], num: int) -> list[int]:
    length = len(chars)
    pad = (length | (length << 8)) & M32
    pad = (pad | (pad << 16)) & M32
    val = pad
    out: list[int] = []
    for i, c in enumerate(chars[: num * 4]):
        val = (c + (val << 8)) & M32
        if i % 4 == 3:
            out.append(val)
            val = pad
    if len(out) < num:
        out.append(val)
    while len(out) < num:
        out.append(pad)
    return out


_K2, _K3 = 0x5A827999, 0x6ED9EBA1
_R1 = tuple(zip((0, 1, 2, 3, 4, 5, 6, 7), (3, 7, 11, 19) * 2))
_R2 = tuple(zip((1, 3, 5, 7, 0, 2, 4, 6), (3, 5, 9, 13) * 2))
_R3 = tuple(zip((3, 7, 2, 6, 1, 5, 0, 4), (3, 9, 11, 15) * 2))


def _half_md4(buf: list[int], inp: list[int]) -> None:
    """Linux's half_md4_transform: three rounds of eight steps (rotations inlined: this runs
    for every name inserted into or looked up in an indexed directory)."""
    a, b, c, d = buf
    for idx, sh in _R1:
        x = (a + (d ^ (b & (c ^ d))) + inp[idx]) & M32
        a, b, c, d = d, ((x << sh) | (x >> (32 - sh))) & M32, b, c
    for idx, sh in _R2:
        x = (a + (((b & c) + ((b ^ c) & d)) & M32) + inp[idx] + _K2) & M32
        a, b, c, d = d, ((x << sh) | (x >> (32 - sh))) & M32, b, c
    for idx, sh in _R3:
        x = (a + (b ^ c ^ d) + inp[idx] + _K3) & M32
        a, b, c, d = d, ((x << sh) | (x >> (32 - sh))) & M32, b, c
    buf[0] = (buf[0] + a) & M32
    buf[1] = (buf[1] + b) & M32
    buf[2] = (buf[2] + c) & M32
    buf[3] = (buf[3] + d) & M32


def _tea(buf: list[int], inp: list[int]) -> None:
    s, b0, b1 = 0, buf[0], buf[1]
    a, b, c, d = inp
    for _ in range(16):
        s = (s + 0x9E3779B9) & M32
        b0 = (b0 + ((((b1 << 4) + a) & M32) ^ ((b1 + s) & M32) ^ (((b1 >> 5) + b) & M32))) & M32
        b1 = (b1 + ((((b0 << 4) + c) & M32) ^ ((b0 + s) & M32) ^ (((b0 >> 5) + d) & M32))) & M32
    buf[0] = (buf[0] + b0) & M32
    buf[1] = (buf[1] + b1) & M32


@lru_cache(maxsize=2048)
def dx_hash(name: bytes, version: int, seed: tuple[int, int, int, int] | None,
            unsigned: bool) -> tuple[int, int]:
    """(major, minor) hash of a directory entry name for the htree index (memoised: a create
    hashes the same name for its lookup and for its insert)."""
    chars = _chars(name, unsigned)
    buf = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    if seed is not None and any(seed):
        buf = list(seed)
    if version == DX_LEGACY:
        major, minor = _legacy(chars), 0
    elif version == DX_HALF_MD4:
        for pos in range(0, max(len(chars), 1), 32):
            _half_md4(buf, _str2hashbuf(chars[pos:], 8))
        major, minor = buf[1], buf[2]
    else:
        for pos in range(0, max(len(chars), 1), 16):
            _tea(buf, _str2hashbuf(chars[pos:], 4))
        major, minor = buf[0], buf[1]
    major &= ~1 & M32
    if major == (_EOF_32 << 1):
        major = (_EOF_32 - 1) << 1
    return major, minor


# -- extended attribute hashes ------------------------------------------------------------------
def xattr_entry_hash(name: bytes, value: bytes | None) -> int:
    """Hash of one attribute entry (``value`` None for values kept outside the entry)."""
    h = 0
    for c in name:
        h = ((h << 5) & M32) ^ (h >> 27) ^ c
    if value:
        padded = value + bytes(-len(value) % 4)
        for (w,) in struct.iter_unpack("<I", padded):
            h = ((h << 16) & M32) ^ (h >> 16) ^ w
    return h


def xattr_block_hash(entry_hashes: list[int]) -> int:
    h = 0
    for eh in entry_hashes:
        if not eh:
            return 0
        h = ((h << 16) & M32) ^ (h >> 16) ^ eh
    return h
