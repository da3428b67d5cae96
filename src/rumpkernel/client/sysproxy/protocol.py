"""The two ends of a sysproxy connection as sans-IO state machines (DESIGN rule 7).

Bytes go in with ``receive_data(data)`` (``b""`` = the peer closed); ``next_event()`` returns
``(reqid, message)`` or None when more bytes are needed; the ``send_*`` methods return the bytes to
write.  Every violation -- a malformed or oversized frame, a frame in the wrong direction or the
wrong state, a reply to nothing -- raises ``ProtocolError`` and the connection must be closed.
Threads: one reader at a time calls ``receive_data``/``next_event`` (the IO loop around the
object guarantees it: the transport's read token); the ``send_*`` methods may be called from any
thread at any time -- each changes the request bookkeeping by a single set or dict operation,
which is atomic under the interpreter lock, and a request is registered (``send_copy_request``)
before its frame is written, so the reader never sees an answer before the question.

Before the handshake a server accepts frames of at most ``HANDSHAKE_MAX_FRAME`` bytes (an
unauthenticated peer cannot make it buffer more); afterwards ``MAX_FRAME``.

Server states: AWAIT_HANDSHAKE -> READY.  Before the handshake only HANDSHAKE is accepted; in READY,
SYSCALL and PREFORK open a request (reqid != 0, not already open), COPY_DATA must answer the
COPYIN/COPYINSTR the server sent for that request, and the server's SYSCALL_REPLY /
PREFORK_REPLY closes it.
Client states: AWAIT_BANNER -> AWAIT_HANDSHAKE_REPLY -> READY, mirrored.
"""

from __future__ import annotations

import enum
from typing import Any

from rumpkernel.client.sysproxy import auth
from rumpkernel.client.sysproxy.messages import (
    REPLY_INT,
    Banner,
    CopyData,
    Copyin,
    Copyinstr,
    Copyout,
    Handshake,
    HandshakeReply,
    Message,
    Prefork,
    PreforkReply,
    Raise,
    SyscallReply,
    decode,
    encode_syscall,
    encode_syscall_reply,
    parse_int_reply,
    parse_int_syscall,
)
from rumpkernel.client.sysproxy.wire import (
    BANNER_AUTH,
    CLIENT_TO_SERVER,
    MAX_FRAME,
    SERVER_TO_CLIENT,
    VERSION,
    FrameDecoder,
    MsgType,
    ProtocolError,
    Tag,
)

HANDSHAKE_MAX_FRAME = 1024     # a HANDSHAKE is at most ~500 bytes
_SYSCALL_REPLY, _TAG_INT = int(MsgType.SYSCALL_REPLY), int(Tag.INT)


class State(enum.Enum):
    AWAIT_BANNER = "await-banner"
    AWAIT_HANDSHAKE = "await-handshake"
    AWAIT_HANDSHAKE_REPLY = "await-handshake-reply"
    READY = "ready"
    CLOSED = "closed"


class _End:
    def __init__(self, accept: frozenset[MsgType], max_frame: int = MAX_FRAME) -> None:
        self._dec = FrameDecoder(max_frame)
        self._accept = accept
        self._closed_by_peer = False
        self.state: State = State.CLOSED

    def receive_data(self, data: bytes) -> None:
        if data:
            self._dec.feed(data)
        else:
            self._closed_by_peer = True

    def has_events(self) -> bool:
        """Whether ``next_event`` may return something (or raise) without new data; a reader
        with nothing buffered goes straight to its socket."""
        d = self._dec           # (FrameDecoder.idle() inlined: this is every call's path)
        return self._closed_by_peer or d._acc is not None or d._pos < len(d._data)

    def next_event(self) -> tuple[int, Message] | None:
        """The next complete message, or None.  After the peer closed and everything buffered
        has been returned, raises EOFError (ProtocolError if it closed inside a frame)."""
        frame = self._dec.next()
        if frame is None:
            if self._closed_by_peer:
                self._dec.eof()
                self.state = State.CLOSED
                raise EOFError("peer closed the connection")
            return None
        if frame.type not in self._accept:
            if frame.type not in MsgType.__members__.values():
                raise ProtocolError(f"unknown message type 0x{frame.type:02x}")
            raise ProtocolError(f"message type 0x{frame.type:02x} not allowed in this direction")
        msg = decode(frame)
        self._check(frame.reqid, msg)
        return frame.reqid, msg

    def _check(self, reqid: int, msg: Message) -> None:
        raise NotImplementedError


