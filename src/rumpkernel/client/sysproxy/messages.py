"""sysproxy messages: one frozen record per message type, with ``encode`` and ``decode``.

``decode(frame)`` returns the record for a frame (ProtocolError for an unknown type or a payload
that does not parse exactly); ``msg.encode(reqid)`` returns the whole frame.  Syscall arguments and
return values are tagged values (see ``wire.Tag``); here they are plain Python:

    None          NULL
    int           INT (i64)
    PtrDesc       PTR: a client buffer named by handle, its size, flags and optional content
    list          VEC: [(PtrDesc | None, length), ...]
    (int, int)    PAIR (return values only)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from rumpkernel.client.sysproxy.wire import (
    FLAG_PANIC,
    MAX_ARGS,
    MAX_PAYLOAD,
    MAX_VEC,
    MIN_LENGTH,
    PTR_DATA,
    Frame,
    MsgType,
    ProtocolError,
    Reader,
    Tag,
    Writer,
)
from rumpkernel.client.sysproxy.wire import HEADER as _HEADER

_NULL, _INT, _PTR, _VEC, _PAIR = (int(t) for t in (Tag.NULL, Tag.INT, Tag.PTR, Tag.VEC,
                                                   Tag.PAIR))
_TAG_INT = struct.Struct("<Bq")
_PTR_HEAD = struct.Struct("<BIQB")
NONCE_SIZE = 32
MAC_SIZE = 32
COOKIE_SIZE = 32
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class PtrDesc:
    handle: int
    size: int
    flags: int
    data: bytes | None = None


# ---- tagged values --------------------------------------------------------------------------
def put_value(w: Writer, v: Any) -> None:
    parts = w._parts
    t = type(v)
    if v is None:
        parts.append(b"\0")
    elif t is int:
        parts.append(_TAG_INT.pack(_INT, v))
    elif t is PtrDesc:
        parts.append(_PTR_HEAD.pack(_PTR, v.handle, v.size, v.flags))
        if v.flags & PTR_DATA:
            w.bytes(v.data or b"")
    elif t is list:
        w.u8(_VEC).u32(len(v))
        for p, n in v:
            if p is None:
                w.u8(0)
            else:
                w.u8(1)
                _put_ptr(w, p)
            w.i64(n)
    elif t is tuple and len(v) == 2:
        w.u8(_PAIR).i64(v[0]).i64(v[1])
    else:
        raise TypeError(f"cannot encode {type(v).__name__} as a sysproxy value")


def _put_ptr(w: Writer, p: PtrDesc) -> None:
    w.u32(p.handle).u64(p.size).u8(p.flags)
    if p.flags & PTR_DATA:
        w.bytes(p.data or b"")


def _get_ptr(r: Reader) -> PtrDesc:
    handle, size, flags = r.u32(), r.u64(), r.u8()
    if flags & ~0x07:
        raise ProtocolError(f"unknown pointer flags 0x{flags:x}")
    data = None
    if flags & PTR_DATA:
        data = r.bytes()
        if len(data) > size:
            raise ProtocolError("piggy-backed data larger than its buffer")
    return PtrDesc(handle, size, flags, data)


def get_value(r: Reader) -> Any:
    tag = r.u8()
    if tag == _INT:
        return r.i64()
    if tag == _NULL:
        return None
    if tag == _PTR:
        return _get_ptr(r)
    if tag == _VEC:
        n = r.u32()
        if n > MAX_VEC:
            raise ProtocolError(f"vector of {n} entries exceeds {MAX_VEC}")
        out = []
        for _ in range(n):
            has = r.u8()
            if has > 1:
                raise ProtocolError("bad vector entry marker")
            p = _get_ptr(r) if has else None
            out.append((p, r.i64()))
        return out
    if tag == _PAIR:
        return (r.i64(), r.i64())
    raise ProtocolError(f"unknown value tag {tag}")


# ---- messages -------------------------------------------------------------------------------
class Message:
    __slots__ = ()
    TYPE: ClassVar[MsgType]
    flags: ClassVar[int] = 0

    def payload(self) -> bytes:
        return b""

    def encode(self, reqid: int = 0) -> bytes:
        payload = self.payload()
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"{type(self).__name__} of {len(payload)} bytes exceeds the frame "
                             f"limit")
        return _HEADER.pack(MIN_LENGTH + len(payload), self.TYPE, self.frame_flags(), 0,
                            reqid) + payload

    def frame_flags(self) -> int:
        return 0

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Message:
        return cls()


@dataclass(frozen=True, slots=True)
class Banner(Message):
    TYPE: ClassVar[MsgType] = MsgType.BANNER
    version: int
    features: int
    nonce: bytes
    server: str

    def payload(self) -> bytes:
        w = Writer()
        w._parts.append(b"RUMPSP\0\0")
        return w.u16(self.version).u16(self.features).bytes(self.nonce).str(self.server).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Banner:
        magic = bytes(r.u8() for _ in range(8))
        if magic != b"RUMPSP\0\0":
            raise ProtocolError("not a sysproxy server (bad magic)")
        return cls(r.u16(), r.u16(), r.bytes(64), r.str())


@dataclass(frozen=True, slots=True)
class Handshake(Message):
    TYPE: ClassVar[MsgType] = MsgType.HANDSHAKE
    version: int
    kind: int
    progname: str
    cookie: bytes = b""
    nonce: bytes = b""
    mac: bytes = b""

    def payload(self) -> bytes:
        return (Writer().u16(self.version).u8(self.kind).str(self.progname).bytes(self.cookie)
                .bytes(self.nonce).bytes(self.mac).getvalue())

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Handshake:
        return cls(r.u16(), r.u8(), r.str(256), r.bytes(64), r.bytes(64), r.bytes(64))


@dataclass(frozen=True, slots=True)
class HandshakeReply(Message):
    TYPE: ClassVar[MsgType] = MsgType.HANDSHAKE_REPLY
    errno: int
    pid: int
    mac: bytes = b""
    detail: str = ""

    def payload(self) -> bytes:
        return (Writer().u32(self.errno).u32(self.pid).bytes(self.mac).str(self.detail[:512])
                .getvalue())

    @classmethod
    def parse(cls, r: Reader, flags: int) -> HandshakeReply:
        return cls(r.u32(), r.u32(), r.bytes(64), r.str(1024))


@dataclass(frozen=True, slots=True)
class Syscall(Message):
    TYPE: ClassVar[MsgType] = MsgType.SYSCALL
    num: int
    args: tuple[Any, ...]

    def payload(self) -> bytes:
        w = Writer().u32(self.num).u8(len(self.args))
        for a in self.args:
            put_value(w, a)
        return w.getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Syscall:
        num, n = r.u32(), r.u8()
        if n > MAX_ARGS:
            raise ProtocolError(f"{n} arguments exceed {MAX_ARGS}")
        return cls(num, tuple(get_value(r) for _ in range(n)))


@dataclass(frozen=True, slots=True)
class SyscallReply(Message):
    TYPE: ClassVar[MsgType] = MsgType.SYSCALL_REPLY
    errno: int
    value: Any = None
    detail: str = ""
    panic: bool = False

    def frame_flags(self) -> int:
        return FLAG_PANIC if self.panic else 0

    def payload(self) -> bytes:
        w = Writer().u32(self.errno)
        put_value(w, self.value)
        return w.str(self.detail[:1024]).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> SyscallReply:
        errno = r.u32()
        value = get_value(r)
        if type(value) in (PtrDesc, list):
            raise ProtocolError("a return value cannot be a pointer")
        return cls(errno, value, r.str(2048), bool(flags & FLAG_PANIC))


@dataclass(frozen=True, slots=True)
class Prefork(Message):
    TYPE: ClassVar[MsgType] = MsgType.PREFORK


@dataclass(frozen=True, slots=True)
class PreforkReply(Message):
    TYPE: ClassVar[MsgType] = MsgType.PREFORK_REPLY
    errno: int
    cookie: bytes = b""

    def payload(self) -> bytes:
        return Writer().u32(self.errno).bytes(self.cookie).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> PreforkReply:
        return cls(r.u32(), r.bytes(64))


@dataclass(frozen=True, slots=True)
class Copyin(Message):
    TYPE: ClassVar[MsgType] = MsgType.COPYIN
    handle: int
    offset: int
    length: int

    def payload(self) -> bytes:
        return Writer().u32(self.handle).u64(self.offset).u32(self.length).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Copyin:
        return cls(r.u32(), r.u64(), r.u32())


@dataclass(frozen=True, slots=True)
class Copyinstr(Message):
    TYPE: ClassVar[MsgType] = MsgType.COPYINSTR
    handle: int
    maxlen: int

    def payload(self) -> bytes:
        return Writer().u32(self.handle).u32(self.maxlen).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Copyinstr:
        return cls(r.u32(), r.u32())


@dataclass(frozen=True, slots=True)
class Copyout(Message):
    TYPE: ClassVar[MsgType] = MsgType.COPYOUT
    handle: int
    offset: int
    data: bytes

    def payload(self) -> bytes:
        return Writer().u32(self.handle).u64(self.offset).bytes(self.data).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Copyout:
        return cls(r.u32(), r.u64(), r.bytes())


@dataclass(frozen=True, slots=True)
class Raise(Message):
    TYPE: ClassVar[MsgType] = MsgType.RAISE
    signo: int

    def payload(self) -> bytes:
        return Writer().u32(self.signo).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Raise:
        return cls(r.u32())


@dataclass(frozen=True, slots=True)
class CopyData(Message):
    TYPE: ClassVar[MsgType] = MsgType.COPY_DATA
    errno: int
    data: bytes = b""

    def payload(self) -> bytes:
        return Writer().u32(self.errno).bytes(self.data).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> CopyData:
        return cls(r.u32(), r.bytes())


MESSAGES: dict[int, type[Message]] = {
    c.TYPE: c for c in (Banner, Handshake, HandshakeReply, Syscall, SyscallReply, Prefork,
                        PreforkReply, Copyin, Copyinstr, Copyout, Raise, CopyData)
}


def decode(frame: Frame) -> Message:
    cls = MESSAGES.get(frame.type)
    if cls is None:
        raise ProtocolError(f"unknown message type 0x{frame.type:02x}")
    if frame.flags & ~(FLAG_PANIC if cls is SyscallReply else 0):
        raise ProtocolError(f"unknown flags 0x{frame.flags:x} on {cls.__name__}")
    r = Reader(frame.payload)
    try:
        msg = cls.parse(r, frame.flags)
    except (struct.error, IndexError):
        raise ProtocolError(f"{cls.__name__}: payload truncated") from None
    r.end()
    return msg
