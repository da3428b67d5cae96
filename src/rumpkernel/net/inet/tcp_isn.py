"""Initial sequence numbers (RFC 6528), timestamp offsets and SYN cookies.

Interface:
    IsnGenerator(secret)                  -- ``secret``: 16..64 random bytes from the caller.
        .isn(laddr, lport, raddr, rport, now) -> 32-bit ISN = 4 us clock + keyed hash of the
                                              4-tuple (RFC 6528 3)
        .ts_offset(laddr, lport, raddr, rport) -> 32-bit per-connection timestamp offset
        .cookie(laddr, lport, raddr, rport, client_isn, mss, now) -> (our ISN, mss used)
        .check_cookie(laddr, lport, raddr, rport, client_isn, cookie, now) -> mss or None
    encode_ts_options(tsval, wscale, sack_ok) / decode_ts_options(tsecr)
                                           -- SYN-cookie option state kept in the low 5 bits of
                                              our SYN-ACK's TSval (bit 4 SACK, bits 0-3 wscale,
                                              15 = no window scaling), as Linux does.

Cookie layout (D. J. Bernstein's): bits 31-27 a 64-second counter mod 32, bits 26-24 an index
into MSS_TABLE, bits 23-0 a keyed hash of the 4-tuple, the counter and the client's ISN.  A
cookie is good for two counter ticks (64..128 s).  hashlib is pure computation, not host access.
"""

from __future__ import annotations

import hashlib
import struct

MASK = 0xFFFFFFFF
MSS_TABLE = (536, 1220, 1300, 1360, 1400, 1440, 1460, 8960)
COOKIE_TICK = 64.0
COOKIE_MAX_AGE = 2
_HH = struct.Struct("!HH")
_IB = struct.Struct("!IB")


class IsnGenerator:
    __slots__ = ("key",)

    def __init__(self, secret: bytes) -> None:
        if not 16 <= len(secret) <= 64:
            raise ValueError("ISN secret must be 16..64 bytes")
        self.key = bytes(secret[:32]) if len(secret) > 32 else bytes(secret)

    def _hash(self, laddr: bytes, lport: int, raddr: bytes, rport: int,
              extra: bytes = b"") -> bytes:
        data = laddr + _HH.pack(lport, rport) + raddr + extra
        return hashlib.blake2s(data, key=self.key, digest_size=8).digest()

    def isn(self, laddr: bytes, lport: int, raddr: bytes, rport: int, now: float) -> int:
        f = int.from_bytes(self._hash(laddr, lport, raddr, rport)[:4], "big")
        return (int(now * 250_000) + f) & MASK

    def ts_offset(self, laddr: bytes, lport: int, raddr: bytes, rport: int) -> int:
        return int.from_bytes(self._hash(laddr, lport, raddr, rport)[4:], "big")

    def _cookie_hash(self, laddr, lport, raddr, rport, client_isn: int, count: int) -> int:
        h = self._hash(laddr, lport, raddr, rport, _IB.pack(client_isn, count) + b"cookie")
        return int.from_bytes(h[:3], "big")

    def cookie(self, laddr: bytes, lport: int, raddr: bytes, rport: int, client_isn: int,
               mss: int, now: float) -> tuple[int, int]:
        idx = max((i for i, m in enumerate(MSS_TABLE) if m <= mss), default=0)
        count = int(now // COOKIE_TICK) & 0x1F
        h = self._cookie_hash(laddr, lport, raddr, rport, client_isn, count)
        return (count << 27) | (idx << 24) | h, MSS_TABLE[idx]

    def check_cookie(self, laddr: bytes, lport: int, raddr: bytes, rport: int,
                     client_isn: int, cookie: int, now: float) -> int | None:
        count = cookie >> 27
        age = (int(now // COOKIE_TICK) - count) & 0x1F
        if age > COOKIE_MAX_AGE:
            return None
        if self._cookie_hash(laddr, lport, raddr, rport, client_isn, count) != cookie & 0xFFFFFF:
            return None
        return MSS_TABLE[(cookie >> 24) & 7]


def encode_ts_options(tsval: int, wscale: int | None, sack_ok: bool) -> int:
    bits = (0x0F if wscale is None else min(wscale, 14)) | (0x10 if sack_ok else 0)
    v = (tsval & ~0x1F & MASK) | bits
    if ((v - tsval) & MASK) < 0x80000000 and v != tsval:  # never ahead of our clock
        v = (v - 0x20) & MASK
    return v


def decode_ts_options(tsecr: int) -> tuple[int | None, bool]:
    ws = tsecr & 0x0F
    return (None if ws == 0x0F else ws), bool(tsecr & 0x10)
