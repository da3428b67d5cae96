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
    MAGIC,
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
_SYSCALL, _SYSCALL_REPLY = int(MsgType.SYSCALL), int(MsgType.SYSCALL_REPLY)   # hot paths
_TAG_INT = struct.Struct("<Bq")
_PTR_HEAD = struct.Struct("<BIQB")
_VEC_PTR = struct.Struct("<BIQB")       # present marker, then the PtrDesc head
_VEC_HEAD = struct.Struct("<BI")
_PAIR_BODY = struct.Struct("<Bqq")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_SYSCALL_HEAD = struct.Struct("<IBBHQIB")       # frame header, number, argument count
REPLY_INT = _REPLY_INT = struct.Struct("<IBBHQIBqI")   # header, errno, INT value, no detail
_REPLY_INT_BODY = struct.Struct("<IBqI")
_INT_SYSCALLS = tuple(struct.Struct("<IBBHQIB" + "Bq" * n) for n in range(MAX_ARGS + 1))
_COPYIN = struct.Struct("<IBBHQIQI")             # frame header, handle, offset, length
_COPYOUT_HEAD = struct.Struct("<IBBHQIQI")       # frame header, handle, offset, data length
_COPYDATA_HEAD = struct.Struct("<IBBHQII")       # frame header, errno, data length
NONCE_SIZE = 32
MAC_SIZE = 32
COOKIE_SIZE = 32
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(slots=True)
class PtrDesc:
    handle: int
    size: int
    flags: int
    data: bytes | None = None


# ---- tagged values --------------------------------------------------------------------------
def put_value(parts: list[bytes], v: Any) -> None:
    """Append the encoding of tagged value ``v`` to ``parts`` (TypeError if it has none;
    struct.error if an integer does not fit its field)."""
    t = type(v)
    if t is int:
        parts.append(_TAG_INT.pack(_INT, v))
    elif v is None:
        parts.append(b"\0")
    elif t is PtrDesc:
        _put_ptr(parts, _PTR_HEAD.pack(_PTR, v.handle, v.size, v.flags), v)
    elif t is list:
        parts.append(_VEC_HEAD.pack(_VEC, len(v)))
        for p, n in v:
            if p is None:
                parts.append(b"\0")
            else:
                _put_ptr(parts, _VEC_PTR.pack(1, p.handle, p.size, p.flags), p)
            parts.append(_I64.pack(n))
    elif t is tuple and len(v) == 2:
        parts.append(_PAIR_BODY.pack(_PAIR, v[0], v[1]))
    else:
        raise TypeError(f"cannot encode {type(v).__name__} as a sysproxy value")


def _put_ptr(parts: list[bytes], head: bytes, p: PtrDesc) -> None:
    parts.append(head)
    if p.flags & PTR_DATA:
        data = p.data or b""
        parts.append(_U32.pack(len(data)))
        parts.append(data)


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
    buf, p = r._buf, r._pos
    tag = buf[p]
    if tag == _INT:
        r._pos = p + 9
        return _I64.unpack_from(buf, p + 1)[0]
    r._pos = p + 1
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


@dataclass(slots=True)
class Banner(Message):
    TYPE: ClassVar[MsgType] = MsgType.BANNER
    version: int
    features: int
    nonce: bytes
    server: str

    def payload(self) -> bytes:
        w = Writer()
        w._parts.append(MAGIC)
        return w.u16(self.version).u16(self.features).bytes(self.nonce).str(self.server).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Banner:
        magic = bytes(r.u8() for _ in range(8))
        if magic != MAGIC:
            raise ProtocolError("not a sysproxy server (bad magic)")
        return cls(r.u16(), r.u16(), r.bytes(64), r.str())


@dataclass(slots=True)
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


@dataclass(slots=True)
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


