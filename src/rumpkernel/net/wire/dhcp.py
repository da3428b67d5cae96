"""DHCPv4 messages (RFC 2131) and options (RFC 2132, long options RFC 3396), in two levels.

Interface:
    DhcpMessage(op, xid, chaddr, options=(), ciaddr=0.0.0.0, yiaddr=.., siaddr=.., giaddr=..,
                flags=0, secs=0, hops=0, htype=1, hlen=6, sname=b"", file=b"")
                            immutable repr; ``chaddr`` is the 16-byte field (hardware address
                            first, ``hlen`` bytes of it meaningful); ``options`` a tuple of
                            (code, bytes) with distinct codes, neither pad (0) nor end (255)
        .emit() -> bytes    BOOTP header, magic cookie, options (longer than 255 bytes split
                            over several instances), end, padded to the 300-byte minimum
        .option(code) -> bytes | None;  .msg_type -> int | None;  .hwaddr -> bytes
        .addr(code) -> 4 bytes | None;  .addrs(code) -> (4 bytes, ...);  .u32(code) -> int | None
    parse(buf) -> DhcpMessage       FormatError "short" / "cookie" / "field" / "option";
                                    repeated options are concatenated (RFC 3396); options in
                                    ``file``/``sname`` are read when option 52 says so
    BOOTREQUEST, BOOTREPLY; DISCOVER .. INFORM; OPT_* codes; FLAG_BROADCAST; SERVER_PORT 67,
    CLIENT_PORT 68; request(...) builds a client message

Rules: at most MAX_MESSAGE bytes are looked at; an option running past its area is a
FormatError; text fields are raw bytes (NUL-stripped on parse).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rumpkernel.net.wire.base import FormatError

SERVER_PORT, CLIENT_PORT = 67, 68
BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
OPT_PAD, OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN = 0, 1, 3, 6, 12, 15
OPT_MTU, OPT_BROADCAST, OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_OVERLOAD = 26, 28, 50, 51, 52
OPT_MSG_TYPE, OPT_SERVER_ID, OPT_PARAMS, OPT_MESSAGE, OPT_MAX_SIZE = 53, 54, 55, 56, 57
OPT_T1, OPT_T2, OPT_CLIENT_ID, OPT_END = 58, 59, 61, 255
FLAG_BROADCAST = 0x8000
MAGIC = b"\x63\x82\x53\x63"
FIXED_LEN = 236
MIN_MESSAGE = 300
MAX_MESSAGE = 65535
ZERO = bytes(4)
_HDR = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    op: int
    xid: int
    chaddr: bytes
    options: tuple[tuple[int, bytes], ...] = ()
    ciaddr: bytes = ZERO
    yiaddr: bytes = ZERO
    siaddr: bytes = ZERO
    giaddr: bytes = ZERO
    flags: int = 0
    secs: int = 0
    hops: int = 0
    htype: int = 1
    hlen: int = 6
    sname: bytes = b""
    file: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.op <= 255 and 0 <= self.xid < 1 << 32 and 0 <= self.flags <= 0xFFFF
                and 0 <= self.secs <= 0xFFFF and 0 <= self.hops <= 255
                and 0 <= self.htype <= 255 and 0 <= self.hlen <= 16):
            raise FormatError("DHCP field out of range")
        if len(self.chaddr) != 16 or any(len(a) != 4 for a in (self.ciaddr, self.yiaddr,
                                                               self.siaddr, self.giaddr)):
            raise FormatError("DHCP address field length")
        if len(self.sname) > 64 or len(self.file) > 128 or self.sname.endswith(b"\0") \
                or self.file.endswith(b"\0"):
            raise FormatError("DHCP sname/file field")
        codes = [c for c, _ in self.options]
        if len(set(codes)) != len(codes) or any(not 0 < c < 255 for c in codes):
            raise FormatError("DHCP options must have distinct codes 1..254")

    @property
    def hwaddr(self) -> bytes:
        return self.chaddr[: self.hlen]

    def option(self, code: int) -> bytes | None:
        for c, v in self.options:
            if c == code:
                return v
        return None

    @property
    def msg_type(self) -> int | None:
        v = self.option(OPT_MSG_TYPE)
        return v[0] if v is not None and len(v) == 1 else None

    def addr(self, code: int) -> bytes | None:
        v = self.option(code)
        return v if v is not None and len(v) == 4 else None

    def addrs(self, code: int) -> tuple[bytes, ...]:
        v = self.option(code)
        if v is None or not v or len(v) % 4:
            return ()
        return tuple(v[i : i + 4] for i in range(0, len(v), 4))

    def u32(self, code: int) -> int | None:
        v = self.option(code)
        return int.from_bytes(v, "big") if v is not None and len(v) == 4 else None

    def emit(self) -> bytes:
        out = [_HDR.pack(self.op, self.htype, self.hlen, self.hops, self.xid, self.secs,
                         self.flags, self.ciaddr, self.yiaddr, self.siaddr, self.giaddr,
                         self.chaddr, self.sname, self.file), MAGIC]
        for code, data in self.options:
            for i in range(0, max(len(data), 1), 255):
                chunk = data[i : i + 255]
                out.append(bytes((code, len(chunk))) + chunk)
        out.append(b"\xff")
        raw = b"".join(out)
        return raw + bytes(max(0, MIN_MESSAGE - len(raw)))


def parse(buf: bytes | bytearray | memoryview) -> DhcpMessage:
    b = bytes(buf[:MAX_MESSAGE])
    if len(b) < FIXED_LEN + 4:
        raise FormatError(f"DHCP message of {len(b)} bytes", "short")
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, ch, sname,
     file) = _HDR.unpack_from(b)
    if b[FIXED_LEN : FIXED_LEN + 4] != MAGIC:
        raise FormatError("DHCP magic cookie missing", "cookie")
    if hlen > 16:
        raise FormatError(f"DHCP hardware address length {hlen}", "field")
    merged: dict[int, bytearray] = {}
    overload = _parse_options(b[FIXED_LEN + 4 :], merged)
    ov = merged.get(OPT_OVERLOAD)
    if ov is not None and len(ov) == 1 and overload:
        if ov[0] & 1:
            _parse_options(file, merged)
            file = b""
        if ov[0] & 2:
            _parse_options(sname, merged)
            sname = b""
    return DhcpMessage(op, xid, ch, tuple((c, bytes(v)) for c, v in merged.items()), ci, yi,
                       si, gi, flags, secs, hops, htype, hlen, sname.rstrip(b"\0"),
                       file.rstrip(b"\0"))


def _parse_options(area: bytes, merged: dict[int, bytearray]) -> bool:
    """Options from ``area`` into ``merged``; True when the area was ended by an end option
    or padding (overload areas are only read after a well-formed main area)."""
    i, n = 0, len(area)
    while i < n:
        code = area[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return True
        if i + 2 > n or i + 2 + area[i + 1] > n:
            raise FormatError(f"DHCP option {code} runs past the message", "option")
        ln = area[i + 1]
        merged.setdefault(code, bytearray()).extend(area[i + 2 : i + 2 + ln])
        i += 2 + ln
    return True


def request(msg_type: int, xid: int, hwaddr: bytes, options: tuple = (), ciaddr: bytes = ZERO,
            secs: int = 0, broadcast: bool = False) -> DhcpMessage:
    """A client (BOOTREQUEST) message of type ``msg_type`` with the type option first."""
    return DhcpMessage(BOOTREQUEST, xid, hwaddr + bytes(16 - len(hwaddr)),
                       ((OPT_MSG_TYPE, bytes((msg_type,))), *options), ciaddr,
                       flags=FLAG_BROADCAST if broadcast else 0, secs=min(secs, 0xFFFF),
                       hlen=len(hwaddr))
