"""TCP sockets (NetBSD's tcp_usrreq.c): the protocol-switch entry for SOCK_STREAM in AF_INET,
joining the socket layer to the sans-IO engine (``tcp_stack.TcpStack``); with IPv6, the same
object serves AF_INET6 stream sockets too (net/inet6/tcp6.py: their protosw entry and the
IPv6 half of the glue, ``.v6``).

Interface:
    TcpProtocol(ns)      made by attach_inet (net/inet/proto.py); ``ns.inet.tcp`` is it.
        .stack           the kernel's TcpStack: its ``config`` is the net.inet.tcp.* sysctl
                         tree, its ``stats`` the "tcp" counters of netstat -s
        the Protocol operations (net/socket.py) -- attach, bind, listen, connect, send, rcvd,
        shutdown, disconnect, detach, getopt/setopt, control, info
        .input(ifp, ip, payload) / .ctlinput(errno, src, dst, inner)   from IPv4 and ICMP
        .v6              the Tcp6 glue (None without IPv6)

How it fits together (everything below runs with ``ns.lock`` held):
  * A socket's ``pcb`` (tcp_pcb.TcpPcb) holds its addresses and its engine object: a
    TcpConnection after connect/accept, a TcpListener after listen.  ``so.rcv``/``so.snd`` are
    views of the connection's buffers (tcp_pcb.StreamRcvBuf/StreamSndBuf), so the generic
    soreceive/sosend/sopoll work unchanged and every buffered byte is charged once, by the
    engine, to kernel memory (KMemAccount, tag "tcp").
  * Every engine call ends with ``_flush``: segments the stack queued go to ip_output, and the
    single callout is re-armed at the stack's next deadline (``stack.deadline``).
  * The engine reports readiness through ``conn.on_events``: ``_sync`` turns it into socket
    state (isconnected, SS_CANTRCVMORE on FIN, ``so.error`` on a reset or timeout,
    disconnected in TIME_WAIT/CLOSED) and wakes waiters (``so.rwakeup``, poll included).
  * A completed passive open becomes a socket on the listener's accept queue at once
    (``sonewconn``); the engine's backlog check counts that queue.
  * When the last descriptor closes, ``disconnect`` closes the connection (FIN, or RST for
    SO_LINGER 0 / unread data) and ``detach`` leaves it to finish on its own; its pcb keeps
    the port until the connection is CLOSED.  A connection never accepted is reset when its
    listener closes.
  * One engine, one port space and one set of counters for both families: the engine sees
    addresses as bytes (4 or 16), the family lives in the pcb (``pcb.family``) and in the
    output glue (``_flush`` sends 16-byte destinations through ``v6.output``).  A dual-stack
    AF_INET6 listener on :: is also the stack's IPv4 wildcard listener for its port; its IPv4
    connections keep 4-byte addresses and the socket shows them v4-mapped.

Options (level IPPROTO_TCP): TCP_NODELAY, TCP_MAXSEG, TCP_KEEPIDLE/KEEPINTVL (seconds
1..32767), TCP_KEEPCNT (1..127), TCP_CONGESTION ("cubic", "newreno", "reno"; ENOENT
otherwise), TCP_INFO (read-only, structs.TCP_INFO: Linux's layout); SOL_SOCKET SO_KEEPALIVE,
SO_RCVBUF/SO_SNDBUF (fix the engine's buffer sizes; otherwise they autotune up to
net.inet.tcp.rmem_max/wmem_max); IPPROTO_IP IP_TTL/IP_TOS; in AF_INET6, IPPROTO_IPV6
IPV6_V6ONLY/IPV6_UNICAST_HOPS/IPV6_TCLASS (net/inet6/tcp6.py).  ioctl SIOCATMARK.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any

from rumpkernel.kern.abi import (
    AF_INET,
    AF_INET6,
    IPPROTO_IP,
    IPPROTO_IPV6,
    IPPROTO_TCP,
    MSG_OOB,
    POLLPRI,
    POLLRDHUP,
    SIOCATMARK,
    SO_KEEPALIVE,
    SO_RCVBUF,
    SO_SNDBUF,
    SOCK_STREAM,
    SOL_SOCKET,
    SOMAXCONN,
    TCP_CONGESTION,
    TCP_INFO,
    TCP_KEEPCNT,
    TCP_KEEPIDLE,
    TCP_KEEPINTVL,
    TCP_MAXSEG,
    TCP_NODELAY,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.syscall.structs import TCP_INFO as TCP_INFO_STRUCT
from rumpkernel.net.inet import tcp_cc
from rumpkernel.net.inet.inet import ANY
from rumpkernel.net.inet.ip import ip_output
from rumpkernel.net.inet.tcp_buffers import KMemAccount
from rumpkernel.net.inet.tcp_config import TcpConfig
from rumpkernel.net.inet.tcp_engine import EV_WRITABLE, SHUT_RD, SHUT_WR, TcpConnection
from rumpkernel.net.inet.tcp_fsm import TcpState
from rumpkernel.net.inet.tcp_pcb import WILD, StreamRcvBuf, StreamSndBuf, TcpPcb, TcpPorts
from rumpkernel.net.inet.tcp_stack import TcpStack
from rumpkernel.net.inet.udp import inet_sockaddr, ip_getopt, ip_setopt
from rumpkernel.net.netinfo import fmt_addr
from rumpkernel.net.socket import (
    PR_CONNREQUIRED,
    PR_LISTEN,
    PR_WANTRCVD,
    SS_CANTRCVMORE,
    SS_ISCONNECTED,
    SS_ISCONNECTING,
    SS_ISDISCONNECTED,
    Protocol,
    Socket,
    int_opt,
    opt_int,
    sonewconn,
)
from rumpkernel.net.wire.base import ip4str
from rumpkernel.net.wire.tcp import emit_for

S = TcpState
LOOPBACK = b"\x7f\x00\x00\x01"
CA_NAME_MAX = 16
# Linux's TCP state numbers (what tcp_info.tcpi_state carries)
LINUX_STATE = {"ESTABLISHED": 1, "SYN_SENT": 2, "SYN_RECEIVED": 3, "FIN_WAIT_1": 4,
               "FIN_WAIT_2": 5, "TIME_WAIT": 6, "CLOSED": 7, "CLOSE_WAIT": 8, "LAST_ACK": 9,
               "LISTEN": 10, "CLOSING": 11}
_GONE = (S.TIME_WAIT, S.CLOSED)


class TcpProtocol(Protocol):
    domain = AF_INET
    type = SOCK_STREAM
    protocol = IPPROTO_TCP
    flags = PR_CONNREQUIRED | PR_WANTRCVD | PR_LISTEN
    name = "tcp"
    oob = True                      # send(MSG_OOB): urgent data

    def __init__(self, ns: Any) -> None:
        super().__init__(ns)
        k = ns.k
        self.k = k
        self.inet = ns.inet
        self.stack = TcpStack(k.random_bytes(32), TcpConfig(),
                              account_factory=lambda: KMemAccount(k.kmem, "tcp"))
        self.stack.route_mss = self._route_mss
        self.stack.route_tso = self._route_tso
        self.ports = TcpPorts(ns.inet)
        self.callout = ns.callout(self._timer)
        self.armed: float | None = None
        self.mem_waiters: set[Socket] = set()    # senders waiting for kernel memory
        self.v6: Any = None                      # net/inet6/tcp6.Tcp6Glue once IPv6 is here
        ns.inet.tcp = self
        ns.inet.register_protocol(IPPROTO_TCP, self.input, self.ctlinput)
        ns.stats["tcp"] = StatsView(self.stack.stats)
        k.hooks.add("halt_final", self.halt_final)

    # ---- time, output, timers ----------------------------------------------------------------
    def now(self) -> float:
        return self.k.monotonic_ns() * 1e-9

    def _route_mss(self, laddr: bytes, raddr: bytes) -> int | None:
        if len(raddr) == 16:
            return self.v6.route_mss(laddr, raddr)
        r = self.ns.routes.lookup(raddr)
        return r.ifp.mtu - 40 if r is not None else None

    def _route_tso(self, laddr: bytes, raddr: bytes) -> tuple[int, int]:
        if len(raddr) != 4:
            return (0, 0)                   # TSO for IPv4 routes only
        r = self.ns.routes.lookup(raddr)
        return (r.ifp.mtu, r.ifp.tso_max) if r is not None else (0, 0)

    def _flush(self) -> None:
        """Send what the stack queued and re-arm the timer (after every engine call)."""
        stack = self.stack
        if stack.out:
            out, stack.out = stack.out, []
            conns = stack.connections
            inet = self.inet
            for src, dst, seg in out:
                conn = conns.get((src, seg.src_port, dst, seg.dst_port))
                pcb = conn.user if conn is not None else None
                ttl, tos = (pcb.ttl, pcb.tos) if pcb is not None else (None, 0)
                gso = conn is not None and len(seg.payload) > conn.snd_mss  # TSO
                try:
                    if len(dst) == 4:
                        ip_output(inet, src, dst, IPPROTO_TCP, emit_for(seg, src, dst, gso),
                                  ttl=ttl, tos=tos, df=True, gso=gso)
                    else:
                        self.v6.output(pcb, src, dst, seg)
                except KernelError as e:
                    stack.stats.drop("output_" + Errno(e.errno).name.lower())
        if self.mem_waiters:
            kmem = self.k.kmem
            if kmem.in_use < kmem.limit - (kmem.limit >> 3):
                waiters, self.mem_waiters = self.mem_waiters, set()
                for so in waiters:
                    so.rwakeup()
        d = stack.deadline
        if d is not None and (self.armed is None or d < self.armed):
            self.armed = d
            delay_ns = round((d - self.now()) * 1e9)
            self.ns.schedule(self.callout, max(delay_ns, 0))

    def _timer(self) -> None:
        due, self.armed = self.armed, None
        now = self.now()
        if due is not None and abs(due - now) < 1e-6:
            now = due       # the callout ran at the deadline, to the nanosecond: no drift
        self._relieve_memory()
        self.stack.timeout(now)
        self._flush()

    def _relieve_memory(self) -> None:
        """Out of kernel memory with timers still running (retransmissions that found no
        memory for their datagrams): give up out-of-order data (RFC 2018 reneging; the
        senders keep it) so in-order data can arrive -- else a receiver holding a hole's
        worth of later data and a sender holding the rest would wait for each other."""
        kmem = self.k.kmem
        if kmem.limit is None or kmem.in_use < kmem.limit - (kmem.limit >> 3):
            return
        stats = self.stack.stats
        for conn in self.stack.connections.values():
            if conn.rcvbuf.ooo_bytes:
                conn.rcvbuf.prune_ooo()
                stats.rcv_pruned += 1

    # ---- engine events -> socket state -----------------------------------------------------
    def _events(self, conn: TcpConnection) -> None:
        pcb = conn.user
        if pcb is None:
            return
        so = pcb.so
        if so is None:
            if conn.state == S.CLOSED:      # an orphan is done: free its port
                self._forget(pcb)
            return
        self._sync(so, pcb, conn)

    def _sync(self, so: Socket, pcb: TcpPcb, conn: TcpConnection) -> None:
        st = conn.state
        if conn.so_error is not None:
            so.error = int(conn.take_error())
        if conn.connected:
            if not so.state & (SS_ISCONNECTED | SS_ISDISCONNECTED):
                so.isconnected()
            if conn.fin_rcvd:
                so.state |= SS_CANTRCVMORE
            if (st in _GONE or (pcb.closing and st == S.FIN_WAIT_2)) and \
                    not so.state & SS_ISDISCONNECTED:
                so.isdisconnected()
        elif st == S.CLOSED and so.state & SS_ISCONNECTING:
            so.state &= ~SS_ISCONNECTING        # the attempt failed (so.error says why)
        so.rwakeup()

    def _adopt(self, pcb: TcpPcb, conn: TcpConnection) -> None:
        conn.user = pcb
        conn.on_events = self._events
        pcb.conn = conn
        conn.nodelay = pcb.nodelay
        if pcb.rcvbuf:
            conn.set_rcvbuf(pcb.rcvbuf)
        if pcb.sndbuf:
            conn.set_sndbuf(pcb.sndbuf)
        if pcb.keepalive or pcb.keepidle or pcb.keepintvl or pcb.keepcnt:
            conn.set_keepalive(self.now(), pcb.keepalive, pcb.keepidle, pcb.keepintvl,
                               pcb.keepcnt)

    def _forget(self, pcb: TcpPcb) -> None:
        self.ports.remove(pcb)
        conn = pcb.conn
        if conn is not None:
            conn.user = None
            self.stack.forget(conn)

    # ---- the protocol switch --------------------------------------------------------------
    def attach(self, so: Socket, proto: int) -> None:
        if so.domain == AF_INET6:
            pcb = TcpPcb(so, AF_INET6, bool(self.ns.inet6.v6only))
        else:
            pcb = TcpPcb(so)
        so.pcb = pcb
        so.rcv = StreamRcvBuf(self, pcb)
        so.snd = StreamSndBuf(self, pcb)

    def detach(self, so: Socket) -> None:
        pcb = so.pcb
        if pcb is None:
            return
        now = self.now()
        pcb.reuse = pcb.reuse_flags
        pcb.so = None
        so.pcb = None
        self.mem_waiters.discard(so)
        lst = pcb.listener
        if lst is not None:
            if self.stack.listeners.get((ANY, lst.lport)) is lst:
                del self.stack.listeners[ANY, lst.lport]     # a dual-stack listener's alias
            self.stack.unlisten(lst, now)
            lst.user = lst.on_events = lst.queue_len = None
            pcb.listener = None
        conn = pcb.conn
        if conn is None:
            self.ports.remove(pcb)
        else:
            conn.linger_zero = conn.linger_zero or so.linger == 0
            if not pcb.closing and conn.state in (S.ESTABLISHED, S.CLOSE_WAIT):
                conn.abort(now)             # never accepted: its listener closed
            else:
                conn.close(now)
            if conn.state == S.CLOSED:
                self._forget(pcb)
        self._flush()

    def bind(self, so: Socket, addr: tuple, l: Any) -> None:
        pcb = so.pcb
        if pcb.family == AF_INET6:
            a, port = self.v6.local_sockaddr(pcb, addr)
        else:
            a, port = inet_sockaddr(addr)
        self.ports.bind(pcb, a, port, l.proc.cred.is_root)

    def listen(self, so: Socket, backlog: int) -> None:
        pcb = so.pcb
        if pcb.conn is not None:
            raise KernelError(Errno.EINVAL, "socket is connected")
        qlimit = SOMAXCONN if backlog < 0 or backlog > SOMAXCONN else backlog
        if pcb.listener is not None:
            pcb.listener.backlog = max(qlimit, 1)
            return
        if not pcb.lport:
            self.ports.bind(pcb, pcb.laddr, 0, False)
        for other in self.ports.ports.get(pcb.lport, ()):
            if other is not pcb and other.listener is not None and \
                    self.ports.overlap(other, pcb):
                raise KernelError(Errno.EADDRINUSE, f"port {pcb.lport} has a listener")
        lst = self.stack.listen(pcb.laddr, pcb.lport, qlimit, cc=pcb.cc, mss_clamp=pcb.maxseg)
        if pcb.covers()[0] is WILD and len(pcb.laddr) == 16 and \
                (ANY, pcb.lport) not in self.stack.listeners:
            self.stack.listeners[ANY, pcb.lport] = lst   # dual stack: IPv4 SYNs find it too
        lst.user = pcb
        lst.rcvbuf = pcb.rcvbuf
        lst.queue_len = lambda: len(so.q)
        lst.on_events = self._accept_ready
        pcb.listener = lst

    def _accept_ready(self, lst: Any) -> None:
        """Completed handshakes become sockets on the listener's accept queue."""
        hpcb = lst.user
        head = hpcb.so if hpcb is not None else None
        while lst.accept_queue:
            conn = lst.accept_queue.popleft()
            child = sonewconn(head, connected=True) if head is not None else None
            if child is None:
                self.stack.stats.drop("accept_no_socket")
                conn.abort(self.now())
                continue
            cp = child.pcb
            cp.inherit(hpcb)
            cp.laddr, cp.lport, cp.faddr, cp.fport = conn.laddr, conn.lport, conn.raddr, \
                conn.rport
            if len(conn.laddr) == 16:
                cp.scope = self.v6.zone_of(conn.laddr)
            self.ports.add(cp)
            self._adopt(cp, conn)
            self._sync(child, cp, conn)

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        pcb = so.pcb
        old = pcb.conn
        if old is not None:
            if old.state != S.CLOSED:
                raise KernelError(Errno.EISCONN if old.connected else Errno.EALREADY)
            old.user = None                   # a failed attempt: start over (as Linux)
            self.stack.forget(old)
            pcb.conn = None
        if pcb.family == AF_INET6:
            laddr, faddr, fport, mss = self.v6.route(so, pcb, addr)
        else:
            faddr, fport = inet_sockaddr(addr)
            laddr, faddr, mss = self.route4(pcb, faddr)
        fresh = not pcb.lport
        if fresh:
            pcb.lport = self.ports.connect_port(pcb, laddr, faddr, fport, self._tuple_busy)
            pcb.reuse = pcb.reuse_flags
        try:
            self.stack.connect(laddr, pcb.lport, faddr, fport, self.now(), cc=pcb.cc,
                               mss_clamp=pcb.maxseg, route_mss=mss,
                               setup=lambda c: self._adopt(pcb, c))
        except KernelError:
            if fresh:
                pcb.lport = 0
            raise
        if fresh:
            pcb.laddr = laddr
            self.ports.add(pcb)
        elif pcb.unbound:
            self.ports.remove(pcb)
            pcb.laddr = laddr
            self.ports.add(pcb)
        pcb.faddr, pcb.fport = faddr, fport
        so.error = 0
        so.isconnecting()
        self._flush()
        if pcb.conn is not None:
            self._sync(so, pcb, pcb.conn)

    def route4(self, pcb: TcpPcb, faddr: bytes) -> tuple[bytes, bytes, int]:
        """(source, destination, our MSS) of an active open to IPv4 ``faddr``."""
        if faddr == ANY:
            faddr = LOOPBACK
        inet = self.inet
        if faddr[0] >= 224 or inet.is_broadcast(faddr):
            raise KernelError(Errno.ENETUNREACH, "TCP to a broadcast or multicast address")
        bound = None if pcb.unbound else pcb.laddr
        src, rt = inet.select_source(faddr, bound)
        return bound or src, faddr, rt.ifp.mtu - 40

    def _tuple_busy(self, laddr: bytes, lport: int, faddr: bytes, fport: int) -> bool:
        c = self.stack.connections.get((laddr, lport, faddr, fport))
        if c is None or c.state == S.CLOSED:
            return False
        return not (c.state == S.TIME_WAIT and c.ts_ok and self.stack.config.tw_reuse)

    def sendspace(self, so: Socket) -> int:
        conn = so.pcb.conn
        if conn is None or not conn.events & EV_WRITABLE:
            return 0
        free = conn.sndbuf.free
        kmem = self.k.kmem
        if kmem.limit is not None:
            # senders stop short of the limit: the last eighth is for arriving data, which is
            # what frees sent data (an ACK) -- a sender holding it all would wait forever
            room = kmem.limit - (kmem.limit >> 3) - kmem.in_use
            if room < free:
                free = max(room, 0)
                if not free:
                    self.mem_waiters.add(so)   # woken when memory comes back (_flush)
        return free

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        conn = so.pcb.conn
        if conn is None:
            raise KernelError(Errno.ENOTCONN, "socket is not connected")
        try:
            conn.send(data, self.now(), oob=bool(flags & MSG_OOB))
        finally:
            self._flush()

    def read(self, pcb: TcpPcb, n: int, peek: bool) -> bytes:
        """StreamRcvBuf.take_stream: bytes from the connection (a window update may go out)."""
        conn = pcb.conn
        if conn is None:
            return b""
        try:
            return conn.recv(n, self.now(), peek)
        except KernelError:
            return b""
        finally:
            self._flush()

    def rcvd(self, so: Socket) -> None:
        self._flush()

    def shut_rd(self, pcb: TcpPcb) -> None:
        conn = pcb.conn
        if conn is not None and not conn.app_closed and not conn.shut_rd:
            try:
                conn.shutdown(SHUT_RD, self.now())
            except KernelError:
                pass
            self._flush()

    def shutdown(self, so: Socket) -> None:
        conn = so.pcb.conn
        if conn is not None:
            try:
                conn.shutdown(SHUT_WR, self.now())
            finally:
                self._flush()

    def disconnect(self, so: Socket) -> None:
        pcb = so.pcb
        pcb.closing = True
        conn = pcb.conn
        if conn is not None:
            conn.linger_zero = so.linger == 0
            conn.close(self.now())
            self._flush()

    def set_bufsize(self, pcb: TcpPcb, rcv: int | None = None, snd: int | None = None) -> None:
        """SO_RCVBUF / SO_SNDBUF (through so.rcv.hiwat / so.snd.hiwat)."""
        conn = pcb.conn
        if rcv is not None:
            pcb.rcvbuf = rcv
            if conn is not None:
                conn.set_rcvbuf(rcv)
            if pcb.listener is not None:
                pcb.listener.rcvbuf = rcv
        if snd is not None:
            pcb.sndbuf = snd
            if conn is not None:
                conn.set_sndbuf(snd)
        if conn is not None and pcb.so is not None:
            pcb.so.rwakeup()

    def sockaddr(self, so: Socket) -> tuple:
        pcb = so.pcb
        if pcb.family == AF_INET6:
            return self.v6.sockaddr(pcb.laddr, pcb.lport, pcb.scope)
        return (AF_INET, pcb.laddr, pcb.lport)

    def peeraddr(self, so: Socket) -> tuple:
        pcb = so.pcb
        if pcb.conn is None or not pcb.fport:
            raise KernelError(Errno.ENOTCONN, "not connected")
        if pcb.family == AF_INET6:
            return self.v6.sockaddr(pcb.faddr, pcb.fport, pcb.scope)
        return (AF_INET, pcb.faddr, pcb.fport)

    # ---- options ------------------------------------------------------------------------------
    def setopt(self, so: Socket, level: int, name: int, value: bytes) -> None:
        pcb = so.pcb
        conn = pcb.conn
        if level == SOL_SOCKET:
            if name == SO_KEEPALIVE:
                pcb.keepalive = bool(so.options & SO_KEEPALIVE)
                if conn is not None:
                    conn.set_keepalive(self.now(), enable=pcb.keepalive)
                    self._flush()
                return
            if name in (SO_RCVBUF, SO_SNDBUF):
                return                      # applied through so.rcv/so.snd.hiwat
            raise KernelError(Errno.ENOPROTOOPT, f"tcp: socket option 0x{name:x}")
        if level == IPPROTO_IP:
            ip_setopt(pcb, name, value)
            return
        if level == IPPROTO_IPV6 and pcb.family == AF_INET6:
            self.v6.setopt(pcb, name, value)
            return
        if level != IPPROTO_TCP:
            raise KernelError(Errno.ENOPROTOOPT, f"tcp: level {level}")
        if name == TCP_CONGESTION:
            self._set_cc(pcb, value)
            return
        v = opt_int(value)
        if name == TCP_NODELAY:
            pcb.nodelay = bool(v)
            if conn is not None:
                conn.set_nodelay(pcb.nodelay, self.now())
        elif name == TCP_MAXSEG:
            if not 88 <= v <= 65495:
                raise KernelError(Errno.EINVAL, f"TCP_MAXSEG {v}")
            pcb.maxseg = v
        elif name in (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT):
            self._set_keep(pcb, name, v)
        else:
            raise KernelError(Errno.ENOPROTOOPT, f"tcp: option {name}")
        self._flush()

    def _set_keep(self, pcb: TcpPcb, name: int, v: int) -> None:
        hi = 127 if name == TCP_KEEPCNT else 32767
        if not 1 <= v <= hi:
            raise KernelError(Errno.EINVAL, f"keepalive parameter {v} (1..{hi})")
        attr = {TCP_KEEPIDLE: "keepidle", TCP_KEEPINTVL: "keepintvl", TCP_KEEPCNT: "keepcnt"}
        setattr(pcb, attr[name], v)
        conn = pcb.conn
        if conn is not None:
            conn.set_keepalive(self.now(), None, pcb.keepidle, pcb.keepintvl, pcb.keepcnt)

    def _set_cc(self, pcb: TcpPcb, value: bytes) -> None:
        cc = value.split(b"\0", 1)[0].decode("ascii", "replace")
        if cc not in tcp_cc.available():
            raise KernelError(Errno.ENOENT, f"no congestion control {cc!r} (one of "
                              f"{', '.join(tcp_cc.available())})")
        pcb.cc = cc
        if pcb.conn is not None:
            pcb.conn.set_congestion(cc)

    def getopt(self, so: Socket, level: int, name: int) -> bytes:
        pcb = so.pcb
        conn = pcb.conn
        if level == IPPROTO_IP:
            return ip_getopt(pcb, self.inet, name)
        if level == IPPROTO_IPV6 and pcb.family == AF_INET6:
            return self.v6.getopt(pcb, name)
        if level != IPPROTO_TCP:
            raise KernelError(Errno.ENOPROTOOPT, f"tcp: level {level}")
        if name == TCP_NODELAY:
            return int_opt(pcb.nodelay)
        if name == TCP_MAXSEG:
            return int_opt(conn.snd_mss if conn is not None and conn.connected
                           else pcb.maxseg or self.stack.config.mss_default)
        cfg = self.stack.config
        if name == TCP_KEEPIDLE:
            return int_opt(pcb.keepidle or int(cfg.keepidle))
        if name == TCP_KEEPINTVL:
            return int_opt(pcb.keepintvl or int(cfg.keepintvl))
        if name == TCP_KEEPCNT:
            return int_opt(pcb.keepcnt or cfg.keepcnt)
        if name == TCP_CONGESTION:
            cc = conn.cc.name if conn is not None else pcb.cc or cfg.congestion_control
            return cc.encode().ljust(CA_NAME_MAX, b"\0")
        if name == TCP_INFO:
            return tcp_info(pcb)
        raise KernelError(Errno.ENOPROTOOPT, f"tcp: option {name}")

    def poll_extra(self, so: Socket, events: int) -> int:
        """POLLPRI while urgent data is unread, POLLRDHUP once the peer's FIN arrived."""
        pcb = so.pcb
        conn = pcb.conn if pcb is not None else None
        if conn is None:
            return 0
        rev = 0
        if events & POLLPRI and conn.rcv_up > conn.read_seq:
            rev |= POLLPRI
        if events & POLLRDHUP and conn.fin_rcvd:
            rev |= POLLRDHUP
        return rev

    def control(self, so: Socket, cmd: int, data: bytes, l: Any) -> bytes | None:
        if cmd == SIOCATMARK:
            conn = so.pcb.conn
            return int_opt(conn is not None and conn.at_mark)
        raise KernelError(Errno.ENOTTY, f"tcp: ioctl 0x{cmd:x}")

    def info(self, so: Socket) -> dict[str, Any]:
        pcb = so.pcb
        if pcb.listener is not None:
            return {"tcp_state": "LISTEN", "syn_queue": len(pcb.listener.syn_queue)}
        if pcb.conn is None:
            return {"tcp_state": "CLOSED"}
        return {"tcp_state": pcb.conn.state.name}

    def orphans(self) -> list[dict[str, Any]]:
        """netstat rows for connections whose socket is gone (FIN_WAIT, TIME_WAIT ...)."""
        rows = []
        for pcbs in self.ports.ports.values():
            for pcb in pcbs:
                conn = pcb.conn
                if pcb.so is not None or conn is None or conn.state == S.CLOSED:
                    continue
                v6 = pcb.family == AF_INET6
                rows.append({"id": 0, "family": pcb.family, "type": SOCK_STREAM,
                             "protocol": IPPROTO_TCP, "proto": "tcp6" if v6 else self.name,
                             "local": self._fmt(pcb, pcb.laddr, pcb.lport),
                             "remote": self._fmt(pcb, pcb.faddr, pcb.fport), "state": 0,
                             "listening": False, "rcv": conn.rcvbuf.readable,
                             "snd": conn.sndbuf.used, "qlen": 0, "qlimit": 0,
                             "tcp_state": conn.state.name})
        return rows

    def _fmt(self, pcb: TcpPcb, addr: bytes, port: int) -> str:
        if pcb.family == AF_INET6:
            return fmt_addr(self.v6.sockaddr(addr, port, pcb.scope))
        return f"{ip4str(addr)}:{port}"

    # ---- input --------------------------------------------------------------------------------
    def input(self, ifp: Any, ip: Any, payload: bytes) -> None:
        if ip.broadcast:
            self.stack.stats.drop("broadcast")
            return
        self.stack.input_bytes(ip.src, ip.dst, payload, self.now(),
                               verified=ifp is not None and ifp.rx_csum_ok)
        self._flush()

    def ctlinput(self, errno: int, src: bytes, dst: bytes, inner: bytes) -> None:
        """An ICMP error about a segment we sent: fatal to a connection still in SYN_SENT
        (when it quotes our SYN's sequence number), ignored otherwise (RFC 5461 soft errors)."""
        hl = (inner[0] & 0xF) * 4 if inner else 0
        if hl < 20 or len(inner) < hl + 8:
            return
        sport = int.from_bytes(inner[hl:hl + 2], "big")
        dport = int.from_bytes(inner[hl + 2:hl + 4], "big")
        seq = int.from_bytes(inner[hl + 4:hl + 8], "big")
        conn = self.stack.connections.get((src, sport, dst, dport))
        if conn is None or conn.state != S.SYN_SENT or seq != conn.iss:
            return
        conn.drop(Errno(errno), self.now(), send_rst=False)
        conn._done(self.now())
        self._flush()

    # ---- halt ---------------------------------------------------------------------------------
    def halt_final(self) -> None:
        """Free every connection's buffers (orphans in TIME_WAIT and the like)."""
        for conn in list(self.stack.connections.values()):
            conn.user = conn.on_events = None
            conn.sndbuf.free_all()
            conn.rcvbuf.free_all()
        self.stack.connections.clear()
        self.ports.ports.clear()