def encode_syscall(reqid: int, num: int, args: tuple[Any, ...]) -> bytes:
    """A whole SYSCALL frame (the client's per-call fast path; ``Syscall(...).encode`` uses
    it too).  TypeError for a value with no wire form, struct.error for one out of range."""
    n = len(args)
    if n == 0:
        return _SYSCALL_HEAD.pack(MIN_LENGTH + 5, _SYSCALL, 0, 0, reqid, num, 0)
    if n <= MAX_ARGS and all(type(a) is int for a in args):
        flat = [_INT, 0] * n
        flat[1::2] = args
        return _INT_SYSCALLS[n].pack(MIN_LENGTH + 5 + 9 * n, _SYSCALL, 0, 0, reqid, num,
                                     n, *flat)
    parts = [b""]
    for a in args:
        put_value(parts, a)
    body = b"".join(parts)
    size = 5 + len(body)
    if size > MAX_PAYLOAD:
        raise ValueError(f"system call of {size} bytes exceeds the frame limit")
    return _SYSCALL_HEAD.pack(MIN_LENGTH + size, _SYSCALL, 0, 0, reqid, num,
                              len(args)) + body


def encode_syscall_reply(reqid: int, errno: int, value: Any, detail: str = "",
                         panic: bool = False) -> bytes:
    """A whole SYSCALL_REPLY frame (the server's per-call fast path)."""
    if type(value) is int and not detail and not panic:
        return _REPLY_INT.pack(MIN_LENGTH + _REPLY_INT_BODY.size, _SYSCALL_REPLY, 0, 0,
                               reqid, errno, _INT, value, 0)
    parts = [_U32.pack(errno)]
    put_value(parts, value)
    text = detail[:1024].encode()
    parts.append(_U32.pack(len(text)))
    parts.append(text)
    payload = b"".join(parts)
    return _HEADER.pack(MIN_LENGTH + len(payload), _SYSCALL_REPLY,
                        FLAG_PANIC if panic else 0, 0, reqid) + payload


def parse_int_syscall(data: bytes) -> tuple[int, int, tuple[int, ...]] | None:
    """The fast path of the server: if ``data`` is exactly one well-formed SYSCALL frame whose
    arguments are all INT (most calls), its ``(reqid, num, args)``; None for anything else,
    which then takes the general path (``FrameDecoder`` + ``decode``), errors included."""
    n = len(data)
    if n < _SYSCALL_HEAD.size or data[4] != _SYSCALL:
        return None
    nargs = data[20]
    if nargs > MAX_ARGS or n != _SYSCALL_HEAD.size + 9 * nargs:
        return None
    f = _INT_SYSCALLS[nargs].unpack(data)
    if f[0] != n - 4 or f[2] or f[3]:
        return None
    if not nargs:
        return f[4], f[5], ()
    if f[7::2].count(_INT) != nargs:
        return None
    return f[4], f[5], f[8::2]


def parse_int_reply(data: bytes) -> tuple[int, int, int] | None:
    """The fast path of the client: if ``data`` is exactly one SYSCALL_REPLY frame with an INT
    value, no detail and no flags, its ``(reqid, errno, value)``; None for anything else."""
    if len(data) != _REPLY_INT.size:
        return None
    length, mtype, flags, reserved, reqid, errno, tag, value, dlen = _REPLY_INT.unpack(data)
    if (length != _REPLY_INT.size - 4 or mtype != _SYSCALL_REPLY or flags or reserved
            or tag != _INT or dlen):
        return None
    return reqid, errno, value


@dataclass(slots=True)
class Syscall(Message):
    TYPE: ClassVar[MsgType] = MsgType.SYSCALL
    num: int
    args: tuple[Any, ...]

    def encode(self, reqid: int = 0) -> bytes:
        return encode_syscall(reqid, self.num, self.args)

    def payload(self) -> bytes:
        return self.encode()[_HEADER.size:]

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Syscall:
        num, n = r.u32(), r.u8()
        if n > MAX_ARGS:
            raise ProtocolError(f"{n} arguments exceed {MAX_ARGS}")
        if n == 0:
            return cls(num, ())
        return cls(num, tuple([get_value(r) for _ in range(n)]))


