"""The socket layer (NetBSD's uipc_socket.c and uipc_socket2.c): sockets, socket buffers, and the
protocol switch every protocol plugs into.

A ``Socket`` is protocol-independent; what it does on the wire is its ``Protocol``'s business
(the protosw entry of its domain x type x protocol).  The generic layer owns blocking, timeouts,
non-blocking behaviour, readiness and the buffers; the protocol owns addresses, connections and
packets.  Everything here runs with the stack lock (``ns.lock``) held; waits release it.

Protocol interface (usrreq; a subclass overrides what it supports, the rest is EOPNOTSUPP):
    flags                       PR_ATOMIC | PR_ADDR | PR_CONNREQUIRED | PR_WANTRCVD | PR_RIGHTS
                                | PR_LISTEN
    attach(so, proto)           set up ``so.pcb`` and the buffer limits; ``detach(so)`` frees it
    bind(so, addr, l) / listen(so, backlog) / connect(so, addr, l) / connect2(so, so2)
    disconnect(so) / shutdown(so) / abort(so)
    send(so, data, addr, control, flags)   take the data (datagram: send it now; stream: append
                                to the send buffer and transmit what the window allows)
    sendspace(so) -> int        bytes ``send`` can take now (default: ``so.snd.space()``)
    rcvd(so)                    the user took data from ``so.rcv`` (PR_WANTRCVD: window update)
    sockaddr(so) / peeraddr(so) -> unpacked address tuple (see structs.unpack_sockaddr)
    getopt(so, level, name) -> bytes / setopt(so, level, name, value)  protocol-level options
    control(so, cmd, data, l) -> bytes | None                            ioctls
Protocols report events with the socket's methods: ``isconnected()``, ``isconnecting()``,
``isdisconnected()``, ``cantrcvmore()``, ``cantsendmore()``, ``set_error(errno)``,
``rwakeup()``/``wwakeup()`` after changing ``so.rcv``/``so.snd``, and ``sonewconn(head)`` for
an incoming connection on a listening socket.

Socket buffers: ``SockBuf`` holds either a byte stream (``append_stream``) or records
(``append_record``: one datagram with its sender and control messages).  Every byte held counts
against the kernel memory limit (tag "sockbuf"); a buffer refuses data beyond its high-water
mark, and under memory pressure the caller drops and counts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import (
    MSG_DONTWAIT,
    MSG_PEEK,
    MSG_TRUNC,
    MSG_WAITALL,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLRDNORM,
    POLLWRNORM,
    SO_ACCEPTCONN,
    SO_BROADCAST,
    SO_DEBUG,
    SO_DONTROUTE,
    SO_KEEPALIVE,
    SO_OOBINLINE,
    SO_REUSEADDR,
    SO_REUSEPORT,
    SO_TIMESTAMP,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.select import SelInfo
from rumpkernel.kern.sync import KCondVar

if TYPE_CHECKING:
    from rumpkernel.net.stack import NetStack

# protocol switch flags (NetBSD's values)
PR_ATOMIC, PR_ADDR, PR_CONNREQUIRED, PR_WANTRCVD = 0x01, 0x02, 0x04, 0x08
PR_RIGHTS, PR_LISTEN, PR_ABRTACPTDIS = 0x10, 0x20, 0x40

# socket states
SS_NOFDREF, SS_ISCONNECTED, SS_ISCONNECTING, SS_ISDISCONNECTING = 0x1, 0x2, 0x4, 0x8
SS_CANTSENDMORE, SS_CANTRCVMORE, SS_ISDISCONNECTED = 0x10, 0x20, 0x800

BOOL_OPTIONS = (SO_DEBUG, SO_REUSEADDR, SO_KEEPALIVE, SO_DONTROUTE, SO_BROADCAST,
                SO_OOBINLINE, SO_REUSEPORT, SO_TIMESTAMP)
SB_MAX = 4 << 20            # the most SO_SNDBUF/SO_RCVBUF may ask for
SOCKET_COST = 512           # bytes of kernel memory a socket itself is counted as


class Record:
    """One datagram (or a stream segment carrying control messages)."""

    __slots__ = ("addr", "control", "data")

    def __init__(self, data: bytes, addr: tuple | None, control: list | None) -> None:
        self.data = data
        self.addr = addr
        self.control = control


class SockBuf:
    """A socket's receive or send buffer.  ``cc`` bytes held, at most ``hiwat`` accepted."""

    __slots__ = ("cc", "hiwat", "k", "lowat", "q", "timeout_ns")

    def __init__(self, k: Any, hiwat: int = 0, lowat: int = 1) -> None:
        self.k = k
        self.cc = 0
        self.hiwat = hiwat
        self.lowat = lowat
        self.q: deque[Record] = deque()
        self.timeout_ns = 0          # 0: wait forever (SO_RCVTIMEO / SO_SNDTIMEO)

    def space(self) -> int:
        return max(0, self.hiwat - self.cc)

    def _charge(self, n: int) -> bool:
        try:
            self.k.kmem.alloc(n, "sockbuf")
        except KernelError:
            return False
        self.cc += n
        return True

    def append_stream(self, data: bytes, control: list | None = None) -> bool:
        """Append stream bytes (a new segment when it carries control messages).  False when
        kernel memory is exhausted (nothing appended)."""
        if not data and control is None:
            return True
        if not self._charge(len(data)):
            return False
        q = self.q
        if control is None and q and q[-1].control is None and len(q[-1].data) < 65536:
            q[-1].data += data
        else:
            q.append(Record(data, None, control))
        return True

    def append_record(self, data: bytes, addr: tuple | None, control: list | None,
                      force: bool = False) -> bool:
        """Append one datagram; False (nothing appended) when it does not fit under the
        high-water mark (unless ``force``) or kernel memory is exhausted."""
        n = max(len(data), 1)
        if not force and self.cc + n > self.hiwat:
            return False
        if not self._charge(n):
            return False
        self.q.append(Record(data, addr, control))
        return True

    def take_stream(self, n: int, peek: bool) -> tuple[bytes, list | None]:
        """Up to ``n`` bytes from the front.  A segment carrying control messages is only
        read first (its control is returned with its bytes), never merged after other data."""
        q = self.q
        if not q:
            return b"", None
        control = q[0].control
        parts, got, i = [], 0, 0
        while i < len(q) and got < n:
            rec = q[i]
            if i and rec.control is not None:
                break
            chunk = rec.data[: n - got]
            parts.append(chunk)
            got += len(chunk)
            i += 1
        if not peek:
            left = got
            while q and left >= len(q[0].data) and (left or q[0].control is not None):
                left -= len(q.popleft().data)
                if not left:
                    break
            if left:
                q[0].data = q[0].data[left:]
                q[0].control = None
            elif q and q[0].control is control and control is not None:
                q[0].control = None
            if got:
                self._uncharge(got)
        return b"".join(parts), control

    def take_record(self, peek: bool) -> Record:
        rec = self.q[0]
        if not peek:
            self.q.popleft()
            self._uncharge(max(len(rec.data), 1))
        return rec

    def _uncharge(self, n: int) -> None:
        self.cc -= n
        self.k.kmem.free(n, "sockbuf")

    def flush(self, dispose: Callable[[list], None] | None = None) -> None:
        """Drop everything held (control messages go to ``dispose``)."""
        while self.q:
            rec = self.q.popleft()
            if rec.control and dispose is not None:
                dispose(rec.control)
        if self.cc:
            self.k.kmem.free(self.cc, "sockbuf")
            self.cc = 0

    def __bool__(self) -> bool:
        return bool(self.q)