def tcp_info(pcb: TcpPcb) -> bytes:
    """TCP_INFO for a socket: structs.TCP_INFO (Linux's struct tcp_info, first 104 bytes)."""
    if pcb.listener is not None:
        return TCP_INFO_STRUCT.pack(LINUX_STATE["LISTEN"], *([0] * 31))
    conn = pcb.conn
    if conn is None:
        return TCP_INFO_STRUCT.pack(LINUX_STATE["CLOSED"], *([0] * 31))
    i = conn.info()
    mss = max(i.snd_mss, 1)
    ca = 3 if i.in_recovery else (4 if i.backoff else 0)
    opts = (1 if i.timestamps else 0) | (2 if i.sack else 0) | \
        (4 if i.snd_wscale or i.rcv_wscale else 0)
    us = 1_000_000
    return TCP_INFO_STRUCT.pack(
        LINUX_STATE[i.state], ca, min(i.retransmits, 255), 0, min(i.backoff, 255), opts,
        (i.snd_wscale & 0xF) | ((i.rcv_wscale & 0xF) << 4), 0,
        int(i.rto * us), 0, i.snd_mss, i.rcv_mss,
        -(-i.unacked // mss), -(-i.sacked // mss), -(-i.lost // mss), 0, 0,
        0, 0, 0, 0, i.snd_mss + (60 if len(conn.raddr) == 16 else 40), i.rcv_wnd,
        int((i.srtt or 0) * us),
        int((i.rttvar or 0) * us), min(i.ssthresh // mss, 0x7FFFFFFF),
        i.cwnd // mss, i.rcv_mss, 3, 0, i.rcvbuf, min(i.total_retrans, 0xFFFFFFFF))


class StatsView(Mapping):
    """The engine's counters as the "tcp" entry of ``ns.stats`` (netstat -s, sysctl): every
    counter, and the drops by reason as ``drop_<reason>``."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    def _flat(self) -> dict[str, int]:
        d = self.stats.as_dict()
        drops = d.pop("drops")
        d.update({f"drop_{k}": v for k, v in drops.items()})
        return d

    def __getitem__(self, key: str) -> int:
        return self._flat()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._flat())

    def __len__(self) -> int:
        return len(self._flat())


def tcp_sysctl(ns: Any, tcp: TcpProtocol) -> None:
    """net.inet.tcp.<tunable> for every TcpConfig field (integers and booleans as int nodes;
    times in seconds and the congestion-control name as strings), and the read-only counters
    net.inet.tcp.stats.<name>."""
    from rumpkernel.kern.sysctl import STR

    cfg = tcp.stack.config
    for f in fields(TcpConfig):
        name = f"net.inet.tcp.{f.name}"
        kind = f.type

        def getter(n: str = f.name, kind: str = kind) -> Any:
            v = getattr(cfg, n)
            return str(v) if kind in ("float", "str") else int(v)

        def setter(v: Any, n: str = f.name, kind: str = kind) -> None:
            _set_tunable(cfg, n, kind, v)

        if kind in ("float", "str"):
            ns.k.sysctl.add(name, STR, getter=getter, setter=setter, writable=True)
        else:
            ns.add_sysctl(name, getter, setter)
    for n in tcp.stack.stats.as_dict():
        if n != "drops":
            ns.add_sysctl(f"net.inet.tcp.stats.{n}", lambda n=n: getattr(tcp.stack.stats, n))


def _set_tunable(cfg: TcpConfig, name: str, kind: str, v: Any) -> None:
    if kind == "str":
        v = str(v).strip()
        if name == "congestion_control" and v not in tcp_cc.available():
            raise KernelError(Errno.ENOENT, f"no congestion control {v!r}")
    elif kind == "float":
        try:
            v = float(v)
        except ValueError:
            raise KernelError(Errno.EINVAL, f"net.inet.tcp.{name}: {v!r} is not a number") \
                from None
        if not 0 <= v <= 86400 * 365:
            raise KernelError(Errno.EINVAL, f"net.inet.tcp.{name}: {v} out of range")
    else:
        v = int(v)
        if v < 0 or (name in ("mtu", "mss_default") and v < 128):
            raise KernelError(Errno.EINVAL, f"net.inet.tcp.{name}: {v} out of range")
    try:
        cfg.set(name, v if kind != "bool" else bool(v))
    except ValueError as e:
        raise KernelError(Errno.EINVAL, str(e)) from None
