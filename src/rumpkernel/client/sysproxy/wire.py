"""sysproxy wire format: frames, message types and field encodings (pure, sans-IO).

Every message is one *frame* (docs/sysproxy.md has the full description)::

    u32 length    bytes that follow this field (12 + payload), little-endian
    u8  type      MsgType
    u8  flags     FLAG_* bits (0 unless a message says otherwise)
    u16 reserved  must be 0
    u64 reqid     the request the frame belongs to (0 for connection-level frames)
    ... payload   type-specific fields

Field encodings (all little-endian): ``u8/u16/u32/u64/i64`` fixed width; ``bytes`` = u32 length
then the data; ``str`` = ``bytes`` holding UTF-8.  Syscall arguments and return values are
*tagged values* (``Tag``); pointers are ``PtrDesc`` records naming a client buffer by handle.

Interface:
    FrameDecoder()            feed(data) / next() -> Frame | None / eof() (ProtocolError when a
                              frame is cut short) / pending() bytes buffered
    encode_frame(type, reqid, payload, flags=0) -> bytes
    Reader(payload)           u8() u16() u32() u64() i64() bytes() str() end() -- ProtocolError on
                              truncation or trailing bytes
    Writer()                  the same calls, then .getvalue()
    ProtocolError             a malformed frame: the connection that sent it is closed
Limits: MAX_FRAME bytes per frame (ProtocolError beyond), MAX_VEC iovec entries, MAX_ARGS.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

VERSION = 1
MAGIC = b"RUMPSP\0\0"
HEADER = struct.Struct("<IBBHQ")
HEADER_SIZE = HEADER.size          # 16
MIN_LENGTH = HEADER_SIZE - 4       # the length field counts the rest of the header
MAX_PAYLOAD = 8 << 20 | 4096       # 8 MiB of data plus room for the fields around it
MAX_FRAME = MAX_PAYLOAD + HEADER_SIZE
COPY_CHUNK = 4 << 20               # the kernel copies at most this much per round trip
MAX_ARGS = 16
MAX_VEC = 4096                     # wire limit; the kernel itself refuses more than 1024
MAX_STR = 4096

_U8, _U16, _U32, _U64, _I64 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<Q", "<q"))


class ProtocolError(Exception):
    """The peer broke the protocol (malformed, oversized, out-of-order or unknown frame)."""


class MsgType(enum.IntEnum):
    # server -> client
    BANNER = 0x01           # first frame of a connection
    HANDSHAKE_REPLY = 0x02
    SYSCALL_REPLY = 0x03
    PREFORK_REPLY = 0x04
    COPYIN = 0x05           # kernel asks for client memory
    COPYINSTR = 0x06
    COPYOUT = 0x07          # kernel writes client memory (no reply)
    RAISE = 0x08            # deliver a signal to the client (no reply)
    # client -> server
    HANDSHAKE = 0x11
    SYSCALL = 0x12
    PREFORK = 0x13
    COPY_DATA = 0x14        # reply to COPYIN / COPYINSTR


SERVER_TO_CLIENT = frozenset({MsgType.BANNER, MsgType.HANDSHAKE_REPLY, MsgType.SYSCALL_REPLY,
                              MsgType.PREFORK_REPLY, MsgType.COPYIN, MsgType.COPYINSTR,
                              MsgType.COPYOUT, MsgType.RAISE})
CLIENT_TO_SERVER = frozenset({MsgType.HANDSHAKE, MsgType.SYSCALL, MsgType.PREFORK,
                              MsgType.COPY_DATA})

FLAG_PANIC = 0x01       # SYSCALL_REPLY: the kernel panicked running this call
BANNER_AUTH = 0x0001    # BANNER flags field: the server requires authentication


class HandshakeKind(enum.IntEnum):
    GUEST = 0    # a new process, child of init, root credentials
    FORK = 1     # attach to the process a PREFORK made (by cookie)


class Tag(enum.IntEnum):
    NULL = 0     # a null pointer / no value
    INT = 1      # i64
    PTR = 2      # PtrDesc
    VEC = 3      # u32 count, then count x (PtrDesc, u64 length)
    PAIR = 4     # two i64 (return values only)


PTR_WRITABLE = 0x01   # the kernel may copy out to it
PTR_DATA = 0x02       # the content follows (piggy-backed input; optional optimisation)
PTR_BAD = 0x04        # not a buffer: every copy faults


@dataclass(slots=True)
class Frame:
    type: int
    flags: int
    reqid: int
    payload: bytes


def encode_frame(mtype: int, reqid: int, payload: bytes = b"", flags: int = 0) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(MIN_LENGTH + len(payload), mtype, flags, 0, reqid) + payload


class FrameDecoder:
    """Bytes in, frames out.  Checks the length bound (``max_frame``, which the owner may lower,
    e.g. before a handshake) as soon as the four length bytes are there, before buffering.

    Fast path: the usual chunk holds whole frames; they are sliced straight out of it.  Only a
    frame cut by a chunk boundary is assembled in a bytearray (amortised linear, so a 4 MiB
    frame arriving in 64 KiB pieces costs one copy, not a quadratic number)."""

    __slots__ = ("_acc", "_data", "_pos", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._data = b""                      # the last chunk fed, consumed up to _pos
        self._pos = 0
        self._acc: bytearray | None = None    # a partial frame and whatever follows it
        self.max_frame = max_frame

    def feed(self, data: bytes) -> None:
        if self._acc is not None:
            self._acc += data
        elif self._pos < len(self._data):     # (only if next() was not called in between)
            self._acc = bytearray(self._data[self._pos:]) + data
            self._data, self._pos = b"", 0
        else:
            self._data, self._pos = data, 0

    def pending(self) -> int:
        return len(self._data) - self._pos + (len(self._acc) if self._acc is not None else 0)

    def idle(self) -> bool:
        """Nothing buffered: the next chunk starts a frame."""
        return self._acc is None and self._pos >= len(self._data)

    def next(self) -> Frame | None:
        if self._acc is None:
            d, p = self._data, self._pos
            avail = len(d) - p
            if avail >= HEADER_SIZE:
                length, mtype, flags, reserved, reqid = HEADER.unpack_from(d, p)
                if length < MIN_LENGTH or length + 4 > self.max_frame:
                    self._check_length(length)
                end = p + 4 + length
                if end <= len(d):
                    if reserved:
                        raise ProtocolError(f"reserved header field is {reserved}, not 0")
                    self._pos = end
                    return Frame(mtype, flags, reqid, d[p + HEADER_SIZE : end])
            elif avail == 0:
                return None
            self._acc = bytearray(d[p:])      # a frame cut by the chunk boundary
            self._data, self._pos = b"", 0
        return self._next_assembled(self._acc)

    def _next_assembled(self, acc: bytearray) -> Frame | None:
        if len(acc) < HEADER_SIZE:
            if len(acc) >= 4:
                self._check_length(_U32.unpack_from(acc)[0])
            return None
        length, mtype, flags, reserved, reqid = HEADER.unpack_from(acc)
        self._check_length(length)
        total = 4 + length
        if len(acc) < total:
            return None
        if reserved:
            raise ProtocolError(f"reserved header field is {reserved}, not 0")
        with memoryview(acc) as mv:
            payload = bytes(mv[HEADER_SIZE:total])
        if len(acc) == total:
            self._acc = None
        else:
            del acc[:total]
        return Frame(mtype, flags, reqid, payload)

    def _check_length(self, length: int) -> None:
        if length < MIN_LENGTH:
            raise ProtocolError(f"frame length {length} shorter than a header")
        if length + 4 > self.max_frame:
            raise ProtocolError(f"frame length {length} exceeds the limit {self.max_frame}")

    def eof(self) -> None:
        """The peer closed: complain if it left part of a frame behind."""
        left = self.pending()
        if left:
            raise ProtocolError(f"connection closed inside a frame ({left} bytes)")


class Reader:
    """Sequential field reader over one payload.  Reading past the end raises struct.error or
    IndexError, which ``messages.decode`` turns into ProtocolError."""

    __slots__ = ("_buf", "_pos")

    def __init__(self, payload: bytes) -> None:
        self._buf = payload
        self._pos = 0

    def u8(self) -> int:
        p = self._pos
        v = self._buf[p]
        self._pos = p + 1
        return v

    def u16(self) -> int:
        p = self._pos
        v = _U16.unpack_from(self._buf, p)[0]
        self._pos = p + 2
        return v

    def u32(self) -> int:
        p = self._pos
        v = _U32.unpack_from(self._buf, p)[0]
        self._pos = p + 4
        return v

    def u64(self) -> int:
        p = self._pos
        v = _U64.unpack_from(self._buf, p)[0]
        self._pos = p + 8
        return v

    def i64(self) -> int:
        p = self._pos
        v = _I64.unpack_from(self._buf, p)[0]
        self._pos = p + 8
        return v

    def bytes(self, limit: int = MAX_PAYLOAD) -> bytes:
        n = self.u32()
        if n > limit:
            raise ProtocolError(f"field of {n} bytes exceeds {limit}")
        p = self._pos
        end = p + n
        if end > len(self._buf):
            raise ProtocolError("payload truncated")
        self._pos = end
        return self._buf[p:end]

    def str(self, limit: int = MAX_STR) -> str:
        try:
            return self.bytes(limit).decode()
        except UnicodeDecodeError:
            raise ProtocolError("string field is not UTF-8") from None

    def end(self) -> None:
        if self._pos != len(self._buf):
            raise ProtocolError(f"{len(self._buf) - self._pos} trailing bytes in payload")


class Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        self._parts.append(_U8.pack(v))
        return self

    def u16(self, v: int) -> Writer:
        self._parts.append(_U16.pack(v))
        return self

    def u32(self, v: int) -> Writer:
        self._parts.append(_U32.pack(v))
        return self

    def u64(self, v: int) -> Writer:
        self._parts.append(_U64.pack(v))
        return self

    def i64(self, v: int) -> Writer:
        self._parts.append(_I64.pack(v))
        return self

    def bytes(self, v: bytes) -> Writer:
        self._parts.append(_U32.pack(len(v)))
        self._parts.append(v)
        return self

    def str(self, v: str) -> Writer:
        return self.bytes(v.encode())

    def getvalue(self) -> bytes:
        return b"".join(self._parts)