class ServerProtocol(_End):
    def __init__(self, nonce: bytes, secret: bytes | None, name: str = "rump") -> None:
        super().__init__(CLIENT_TO_SERVER, HANDSHAKE_MAX_FRAME)
        self.state = State.AWAIT_HANDSHAKE
        self.nonce = nonce
        self.secret = secret
        self.name = name
        self.open: set[int] = set()          # requests not yet answered
        self.copying: set[int] = set()       # requests with a COPYIN/COPYINSTR outstanding

    def banner(self) -> bytes:
        return Banner(VERSION, BANNER_AUTH if self.secret is not None else 0, self.nonce,
                      self.name).encode()

    def _check(self, reqid: int, msg: Message) -> None:
        t = type(msg)
        if self.state is State.AWAIT_HANDSHAKE:
            if t is not Handshake:
                raise ProtocolError(f"{t.__name__} before the handshake")
            return
        if t is Handshake:
            raise ProtocolError("second handshake on one connection")
        if t is CopyData:
            if reqid not in self.copying:
                raise ProtocolError(f"copy data for request {reqid}, which asked for none")
            self.copying.discard(reqid)
            return
        if reqid == 0 or reqid in self.open:
            raise ProtocolError(f"request id {reqid} is zero or already in use")
        self.open.add(reqid)

    def fast_syscall(self, data: bytes) -> tuple[int, int, tuple[int, ...]] | None:
        """``receive_data(data)`` + ``next_event()`` in one step for the common case: nothing
        buffered and ``data`` is exactly one SYSCALL with INT arguments and a fresh request
        id.  Returns ``(reqid, num, args)`` with the request opened, or None -- then nothing
        happened and ``data`` goes the general way (which also reports any error)."""
        d = self._dec
        if self.state is not State.READY or d._acc is not None or d._pos < len(d._data):
            return None
        call = parse_int_syscall(data)
        if call is None or call[0] == 0 or call[0] in self.open:
            return None
        self.open.add(call[0])
        return call

    def check_auth(self, hs: Handshake) -> str | None:
        """None if the handshake may proceed, else why not (the connection is then closed)."""
        if hs.version != VERSION:
            return f"protocol version {hs.version}, server speaks {VERSION}"
        if self.secret is None:
            return None
        if not auth.verify_client(self.secret, self.nonce, hs.nonce, hs.mac):
            return "authentication failed"
        return None

    def send_handshake_reply(self, errno: int, pid: int, client_nonce: bytes,
                             detail: str = "") -> bytes:
        mac = b""
        if errno == 0:
            self.state = State.READY
            self._dec.max_frame = MAX_FRAME
            if self.secret is not None:
                mac = auth.server_mac(self.secret, self.nonce, client_nonce)
        return HandshakeReply(errno, pid, mac, detail).encode()

    def send_reply(self, reqid: int, msg: SyscallReply | PreforkReply) -> bytes:
        self.open.discard(reqid)
        self.copying.discard(reqid)
        return msg.encode(reqid)

    def send_syscall_reply(self, reqid: int, errno: int, value: Any, detail: str = "",
                           panic: bool = False) -> bytes:
        """``send_reply`` of a SyscallReply without building the record (the fast path)."""
        self.open.discard(reqid)
        self.copying.discard(reqid)
        if type(value) is int and not detail and not panic:     # (encode_syscall_reply's
            return REPLY_INT.pack(REPLY_INT.size - 4, _SYSCALL_REPLY, 0, 0, reqid, errno,
                                  _TAG_INT, value, 0)           # first case, inlined)
        return encode_syscall_reply(reqid, errno, value, detail, panic)

    def send_copy_request(self, reqid: int, msg: Copyin | Copyinstr) -> bytes:
        self.copying.add(reqid)
        return msg.encode(reqid)

    def send_copyout(self, reqid: int, msg: Copyout | Raise) -> bytes:
        return msg.encode(reqid)


