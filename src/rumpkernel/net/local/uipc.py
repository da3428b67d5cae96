"""The local domain (AF_LOCAL / AF_UNIX; NetBSD's uipc_usrreq.c): stream, datagram and
seqpacket sockets between processes of one kernel, with descriptor passing (SCM_RIGHTS).

Interface:
    local_protocols(ns) -> [Protocol]     the three protosw entries
Names: with the vfs faction a bound socket is a socket node (S_IFSOCK) in the file system,
made by bind (EADDRINUSE if the name exists) and found by connect (ENOENT, ENOTSOCK,
EACCES); it stays until unlinked, as on Unix.  Without the vfs faction, and for Linux's
abstract names (a leading NUL byte), names live in a table of the stack and vanish with the
socket.

Semantics: connect to a name with no listener is ECONNREFUSED, to a socket of another type
EPROTOTYPE; writing to a stream whose peer closed is EPIPE and reading gives EOF; a stream
writer blocks while the peer's receive buffer is full (the peer's reads wake it); a datagram
to a full receiver is ENOBUFS unless the sockets are connected (then the sender blocks, or
EAGAIN).  Received datagrams carry the sender's name (empty when unnamed).
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import (
    AF_LOCAL,
    AF_UNSPEC,
    SOCK_DGRAM,
    SOCK_SEQPACKET,
    SOCK_STREAM,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.socket import (
    PR_ADDR,
    PR_ATOMIC,
    PR_CONNREQUIRED,
    PR_LISTEN,
    PR_RIGHTS,
    PR_WANTRCVD,
    SS_ISCONNECTED,
    Protocol,
    Socket,
    sonewconn,
)

STREAM_SPACE = 64 * 1024
DGRAM_SEND = 64 * 1024
DGRAM_RECV = 256 * 1024


class LocalPcb:
    __slots__ = ("addr", "conn", "key", "refs", "so")

    def __init__(self, so: Socket) -> None:
        self.so = so
        self.addr: bytes | None = None     # our name
        self.key: Any = None               # where the name is registered
        self.conn: Socket | None = None    # the peer (stream) / the target (datagram)
        self.refs: list[Socket] = []       # datagram sockets connected to us


class LocalNames:
    """Where names live: socket nodes in the VFS (when present) and a table for the rest."""

    def __init__(self, ns: Any) -> None:
        self.ns = ns
        self.table: dict[Any, Socket] = {}

    def _vfs(self, path: bytes) -> bool:
        return self.ns.k.vfs is not None and not path.startswith(b"\0")

    def bind(self, l: Any, path: bytes, so: Socket) -> Any:
        if self._vfs(path):
            from rumpkernel.net.local.names import vfs_bind

            key = vfs_bind(l, path)
        else:
            key = ("name", path)
            if key in self.table:
                raise KernelError(Errno.EADDRINUSE, "address in use")
        self.table[key] = so
        return key

    def lookup(self, l: Any, path: bytes) -> Socket:
        if self._vfs(path):
            from rumpkernel.net.local.names import vfs_lookup

            key = vfs_lookup(l, path)
        else:
            key = ("name", path)
        so = self.table.get(key)
        if so is None:
            raise KernelError(Errno.ECONNREFUSED, "nobody is listening on that name")
        return so

    def unbind(self, key: Any, so: Socket) -> None:
        if self.table.get(key) is so:
            del self.table[key]


def _path(addr: tuple) -> bytes:
    if addr[0] != AF_LOCAL:
        raise KernelError(Errno.EAFNOSUPPORT, "not an AF_LOCAL address")
    if not addr[1]:
        raise KernelError(Errno.EINVAL, "empty local socket name")
    return addr[1]


class LocalProtocol(Protocol):
    domain = AF_LOCAL
    name = "local"

    def __init__(self, ns: Any, names: LocalNames) -> None:
        super().__init__(ns)
        self.names = names

    # ---- life --------------------------------------------------------------------------------
    def attach(self, so: Socket, proto: int) -> None:
        if proto not in (0, 1):
            raise KernelError(Errno.EPROTONOSUPPORT, f"local protocol {proto}")
        so.pcb = LocalPcb(so)
        self._limits(so)

    def _limits(self, so: Socket) -> None:
        so.snd.hiwat = so.rcv.hiwat = STREAM_SPACE

    def detach(self, so: Socket) -> None:
        pcb = so.pcb
        if pcb is None:
            return
        if pcb.key is not None:
            self.names.unbind(pcb.key, so)
            pcb.key = None
        self._disconnect(so)
        for other in list(pcb.refs):           # datagram sockets aimed at us
            other.pcb.conn = None
            other.state &= ~SS_ISCONNECTED
            other.set_error(Errno.ECONNREFUSED)
        pcb.refs.clear()
        so.pcb = None

    # ---- names -------------------------------------------------------------------------------
    def bind(self, so: Socket, addr: tuple, l: Any) -> None:
        path = _path(addr)
        pcb = so.pcb
        if pcb.addr is not None:
            raise KernelError(Errno.EINVAL, "socket is already bound")
        pcb.key = self.names.bind(l, path, so)
        pcb.addr = path

    def sockaddr(self, so: Socket) -> tuple:
        return (AF_LOCAL, so.pcb.addr or b"")

    def peeraddr(self, so: Socket) -> tuple:
        peer = so.pcb.conn
        if peer is None or peer.pcb is None:
            raise KernelError(Errno.ENOTCONN, "not connected")
        return (AF_LOCAL, peer.pcb.addr or b"")

    # ---- connections -------------------------------------------------------------------------
    def connect2(self, a: Socket, b: Socket) -> None:
        if a.type != b.type:
            raise KernelError(Errno.EPROTOTYPE, "socket types differ")
        a.pcb.conn = b
        b.pcb.conn = a
        a.isconnected()
        b.isconnected()

    def _disconnect(self, so: Socket) -> None:
        peer = so.pcb.conn
        so.pcb.conn = None
        if peer is not None and peer.pcb is not None and peer.pcb.conn is so:
            peer.pcb.conn = None
            peer.isdisconnected()
        if so.state & SS_ISCONNECTED:
            so.isdisconnected()

    def disconnect(self, so: Socket) -> None:
        self._disconnect(so)

    def shutdown(self, so: Socket) -> None:
        peer = so.pcb.conn
        if peer is not None:
            peer.cantrcvmore()

    def sendspace(self, so: Socket) -> int:
        peer = so.pcb.conn
        if peer is None or peer.pcb is None:
            return so.snd.hiwat
        return peer.rcv.space()

    def rcvd(self, so: Socket) -> None:
        pcb = so.pcb
        if pcb is None:
            return
        if pcb.conn is not None:
            pcb.conn.wwakeup()
        for other in pcb.refs:
            other.wwakeup()

    def info(self, so: Socket) -> dict[str, Any]:
        peer = so.pcb.conn if so.pcb is not None else None
        return {"peer": peer.id if peer is not None else None}


class LocalStream(LocalProtocol):
    type = SOCK_STREAM
    flags = PR_CONNREQUIRED | PR_WANTRCVD | PR_RIGHTS | PR_LISTEN
    name = "local-stream"

    def listen(self, so: Socket, backlog: int) -> None:
        if so.pcb.addr is None:
            raise KernelError(Errno.EINVAL, "bind the socket before listening")

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        target = self.names.lookup(l, _path(addr))
        if target.type != so.type:
            raise KernelError(Errno.EPROTOTYPE, "socket types differ")
        if not target.listening:
            raise KernelError(Errno.ECONNREFUSED, "socket is not listening")
        child = sonewconn(target)
        if child is None:
            raise KernelError(Errno.ECONNREFUSED, "listen queue is full")
        child.pcb.addr = target.pcb.addr
        so.pcb.conn = child
        child.pcb.conn = so
        child.isconnected()
        so.isconnected()

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        if addr is not None:
            raise KernelError(Errno.EISCONN, "socket is connected")
        peer = so.pcb.conn
        if peer is None or peer.pcb is None:
            raise KernelError(Errno.EPIPE, "peer has gone")
        if not self._deliver(so, peer, data, control):
            raise KernelError(Errno.ENOBUFS, "kernel memory exhausted")
        peer.rwakeup()

    def _deliver(self, so: Socket, peer: Socket, data: bytes, control: list | None) -> bool:
        return peer.rcv.append_stream(data, control)


class LocalSeqpacket(LocalStream):
    type = SOCK_SEQPACKET
    flags = PR_CONNREQUIRED | PR_WANTRCVD | PR_RIGHTS | PR_LISTEN | PR_ATOMIC
    name = "local-seqpacket"

    def _deliver(self, so: Socket, peer: Socket, data: bytes, control: list | None) -> bool:
        return peer.rcv.append_record(data, None, control, force=True)

    def sendspace(self, so: Socket) -> int:
        peer = so.pcb.conn
        if peer is None or peer.pcb is None:
            return so.snd.hiwat
        return peer.rcv.space() if peer.rcv.cc else peer.rcv.hiwat


class LocalDgram(LocalProtocol):
    type = SOCK_DGRAM
    flags = PR_ATOMIC | PR_ADDR | PR_RIGHTS | PR_WANTRCVD
    name = "local-dgram"

    def _limits(self, so: Socket) -> None:
        so.snd.hiwat = DGRAM_SEND
        so.rcv.hiwat = DGRAM_RECV

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        if addr[0] == AF_UNSPEC:
            self.disconnect(so)
            return
        target = self.names.lookup(l, _path(addr))
        if target.type != so.type:
            raise KernelError(Errno.EPROTOTYPE, "socket types differ")
        self._disconnect(so)
        so.pcb.conn = target
        target.pcb.refs.append(so)
        so.isconnected()

    def connect2(self, a: Socket, b: Socket) -> None:
        super().connect2(a, b)
        a.pcb.refs.append(b)
        b.pcb.refs.append(a)

    def _disconnect(self, so: Socket) -> None:
        target = so.pcb.conn
        so.pcb.conn = None
        if target is not None and target.pcb is not None and so in target.pcb.refs:
            target.pcb.refs.remove(so)
        so.state &= ~SS_ISCONNECTED

    def disconnect(self, so: Socket) -> None:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        self._disconnect(so)

    def shutdown(self, so: Socket) -> None:
        return None

    def sendspace(self, so: Socket) -> int:
        peer = so.pcb.conn
        if peer is None or peer.pcb is None:
            return so.snd.hiwat
        return peer.rcv.space() if peer.rcv.cc else peer.rcv.hiwat

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        if addr is not None:
            if so.connected:
                raise KernelError(Errno.EISCONN, "socket is connected")
            target = self.names.lookup(so.ns.current_lwp(), _path(addr))
            if target.type != so.type:
                raise KernelError(Errno.EPROTOTYPE, "socket types differ")
        else:
            target = so.pcb.conn
            if target is None or target.pcb is None:
                raise KernelError(Errno.ENOTCONN if target is None else Errno.ECONNREFUSED,
                                  "no peer")
        if target.state & 0x20:               # SS_CANTRCVMORE
            raise KernelError(Errno.ECONNREFUSED, "peer does not receive")
        src = (AF_LOCAL, so.pcb.addr or b"")
        if not target.rcv.append_record(data, src, control, force=so.connected
                                        and target.rcv.cc == 0):
            raise KernelError(Errno.ENOBUFS, "receiver's buffer is full")
        target.rwakeup()


def local_protocols(ns: Any) -> list[Protocol]:
    names = LocalNames(ns)
    ns.local = names
    return [LocalStream(ns, names), LocalDgram(ns, names), LocalSeqpacket(ns, names)]
