"""TCP protocol control blocks, the port table, and the socket buffers of stream sockets
(the socket-side half of NetBSD's tcp_usrreq.c / in_pcb.c for TCP).

Interface:
    TcpPcb(so, family=AF_INET) per socket: addresses, the engine's TcpConnection or TcpListener,
                               the options to apply to connections made later (TCP_NODELAY,
                               keepalive, TCP_MAXSEG, TCP_CONGESTION, buffer sizes), IP TTL/TOS.
                               A pcb outlives its socket while its connection lingers (FIN_WAIT,
                               TIME_WAIT: ``so`` is None then) so the port stays taken.
                               Addresses are as on the wire: 4 bytes for IPv4 (also for an
                               AF_INET6 socket bound or connected to a v4-mapped address),
                               16 for IPv6; ``family`` is the socket's, ``v6only`` and
                               ``scope`` (a link-local address's zone) matter in AF_INET6.
    TcpPorts(inet)             one port space for TCP over IPv4 and IPv6
        bind(pcb, laddr, lport, root)   EADDRINUSE, EACCES (< 1024 without root),
                                        EADDRNOTAVAIL (not ours), EINVAL (already bound)
        overlap(a, b) -> bool           do two pcbs' local addresses meet (a dual-stack
                                        AF_INET6 wildcard covers IPv4's as well)
        connect_port(pcb, laddr, faddr, fport, in_use) -> port    an ephemeral port whose
                                        4-tuple is free (``in_use(laddr, port, faddr, fport)``);
                                        EADDRNOTAVAIL when none is
        add(pcb) / remove(pcb)
    StreamRcvBuf(pcb) / StreamSndBuf(pcb)   ``so.rcv`` / ``so.snd`` of a TCP socket: views of
                               the connection's own buffers (the engine's ReceiveBuffer and
                               SendBuffer hold the bytes and charge them to kernel memory), with
                               SockBuf's interface for the generic socket layer: truth value,
                               ``cc``, ``hiwat`` (SO_RCVBUF/SO_SNDBUF: setting it fixes the
                               engine's buffer size), ``take_stream``, ``flush``, timeouts.

Bind rules (Linux's): two sockets may share a local port when their addresses differ (neither
is the wildcard), when both set SO_REUSEPORT, or when both set SO_REUSEADDR and the one already
there is not listening (a restarted server binds over its old connections in TIME_WAIT).
Across families as Linux: an AF_INET6 socket bound to :: takes the port in IPv4 too unless it
is IPV6_V6ONLY; one bound to a specific IPv6 address leaves IPv4 alone.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import AF_INET, SO_REUSEADDR, SO_REUSEPORT
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet.inet import ANY
from rumpkernel.net.socket import Record, SockBuf

if TYPE_CHECKING:
    from rumpkernel.net.inet.tcp_usrreq import TcpProtocol

PORT_FIRST, PORT_LAST = 49152, 65535
RESERVED = 1024
ANY6 = bytes(16)
WILD = b"*"
_NO_CONTROL = (Record(b"", None, None),)   # what ``q`` shows while bytes are readable


class TcpPcb:
    __slots__ = ("cc", "closing", "conn", "faddr", "family", "fport", "keepalive", "keepcnt",
                 "keepidle", "keepintvl", "laddr", "listener", "lport", "maxseg", "nodelay",
                 "rcvbuf", "reuse", "scope", "sndbuf", "so", "tos", "ttl", "v6only")

    def __init__(self, so: Any, family: int = AF_INET, v6only: bool = False) -> None:
        self.so = so
        self.family = family
        self.v6only = v6only
        self.scope = 0
        self.laddr = ANY if family == AF_INET else ANY6
        self.lport = 0
        self.faddr = self.laddr
        self.fport = 0
        self.conn: Any = None
        self.listener: Any = None
        self.reuse = 0                 # SO_REUSEADDR | SO_REUSEPORT as of bind (kept after close)
        self.closing = False           # the user closed it (disconnect)
        self.nodelay = False
        self.keepalive = False
        self.keepidle: int | None = None
        self.keepintvl: int | None = None
        self.keepcnt: int | None = None
        self.maxseg: int | None = None
        self.cc: str | None = None
        self.rcvbuf: int | None = None
        self.sndbuf: int | None = None
        self.ttl: int | None = None
        self.tos = 0

    def inherit(self, head: TcpPcb) -> None:
        """Options an accepted connection takes from its listener."""
        for name in ("nodelay", "keepalive", "keepidle", "keepintvl", "keepcnt", "maxseg", "cc",
                     "rcvbuf", "sndbuf", "ttl", "tos", "reuse", "v6only"):
            setattr(self, name, getattr(head, name))

    @property
    def unbound(self) -> bool:
        """No local address chosen yet (the family's wildcard)."""
        return self.laddr in (ANY, ANY6)

    def covers(self) -> tuple[bytes | None, bytes | None]:
        """(IPv4, IPv6) local addresses this pcb takes: None (none), WILD (all) or one."""
        a = self.laddr
        if len(a) == 4:
            return (WILD if a == ANY else a), None
        if a == ANY6:
            return (None if self.v6only else WILD), WILD
        return None, a

    @property
    def reuse_flags(self) -> int:
        so = self.so
        return so.options & (SO_REUSEADDR | SO_REUSEPORT) if so is not None else self.reuse


class TcpPorts:
    def __init__(self, inet: Any) -> None:
        self.inet = inet
        self.ports: dict[int, list[TcpPcb]] = {}
        self.next_port = PORT_FIRST + int.from_bytes(inet.k.random_bytes(2), "big") % (
            PORT_LAST - PORT_FIRST + 1)

    @staticmethod
    def _compatible(new: int, other: TcpPcb) -> bool:
        old = other.reuse_flags
        if new & old & SO_REUSEPORT:
            return True
        return bool(new & old & SO_REUSEADDR) and other.listener is None

    @staticmethod
    def overlap(a: TcpPcb, b: TcpPcb) -> bool:
        for x, y in zip(a.covers(), b.covers()):
            if x is not None and y is not None and (WILD in (x, y) or x == y):
                return True
        return False

    def conflict(self, pcb: TcpPcb, laddr: bytes, lport: int) -> bool:
        flags = pcb.reuse_flags
        old = pcb.laddr
        pcb.laddr = laddr
        try:
            for other in self.ports.get(lport, ()):
                if other is pcb or not self.overlap(pcb, other):
                    continue
                if not self._compatible(flags, other):
                    return True
            return False
        finally:
            pcb.laddr = old

    def _check_local(self, pcb: TcpPcb, laddr: bytes) -> None:
        if len(laddr) == 4:
            if laddr != ANY and laddr not in self.inet.local:
                raise KernelError(Errno.EADDRNOTAVAIL, "not a local address")
            return
        inet6 = self.inet.ns.inet6
        if laddr != ANY6 and (inet6 is None or inet6.owner(laddr, pcb.scope) is None):
            raise KernelError(Errno.EADDRNOTAVAIL, "not a local address")

    def bind(self, pcb: TcpPcb, laddr: bytes, lport: int, root: bool) -> None:
        if pcb.lport:
            raise KernelError(Errno.EINVAL, "socket is already bound")
        self._check_local(pcb, laddr)
        if lport == 0:
            lport = self._free_port()
        else:
            if lport < RESERVED and not root:
                raise KernelError(Errno.EACCES, f"port {lport} needs root")
            if self.conflict(pcb, laddr, lport):
                raise KernelError(Errno.EADDRINUSE, f"port {lport} in use")
        pcb.laddr, pcb.lport = laddr, lport
        pcb.reuse = pcb.reuse_flags
        self.add(pcb)

    def _free_port(self) -> int:
        span = PORT_LAST - PORT_FIRST + 1
        for _ in range(span):
            p = self._step()
            if p not in self.ports:
                return p
        raise KernelError(Errno.EAGAIN, "tcp: no free ephemeral port")

    def _step(self) -> int:
        p = self.next_port
        self.next_port = PORT_FIRST if p >= PORT_LAST else p + 1
        return p

    def connect_port(self, pcb: TcpPcb, laddr: bytes, faddr: bytes, fport: int,
                     in_use: Any) -> int:
        """An ephemeral port for an active open: a free one, else one whose pcbs are all
        connections to other peers (a port is shared per 4-tuple, as Linux shares them)."""
        span = PORT_LAST - PORT_FIRST + 1
        for _ in range(span):
            p = self._step()
            if p not in self.ports:
                return p
        for _ in range(span):
            p = self._step()
            users = self.ports.get(p, ())
            if all(u.listener is None and u.fport and not (
                    u.faddr == faddr and u.fport == fport and u.laddr == laddr)
                   for u in users) and not in_use(laddr, p, faddr, fport):
                return p
        raise KernelError(Errno.EADDRNOTAVAIL, "tcp: no free ephemeral port")

    def add(self, pcb: TcpPcb) -> None:
        self.ports.setdefault(pcb.lport, []).append(pcb)

    def remove(self, pcb: TcpPcb) -> None:
        lst = self.ports.get(pcb.lport)
        if lst is not None and pcb in lst:
            lst.remove(pcb)
            if not lst:
                del self.ports[pcb.lport]

    def __len__(self) -> int:
        return sum(len(v) for v in self.ports.values())


class _StreamBuf(SockBuf):
    """A view of one of the connection's buffers through SockBuf (the generic socket code's
    accounting and waits); ``which`` names it on the connection, ``kw`` for set_bufsize."""

    __slots__ = ("pcb", "pr")
    which = ""

    def __init__(self, pr: TcpProtocol, pcb: TcpPcb) -> None:
        self.pr = pr
        self.pcb = pcb
        self.k = pr.ns.k
        self.lowat = 1
        self.timeout_ns = 0

    def _buf(self) -> Any:
        conn = self.pcb.conn
        return getattr(conn, self.which + "buf") if conn is not None else None

    def _unset_limit(self) -> int:
        raise NotImplementedError

    @property
    def hiwat(self) -> int:                    # type: ignore[override]
        buf = self._buf()
        return buf.limit if buf is not None else self._unset_limit()

    @hiwat.setter
    def hiwat(self, n: int) -> None:
        self.pr.set_bufsize(self.pcb, **{self.which: n})

    def __bool__(self) -> bool:
        return self.cc > 0

    def space(self) -> int:
        buf = self._buf()
        return buf.free if buf is not None else 0


class StreamRcvBuf(_StreamBuf):
    """``so.rcv`` of a TCP socket: the connection's receive buffer seen through SockBuf."""

    __slots__ = ()
    which = "rcv"

    def _unset_limit(self) -> int:
        return self.pcb.rcvbuf or self.pr.stack.config.rmem_default

    @property
    def cc(self) -> int:                       # type: ignore[override]
        buf = self._buf()
        return buf.readable if buf is not None else 0

    @property
    def q(self) -> Any:                        # type: ignore[override]
        return _NO_CONTROL if self.cc else ()

    def take_stream(self, n: int, peek: bool) -> tuple[bytes, list | None]:
        return self.pr.read(self.pcb, n, peek), None

    def flush(self, dispose: Any = None) -> None:
        """SHUT_RD: the unread bytes are discarded (so is what arrives later)."""
        self.pr.shut_rd(self.pcb)

    def append_stream(self, data: bytes, control: list | None = None) -> bool:
        raise KernelError(Errno.EOPNOTSUPP, "TCP receives through its connection")

    append_record = append_stream


class StreamSndBuf(_StreamBuf):
    """``so.snd`` of a TCP socket: the connection's send buffer seen through SockBuf."""

    __slots__ = ()
    which = "snd"

    def _unset_limit(self) -> int:
        return self.pcb.sndbuf or self.pr.stack.config.wmem_default

    @property
    def cc(self) -> int:                       # type: ignore[override]
        buf = self._buf()
        return buf.used if buf is not None else 0

    @property
    def q(self) -> Any:                        # type: ignore[override]
        return deque()

    def flush(self, dispose: Any = None) -> None:
        return None

    def append_stream(self, data: bytes, control: list | None = None) -> bool:
        raise KernelError(Errno.EOPNOTSUPP, "TCP sends through its connection")

    append_record = append_stream