class Protocol:
    """A protosw entry; see the module docstring.  One instance serves every socket of its
    (domain, type, protocol)."""

    domain = 0
    type = 0
    protocol = 0
    flags = 0
    name = "?"

    def __init__(self, ns: NetStack) -> None:
        self.ns = ns

    def _nope(self, *args: Any) -> Any:
        raise KernelError(Errno.EOPNOTSUPP, f"{self.name}: operation not supported")

    attach = detach = bind = listen = connect = connect2 = _nope
    send = _nope

    def disconnect(self, so: Socket) -> None:
        raise KernelError(Errno.ENOTCONN, "not connected")

    def shutdown(self, so: Socket) -> None:
        return None

    def abort(self, so: Socket) -> None:
        self.detach(so)

    def sendspace(self, so: Socket) -> int:
        return so.snd.space()

    def rcvd(self, so: Socket) -> None:
        return None

    def sockaddr(self, so: Socket) -> tuple:
        raise KernelError(Errno.EOPNOTSUPP, f"{self.name}: no addresses")

    def peeraddr(self, so: Socket) -> tuple:
        raise KernelError(Errno.ENOTCONN, "not connected")

    def getopt(self, so: Socket, level: int, name: int) -> bytes:
        raise KernelError(Errno.ENOPROTOOPT, f"{self.name}: option {level}/{name}")

    def setopt(self, so: Socket, level: int, name: int, value: bytes) -> None:
        raise KernelError(Errno.ENOPROTOOPT, f"{self.name}: option {level}/{name}")

    def control(self, so: Socket, cmd: int, data: bytes, l: Any) -> bytes | None:
        raise KernelError(Errno.EOPNOTSUPP, f"{self.name}: ioctl 0x{cmd:x}")

    def info(self, so: Socket) -> dict[str, Any]:
        """Extra facts for netstat -a (state names, queue sizes)."""
        return {}