@dataclass(slots=True)
class SyscallReply(Message):
    TYPE: ClassVar[MsgType] = MsgType.SYSCALL_REPLY
    errno: int
    value: Any = None
    detail: str = ""
    panic: bool = False

    def encode(self, reqid: int = 0) -> bytes:
        return encode_syscall_reply(reqid, self.errno, self.value, self.detail, self.panic)

    def frame_flags(self) -> int:
        return FLAG_PANIC if self.panic else 0

    def payload(self) -> bytes:
        return self.encode()[_HEADER.size:]

    @classmethod
    def parse(cls, r: Reader, flags: int) -> SyscallReply:
        buf = r._buf
        if len(buf) == _REPLY_INT_BODY.size and buf[4] == _INT and not flags:
            errno, _, value, n = _REPLY_INT_BODY.unpack(buf)
            if n == 0:
                r._pos = len(buf)
                return cls(errno, value)
        errno = r.u32()
        value = get_value(r)
        if type(value) in (PtrDesc, list):
            raise ProtocolError("a return value cannot be a pointer")
        return cls(errno, value, r.str(2048), bool(flags & FLAG_PANIC))


@dataclass(slots=True)
class Prefork(Message):
    TYPE: ClassVar[MsgType] = MsgType.PREFORK


@dataclass(slots=True)
class PreforkReply(Message):
    TYPE: ClassVar[MsgType] = MsgType.PREFORK_REPLY
    errno: int
    cookie: bytes = b""

    def payload(self) -> bytes:
        return Writer().u32(self.errno).bytes(self.cookie).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> PreforkReply:
        return cls(r.u32(), r.bytes(64))


@dataclass(slots=True)
class Copyin(Message):
    TYPE: ClassVar[MsgType] = MsgType.COPYIN
    handle: int
    offset: int
    length: int

    def encode(self, reqid: int = 0) -> bytes:
        return _COPYIN.pack(MIN_LENGTH + 16, MsgType.COPYIN, 0, 0, reqid, self.handle,
                            self.offset, self.length)

    def payload(self) -> bytes:
        return self.encode()[_HEADER.size:]

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Copyin:
        return cls(r.u32(), r.u64(), r.u32())


@dataclass(slots=True)
class Copyinstr(Message):
    TYPE: ClassVar[MsgType] = MsgType.COPYINSTR
    handle: int
    maxlen: int

    def payload(self) -> bytes:
        return Writer().u32(self.handle).u32(self.maxlen).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Copyinstr:
        return cls(r.u32(), r.u32())


@dataclass(slots=True)
class Copyout(Message):
    TYPE: ClassVar[MsgType] = MsgType.COPYOUT
    handle: int
    offset: int
    data: bytes

    def encode(self, reqid: int = 0) -> bytes:
        n = len(self.data)
        if n + 16 > MAX_PAYLOAD:
            raise ValueError(f"Copyout of {n} bytes exceeds the frame limit")
        return _COPYOUT_HEAD.pack(MIN_LENGTH + 16 + n, MsgType.COPYOUT, 0, 0, reqid,
                                  self.handle, self.offset, n) + self.data

    def payload(self) -> bytes:
        return self.encode()[_HEADER.size:]

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Copyout:
        return cls(r.u32(), r.u64(), r.bytes())


@dataclass(slots=True)
class Raise(Message):
    TYPE: ClassVar[MsgType] = MsgType.RAISE
    signo: int

    def payload(self) -> bytes:
        return Writer().u32(self.signo).getvalue()

    @classmethod
    def parse(cls, r: Reader, flags: int) -> Raise:
        return cls(r.u32())


@dataclass(slots=True)
class CopyData(Message):
    TYPE: ClassVar[MsgType] = MsgType.COPY_DATA
    errno: int
    data: bytes = b""

    def encode(self, reqid: int = 0) -> bytes:
        n = len(self.data)
        if n + 8 > MAX_PAYLOAD:
            raise ValueError(f"CopyData of {n} bytes exceeds the frame limit")
        return _COPYDATA_HEAD.pack(MIN_LENGTH + 8 + n, MsgType.COPY_DATA, 0, 0, reqid,
                                   self.errno, n) + self.data

    def payload(self) -> bytes:
        return self.encode()[_HEADER.size:]

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