def refusal(errno: int, detail: str, name: str = "rump") -> bytes:
    """All a server sends to a connection it will not serve (e.g. it is full): a BANNER and a
    HANDSHAKE_REPLY carrying the errno and the reason; then it closes.  A client reads the
    reply right after the banner and reports the reason without sending anything."""
    return (Banner(VERSION, 0, bytes(32), name).encode()
            + HandshakeReply(errno, 0, b"", detail).encode())


class ClientProtocol(_End):
    def __init__(self, secret: bytes | None = None) -> None:
        super().__init__(SERVER_TO_CLIENT)
        self.state = State.AWAIT_BANNER
        self.secret = secret
        self.banner: Banner | None = None
        self.nonce = b""
        self.open: dict[int, type[Message]] = {}

    def send_handshake(self, kind: int, progname: str, cookie: bytes, nonce: bytes) -> bytes:
        if self.state is not State.AWAIT_HANDSHAKE_REPLY or self.banner is None:
            raise ProtocolError("handshake before the banner")
        mac = b""
        if self.banner.features & BANNER_AUTH:
            if self.secret is None:
                raise ProtocolError("the server requires authentication and no secret is set")
            self.nonce = nonce
            mac = auth.client_mac(self.secret, self.banner.nonce, nonce)
        return Handshake(VERSION, kind, progname, cookie, self.nonce, mac).encode()

    def check_handshake_reply(self, rep: HandshakeReply) -> None:
        """Verify the server's proof of the secret (ProtocolError when it is wrong)."""
        if rep.errno:
            return
        if self.secret is not None and self.banner is not None \
                and self.banner.features & BANNER_AUTH \
                and not auth.verify_server(self.secret, self.banner.nonce, self.nonce, rep.mac):
            raise ProtocolError("server failed to prove it knows the secret")
        self.state = State.READY

    def send_syscall(self, reqid: int, num: int, args: tuple[Any, ...]) -> bytes:
        data = encode_syscall(reqid, num, args)
        self.open[reqid] = SyscallReply
        return data

    def fast_reply(self, data: bytes, reqid: int) -> SyscallReply | None:
        """The client's counterpart of ``ServerProtocol.fast_syscall``: if nothing is buffered
        and ``data`` is exactly the plain INT reply to open system call ``reqid``, the reply
        (the request closed); else None and ``data`` goes the general way."""
        d = self._dec
        if d._acc is not None or d._pos < len(d._data):
            return None
        rep = parse_int_reply(data)
        if rep is None or rep[0] != reqid or self.open.get(reqid) is not SyscallReply:
            return None
        del self.open[reqid]
        return SyscallReply(rep[1], rep[2])

    def send_prefork(self, reqid: int) -> bytes:
        self.open[reqid] = PreforkReply
        return Prefork().encode(reqid)

    def send_copy_data(self, reqid: int, errno: int, data: bytes = b"") -> bytes:
        return CopyData(errno, data).encode(reqid)

    def _check(self, reqid: int, msg: Message) -> None:
        t = type(msg)
        if self.state is State.AWAIT_BANNER:
            if t is not Banner:
                raise ProtocolError(f"{t.__name__} before the banner")
            self.banner = msg  # type: ignore[assignment]
            self.state = State.AWAIT_HANDSHAKE_REPLY
            return
        if t is Banner:
            raise ProtocolError("second banner")
        if t is HandshakeReply:
            if self.state is not State.AWAIT_HANDSHAKE_REPLY:
                raise ProtocolError("unexpected handshake reply")
            return
        if self.state is not State.READY:
            raise ProtocolError(f"{t.__name__} before the handshake completed")
        want = self.open.get(reqid)
        if want is None:
            raise ProtocolError(f"{t.__name__} for request {reqid}, which is not open")
        if t in (SyscallReply, PreforkReply):
            if t is not want:
                raise ProtocolError(f"{t.__name__} answers a {want.__name__[:-5]} request")
            del self.open[reqid]
        elif want is PreforkReply:
            raise ProtocolError(f"{t.__name__} during a prefork")