class Socket:
    """A socket; see the module docstring.  ``ns.lock`` protects every field."""

    __slots__ = ("bound_if", "cv", "domain", "error", "head", "id", "k", "linger", "ns",
                 "options", "pcb",
                 "proto", "protocol", "q", "q0", "qlimit", "rcv", "sel", "snd", "state",
                 "type", "__weakref__")

    def __init__(self, ns: NetStack, proto: Protocol, type_: int, protocol: int) -> None:
        self.ns = ns
        self.k = ns.k
        self.proto = proto
        self.domain = proto.domain
        self.type = type_
        self.protocol = protocol or proto.protocol
        self.pcb: Any = None
        self.state = 0
        self.options = 0
        self.linger: int | None = None
        self.error = 0
        self.bound_if = 0                    # SO_BINDTODEVICE: an interface index, 0: none
        self.rcv = SockBuf(ns.k)
        self.snd = SockBuf(ns.k)
        self.sel = SelInfo()
        self.cv = KCondVar(ns.k)
        self.head: Socket | None = None
        self.q0: deque[Socket] = deque()     # incomplete connections (listening sockets)
        self.q: deque[Socket] = deque()      # completed, waiting for accept
        self.qlimit = 0
        ns.next_socket_id += 1
        self.id = ns.next_socket_id

    # ---- events from protocols --------------------------------------------------------------
    def rwakeup(self) -> None:
        self.cv.broadcast()
        self.sel.notify()

    wwakeup = rwakeup

    def isconnecting(self) -> None:
        self.state = (self.state & ~(SS_ISCONNECTED | SS_ISDISCONNECTING)) | SS_ISCONNECTING

    def isconnected(self) -> None:
        self.state = (self.state & ~(SS_ISCONNECTING | SS_ISDISCONNECTING | SS_ISDISCONNECTED)
                      | SS_ISCONNECTED)
        head = self.head
        if head is not None and self in head.q0:
            head.q0.remove(self)
            head.q.append(self)
            head.rwakeup()
        self.rwakeup()

    def isdisconnecting(self) -> None:
        self.state = (self.state & ~SS_ISCONNECTING) | SS_ISDISCONNECTING | SS_CANTRCVMORE \
            | SS_CANTSENDMORE
        self.rwakeup()

    def isdisconnected(self) -> None:
        self.state = (self.state & ~(SS_ISCONNECTING | SS_ISCONNECTED | SS_ISDISCONNECTING)
                      | SS_ISDISCONNECTED | SS_CANTRCVMORE | SS_CANTSENDMORE)
        self.rwakeup()

    def cantrcvmore(self) -> None:
        self.state |= SS_CANTRCVMORE
        self.rwakeup()

    def cantsendmore(self) -> None:
        self.state |= SS_CANTSENDMORE
        self.rwakeup()

    def set_error(self, errno: int) -> None:
        self.error = errno
        self.rwakeup()

    @property
    def connected(self) -> bool:
        return bool(self.state & SS_ISCONNECTED)

    @property
    def listening(self) -> bool:
        return bool(self.options & SO_ACCEPTCONN)

    def take_error(self) -> int:
        e, self.error = self.error, 0
        if e:
            self.sel.notify()             # readiness changed (kern/select.py: every change)
        return e

    # ---- waiting ----------------------------------------------------------------------------
    def wait(self, timeout_ns: int) -> bool:
        """Sleep until a wakeup (ns.lock held; released while asleep).  False on timeout.
        EINTR when the lwp is killed."""
        return self.cv.wait(self.ns.lock, timeout_ns or None)


def sonewconn(head: Socket, connected: bool = False) -> Socket | None:
    """A new socket for an incoming connection on listening ``head`` (same protocol, options
    inherited), on its incomplete queue -- or its completed queue when ``connected``.  None
    when the queues are full or memory is short (the caller refuses the connection)."""
    if len(head.q) + len(head.q0) >= head.qlimit * 3 // 2 + 1:
        return None
    ns = head.ns
    try:
        so = ns.socket_alloc(head.proto, head.type, head.protocol)
    except KernelError:
        return None
    so.options = head.options & ~SO_ACCEPTCONN
    so.linger = head.linger
    so.head = head
    so.state |= SS_NOFDREF
    try:
        head.proto.attach(so, head.protocol)
    except KernelError:
        ns.socket_free(so)
        return None
    if connected:
        so.state |= SS_ISCONNECTED
        head.q.append(so)
        head.rwakeup()
    else:
        head.q0.append(so)
    return so


# ---- the generic operations (called by the system calls, ns.lock held) -------------------------
def sosend(so: Socket, data: bytes, addr: tuple | None, control: list | None, flags: int,
           nonblock: bool) -> int:
    """Send ``data``; returns the bytes taken.  Blocks for buffer space unless ``nonblock``
    (EAGAIN, or a short count once some data went); SO_SNDTIMEO bounds the wait.  EPIPE after
    shutdown, ENOTCONN/EDESTADDRREQ without a peer, EMSGSIZE for a datagram over the buffer,
    a pending asynchronous error (ECONNREFUSED ...) once.  ``control`` belongs to the protocol
    once its ``send`` returned; if it never got there it is disposed of here."""
    pr = so.proto
    atomic = pr.flags & PR_ATOMIC
    nonblock = nonblock or bool(flags & MSG_DONTWAIT)
    total = 0
    try:
        if atomic and len(data) > so.snd.hiwat:
            raise KernelError(Errno.EMSGSIZE, f"message of {len(data)} bytes (limit "
                              f"{so.snd.hiwat})")
        while True:
            if so.state & SS_CANTSENDMORE:
                if total:
                    return total
                raise KernelError(Errno.EPIPE, "socket cannot send more")
            if so.error:
                if total:
                    return total
                raise KernelError(Errno(so.take_error()), "asynchronous socket error")
            if not so.state & SS_ISCONNECTED:
                if pr.flags & PR_CONNREQUIRED:
                    raise KernelError(Errno.ENOTCONN, "socket is not connected")
                if addr is None and pr.flags & PR_ADDR:
                    raise KernelError(Errno.EDESTADDRREQ, "destination address required")
            space = pr.sendspace(so)
            need = len(data) if atomic else 1
            if space < need and (data or not atomic):
                if nonblock:
                    if total:
                        return total
                    raise KernelError(Errno.EAGAIN, "send buffer full")
                if not so.wait(so.snd.timeout_ns):
                    if total:
                        return total
                    raise KernelError(Errno.EAGAIN, "send timed out")
                continue
            chunk = data if atomic else data[total : total + space]
            ctl, control = control, None
            try:
                pr.send(so, chunk, addr, ctl, flags)
            except BaseException:
                if ctl:
                    so.ns.dispose_control(ctl)
                raise
            total += len(chunk)
            so.sel.notify()                   # our buffer space changed
            if total >= len(data):
                return total
    finally:
        if control:
            so.ns.dispose_control(control)


def soreceive(so: Socket, n: int, flags: int, nonblock: bool
              ) -> tuple[bytes, tuple | None, list | None, int, int]:
    """Receive up to ``n`` bytes: (data, sender address, control messages, msg flags, length
    to report).  Blocks until data, EOF or an error unless ``nonblock``/MSG_DONTWAIT (EAGAIN);
    SO_RCVTIMEO bounds the wait (EAGAIN).  MSG_PEEK leaves the data; MSG_WAITALL waits for all
    ``n`` bytes of a stream; MSG_TRUNC reports a datagram's full length."""
    pr = so.proto
    nonblock = nonblock or bool(flags & MSG_DONTWAIT)
    peek = bool(flags & MSG_PEEK)
    rcv = so.rcv
    while not rcv:
        if so.error:
            e = so.error if peek else so.take_error()
            raise KernelError(Errno(e), "asynchronous socket error")
        if so.state & SS_CANTRCVMORE:
            return b"", None, None, 0, 0
        if (pr.flags & PR_CONNREQUIRED and not so.state & (SS_ISCONNECTED | SS_ISCONNECTING)):
            raise KernelError(Errno.ENOTCONN, "socket is not connected")
        if n == 0:
            return b"", None, None, 0, 0
        if nonblock:
            raise KernelError(Errno.EAGAIN, "no data")
        if not so.wait(rcv.timeout_ns):
            raise KernelError(Errno.EAGAIN, "receive timed out")
    if not peek:
        so.sel.notify()                       # what is left to read changed
    if pr.flags & PR_ATOMIC:
        rec = rcv.take_record(peek)
        data = rec.data[:n]
        mflags = MSG_TRUNC if len(rec.data) > n else 0
        if not peek and pr.flags & PR_WANTRCVD:
            pr.rcvd(so)
        reported = len(rec.data) if flags & MSG_TRUNC else len(data)
        return data, rec.addr, rec.control, mflags, reported
    data, control = rcv.take_stream(n, peek)
    if flags & MSG_WAITALL and not peek and control is None:
        data = _waitall(so, data, n, nonblock)
    if not peek and pr.flags & PR_WANTRCVD:
        pr.rcvd(so)
    return data, None, control, 0, len(data)


def _waitall(so: Socket, data: bytes, n: int, nonblock: bool) -> bytes:
    parts = [data]
    got = len(data)
    pr = so.proto
    while got < n and not nonblock:
        if so.error or so.state & SS_CANTRCVMORE:
            break
        if not so.rcv:
            if pr.flags & PR_WANTRCVD:
                pr.rcvd(so)
            try:
                if not so.wait(so.rcv.timeout_ns):
                    break
            except KernelError:
                if got:
                    break
                raise
            continue
        if so.rcv.q[0].control is not None:       # a control boundary ends the read
            break
        more, _ = so.rcv.take_stream(n - got, False)
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def sopoll(so: Socket, events: int) -> int:
    """Readiness.  Every change of what this returns is followed by ``so.sel.notify()`` (poll
    registrations outlive a poll call, see kern/select.py)."""
    rev = 0
    if events & (POLLIN | POLLRDNORM):
        if so.rcv or so.state & SS_CANTRCVMORE or so.error or (so.listening and so.q):
            rev |= events & (POLLIN | POLLRDNORM)
    if events & (POLLOUT | POLLWRNORM):
        pr = so.proto
        ready = so.state & SS_ISCONNECTED or not pr.flags & PR_CONNREQUIRED
        if so.state & SS_CANTSENDMORE or so.error or (ready and pr.sendspace(so) >= so.snd.lowat):
            rev |= events & (POLLOUT | POLLWRNORM)
    if so.error:
        rev |= POLLERR
    if so.state & SS_CANTRCVMORE and so.state & SS_CANTSENDMORE:
        rev |= POLLHUP
    return rev


def soshutdown(so: Socket, how: int) -> None:
    """SHUT_RD 0 / SHUT_WR 1 / SHUT_RDWR 2; ENOTCONN on a socket that never connected
    (NetBSD allows it on datagram sockets; so do we)."""
    if how not in (0, 1, 2):
        raise KernelError(Errno.EINVAL, f"shutdown: how={how}")
    if so.proto.flags & PR_CONNREQUIRED and not so.state & (SS_ISCONNECTED | SS_ISCONNECTING
                                                            | SS_ISDISCONNECTED):
        if not so.listening:
            raise KernelError(Errno.ENOTCONN, "socket is not connected")
    if how in (0, 2):
        so.rcv.flush(so.ns.dispose_control)
        so.cantrcvmore()
    if how in (1, 2):
        so.cantsendmore()
        so.proto.shutdown(so)


def soclose(so: Socket) -> None:
    """The last descriptor went away: abort queued connections, disconnect (waiting for the
    linger time when SO_LINGER asks), detach and free."""
    ns = so.ns
    if so.listening:
        for q in (so.q0, so.q):
            while q:
                child = q.popleft()
                child.head = None
                _drop(child)
    if so.state & SS_ISCONNECTED and not so.state & SS_ISDISCONNECTING:
        try:
            so.proto.disconnect(so)
        except KernelError:
            pass
        if so.linger and so.proto.flags & PR_CONNREQUIRED:
            deadline = ns.k.monotonic_ns() + so.linger * 1_000_000_000
            while so.state & SS_ISCONNECTED:
                left = deadline - ns.k.monotonic_ns()
                if left <= 0 or not so.wait(left):
                    break
    so.state |= SS_NOFDREF
    _drop(so)


def _drop(so: Socket) -> None:
    ns = so.ns
    try:
        so.proto.detach(so)
    finally:
        so.rcv.flush(ns.dispose_control)
        so.snd.flush(ns.dispose_control)
        so.rwakeup()
        ns.socket_free(so)


def sofree_if_orphan(so: Socket) -> None:
    """A protocol finished with a socket no descriptor refers to (an aborted connection that
    was never accepted): take it off its listener's queue and free it."""
    head = so.head
    if head is not None:
        for q in (head.q0, head.q):
            if so in q:
                q.remove(so)
        so.head = None
    if so.state & SS_NOFDREF:
        _drop(so)


def opt_int(value: bytes) -> int:
    """An integer option value: 4 bytes (little-endian, the kernel's int) or 1 byte."""
    if len(value) >= 4:
        return int.from_bytes(value[:4], "little", signed=True)
    if len(value) == 1:
        return value[0]
    raise KernelError(Errno.EINVAL, f"option value of {len(value)} bytes")


def int_opt(v: int) -> bytes:
    return int(v).to_bytes(4, "little", signed=True)
