"""sockin ("socket inet", the dissertation's section 3.9.1): the kernel's AF_INET and AF_INET6
sockets served by the host's own sockets, for users who want the kernel's API (remote clients,
the hijack, file systems) with the host's network.

The component ``net_sockin`` registers the domains "socket_inet" and "socket_inet6" in place of
the kernel's inet stack (it conflicts with ``net_inet``: a kernel has one or the other, see
kern/component.py).  Each kernel socket owns one non-blocking host socket from the "hostsock"
companion (hypercall/dev/hostsock.py); the generic socket layer keeps doing blocking, timeouts,
buffers and poll, as for any protocol.  No thread per socket: one kernel thread ("sockin") waits
in the companion's epoll set for every socket of the kernel and, with the stack lock held,
moves what the host has into the kernel's socket buffers (``so.rcv``), completes connects and
accepts, pushes queued stream bytes (``so.snd``) to the host, and wakes the socket (its
SelInfo, so kernel poll sees it).  Interest is one-shot and re-armed only while the kernel wants
it: a full receive buffer stops reading until the user reads (PR_WANTRCVD).

Protocols: SOCK_STREAM (TCP: PR_CONNREQUIRED | PR_WANTRCVD | PR_LISTEN | PR_ABRTACPTDIS) and
SOCK_DGRAM (UDP: PR_ATOMIC | PR_ADDR | PR_WANTRCVD) for both families.  Semantics are the host's
(port numbers, ephemeral ranges, TCP behaviour) plus the kernel's where the kernel decides:
binding a port below 1024 needs the kernel's root; sendto with an address on a connected
datagram socket is EISCONN; a datagram the host cannot queue now is ENOBUFS (BSD's answer when
an interface queue is full); connect(AF_UNSPEC) dissolves a datagram association and forgets the
local address (a fresh host socket).  Options passed on to the host: SO_REUSEADDR,
SO_REUSEPORT, SO_KEEPALIVE, SO_BROADCAST, SO_SNDBUF, SO_RCVBUF, SO_OOBINLINE, SO_DONTROUTE,
IP_TTL, IP_TOS, TCP_NODELAY, TCP_MAXSEG, TCP_KEEP*, TCP_USER_TIMEOUT, TCP_QUICKACK,
TCP_DEFER_ACCEPT and the IPV6_* ones the kernel's ABI names; SO_LINGER applies at close
(linger 0: the host sends a RST).  Bytes a closed stream socket still had queued are sent by
the sockin thread for up to ORPHAN_S seconds (kernel memory "sockin"), and at halt drained for
up to HALT_DRAIN_S seconds.

Limits (the dissertation's): no interfaces, routes, ICMP or raw sockets (ifconfig shows
nothing; SOCK_RAW is EPROTONOSUPPORT); every kernel shares the host's port numbers; IP
addresses are the host's.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.hypercall.interface import HostError
from rumpkernel.kern import abi
from rumpkernel.kern.abi import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    IPPROTO_IP,
    IPPROTO_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    MSG_OOB,
    SO_BROADCAST,
    SO_REUSEADDR,
    SO_REUSEPORT,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOL_SOCKET,
    SOMAXCONN,
)
from rumpkernel.kern.errno import Errno, KernelError, from_host
from rumpkernel.net.socket import (
    PR_ABRTACPTDIS,
    PR_ADDR,
    PR_ATOMIC,
    PR_CONNREQUIRED,
    PR_LISTEN,
    PR_WANTRCVD,
    SS_CANTRCVMORE,
    SS_CANTSENDMORE,
    SS_ISCONNECTED,
    SS_ISCONNECTING,
    Protocol,
    Socket,
    int_opt,
    opt_int,
    sonewconn,
)

COMPANION, VERSION = "hostsock", 1
READ, WRITE, ERROR, HUP = 1, 2, 4, 8          # the companion's event bits
STREAM_SND, STREAM_RCV = 64 * 1024, 128 * 1024
DGRAM_SND, DGRAM_RCV = 65536, 256 * 1024
READ_MAX = 256 * 1024
DGRAMS_PER_EVENT = 64
ORPHAN_S = 60
HALT_DRAIN_S = 5.0
TICK_NS = 10_000_000                          # re-check paused listeners / orphans this often
FAMILY_NAMES = {AF_INET: "inet", AF_INET6: "inet6"}

_OPTIONS = (
    ("SOL_SOCKET", SOL_SOCKET, ("SO_REUSEADDR", "SO_REUSEPORT", "SO_KEEPALIVE", "SO_BROADCAST",
                                "SO_SNDBUF", "SO_RCVBUF", "SO_OOBINLINE", "SO_DONTROUTE")),
    ("IPPROTO_IP", IPPROTO_IP, ("IP_TTL", "IP_TOS")),
    ("IPPROTO_TCP", IPPROTO_TCP, ("TCP_NODELAY", "TCP_MAXSEG", "TCP_KEEPIDLE", "TCP_KEEPINTVL",
                                  "TCP_KEEPCNT", "TCP_USER_TIMEOUT", "TCP_QUICKACK",
                                  "TCP_DEFER_ACCEPT", "TCP_INFO", "TCP_CONGESTION")),
    ("IPPROTO_IPV6", IPPROTO_IPV6, ("IPV6_V6ONLY", "IPV6_UNICAST_HOPS", "IPV6_TCLASS")),
)
#: (kernel level, kernel option number) -> (level name, option name) for the host
OPTIONS = {(lv, getattr(abi, n)): (lname, n) for lname, lv, names in _OPTIONS for n in names
           if hasattr(abi, n)}
#: options whose values are bytes, passed as they are (name -> bytes to read; 0: write only)
BYTES_OPTIONS = {"TCP_INFO": 512, "TCP_CONGESTION": 16}
#: Linux's TCP states (the numbering of TCP_INFO, which is Linux's layout) for netstat
TCP_STATES = ("?", "ESTABLISHED", "SYN_SENT", "SYN_RECEIVED", "FIN_WAIT_1", "FIN_WAIT_2",
              "TIME_WAIT", "CLOSED", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING")
#: SOL_SOCKET options a fresh host socket inherits when a datagram association is dissolved
_INHERITED = ((SO_REUSEADDR, "SO_REUSEADDR"), (SO_REUSEPORT, "SO_REUSEPORT"),
              (SO_BROADCAST, "SO_BROADCAST"))


def _host(fn: Any, *args: Any) -> Any:
    """A non-blocking companion call; host failures become the kernel's errno."""
    try:
        return fn(*args)
    except HostError as e:
        raise from_host(e) from None


def _errno_of(e: HostError | str) -> int:
    return from_host(e if isinstance(e, HostError) else HostError(e)).errno


class SockinPcb:
    """The host socket behind one kernel socket (``so`` None once the kernel closed it and
    ``orphan`` holds bytes still to send)."""

    __slots__ = ("armed", "closing", "connecting", "deadline", "hs", "listening", "orphan",
                 "paused", "so")

    def __init__(self, hs: Any, so: Socket | None) -> None:
        self.hs = hs
        self.so = so
        self.armed = 0
        self.connecting = False
        self.closing = False
        self.listening = False
        self.paused = False
        self.orphan = b""
        self.deadline = 0
        hs.token = self


class Sockin:
    """One kernel's sockin state: the companion, the sockin thread, orphans, paused
    listeners.  ``k.net.sockin``."""

    def __init__(self, k: Any) -> None:
        self.k = k
        self.ns = k.net
        self.comp = k.hostcall(k.host.companion, COMPANION, VERSION)
        self.adopting: Any = None             # the accepted host socket sonewconn attaches
        self.orphans: set[SockinPcb] = set()
        self.paused: set[SockinPcb] = set()
        self.thread = k.kthread_create(self._run, "sockin")

    # ---- the sockin thread ----------------------------------------------------------------
    def _run(self) -> None:
        k, ns = self.k, self.ns
        while True:
            timeout = TICK_NS if self.orphans or self.paused else None
            events = k.hostcall(self.comp.wait, timeout)
            if events is None:
                return
            with ns.lock:
                for pcb, bits in events:
                    if pcb is not None and pcb.hs is not None:
                        self.event(pcb, bits)
                self._tick()

    def event(self, pcb: SockinPcb, bits: int) -> None:
        """The host reported ``bits`` for ``pcb`` (ns.lock held)."""
        pcb.armed = 0
        so = pcb.so
        if so is None:
            self._orphan_send(pcb)
        else:
            so.proto.ready(so, bits)
        if pcb.hs is not None:
            self.rearm(pcb)

    def rearm(self, pcb: SockinPcb) -> None:
        so = pcb.so
        want = (WRITE if pcb.orphan else 0) if so is None else so.proto.want(so)
        if want & ~pcb.armed:
            pcb.armed |= want
            self.comp.arm(pcb.hs, bool(pcb.armed & READ), bool(pcb.armed & WRITE))

    def _tick(self) -> None:
        for pcb in list(self.paused):
            so = pcb.so
            if so is None or not pcb.listening or _room(so):
                self.paused.discard(pcb)
                pcb.paused = False
                if pcb.hs is not None:
                    self.rearm(pcb)
        now = self.k.monotonic_ns()
        for pcb in list(self.orphans):
            if now >= pcb.deadline:
                self.ns.count("sockin", "orphans_expired")
                self.close_orphan(pcb)

    # ---- closed sockets with bytes still to send ------------------------------------------------
    def orphan(self, pcb: SockinPcb, data: bytes) -> None:
        try:
            self.k.kmem.alloc(len(data), "sockin")
        except KernelError:
            self.ns.count("sockin", "orphans_dropped")
            self.close(pcb)
            return
        pcb.so = None
        pcb.orphan = data
        pcb.deadline = self.k.monotonic_ns() + ORPHAN_S * 1_000_000_000
        self.orphans.add(pcb)
        self._orphan_send(pcb)
        if pcb.hs is not None:
            self.rearm(pcb)

    def _orphan_send(self, pcb: SockinPcb) -> None:
        while pcb.orphan:
            try:
                n = pcb.hs.send(pcb.orphan[:READ_MAX])
            except HostError as e:
                if e.name == "EAGAIN":
                    return
                break
            self.k.kmem.free(n, "sockin")
            pcb.orphan = pcb.orphan[n:]
        self.close_orphan(pcb)

    def close_orphan(self, pcb: SockinPcb) -> None:
        if pcb.orphan:
            self.k.kmem.free(len(pcb.orphan), "sockin")
            pcb.orphan = b""
        self.orphans.discard(pcb)
        self.close(pcb)

    def close(self, pcb: SockinPcb) -> None:
        hs, pcb.hs = pcb.hs, None
        self.paused.discard(pcb)
        if hs is not None:
            hs.close()

    # ---- halt -----------------------------------------------------------------------------------
    def halt(self, sync: bool = True) -> None:
        """Stop the sockin thread (kernel threads are joined after the halt hooks)."""
        self.comp.close()

    def halt_final(self) -> None:
        """Give what closed sockets still had to send a last chance, then free the host side."""
        for pcb in list(self.orphans):
            self.k.hostcall(self.comp.drain, pcb.hs, pcb.orphan, HALT_DRAIN_S)
            self.close_orphan(pcb)
        self.k.hostcall(self.comp.release)


def _room(head: Socket) -> bool:
    return len(head.q) + len(head.q0) < head.qlimit * 3 // 2 + 1


class SockinProtocol(Protocol):
    """A protosw entry of "socket_inet"/"socket_inet6"; subclasses per socket type."""

    kind = ""
    protocol_name = ""

    def __init__(self, ns: Any, sockin: Sockin, family: int) -> None:
        super().__init__(ns)
        self.sockin = sockin
        self.domain = family
        self.family_name = FAMILY_NAMES[family]
        self.name = f"{self.protocol_name}{'6' if family == AF_INET6 else ''}"

    # ---- addresses ----------------------------------------------------------------------------
    def _haddr(self, addr: tuple) -> tuple:
        if addr[0] != self.domain:
            raise KernelError(Errno.EAFNOSUPPORT, f"{self.name}: address family {addr[0]}")
        return tuple(addr[1:])

    def _kaddr(self, haddr: tuple) -> tuple:
        return (self.domain, *haddr)

    # ---- usrreqs --------------------------------------------------------------------------------
    def attach(self, so: Socket, proto: int) -> None:
        si = self.sockin
        if si.adopting is not None:
            hs = _host(si.comp.adopt, si.adopting)
        else:
            hs = _host(si.comp.socket, self.family_name, self.kind)
        so.pcb = SockinPcb(hs, so)
        self.set_limits(so)

    def set_limits(self, so: Socket) -> None:
        raise NotImplementedError

    def detach(self, so: Socket) -> None:
        pcb, so.pcb = so.pcb, None
        if pcb is not None:
            self.sockin.close(pcb)

    def bind(self, so: Socket, addr: tuple, l: Any) -> None:
        haddr = self._haddr(addr)
        if 0 < haddr[1] < 1024 and not l.proc.cred.is_root:
            raise KernelError(Errno.EACCES, f"port {haddr[1]} needs root")
        _host(so.pcb.hs.bind, haddr)

    def sockaddr(self, so: Socket) -> tuple:
        pcb = so.pcb
        if pcb is None or pcb.hs is None:
            raise KernelError(Errno.EINVAL, "socket is closed")
        return self._kaddr(_host(pcb.hs.sockname))

    def peeraddr(self, so: Socket) -> tuple:
        pcb = so.pcb
        if pcb is None or pcb.hs is None or not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        return self._kaddr(_host(pcb.hs.peername))

    def setopt(self, so: Socket, level: int, name: int, value: bytes) -> None:
        opt = OPTIONS.get((level, name))
        if opt is None:
            raise KernelError(Errno.ENOPROTOOPT, f"{self.name}: option {level}/{name}")
        raw = bytes(value) if opt[1] in BYTES_OPTIONS else opt_int(value)
        _host(so.pcb.hs.setopt, opt[0], opt[1], raw)

    def getopt(self, so: Socket, level: int, name: int) -> bytes:
        opt = OPTIONS.get((level, name))
        if opt is None:
            raise KernelError(Errno.ENOPROTOOPT, f"{self.name}: option {level}/{name}")
        size = BYTES_OPTIONS.get(opt[1], 0)
        value = _host(so.pcb.hs.getopt, opt[0], opt[1], size)
        return value if size else int_opt(value)

    def rcvd(self, so: Socket) -> None:
        if so.pcb is not None and so.pcb.hs is not None:
            self.sockin.rearm(so.pcb)

    def info(self, so: Socket) -> dict[str, Any]:
        pcb = so.pcb
        return {"sockin": pcb.hs.fileno() if pcb is not None and pcb.hs is not None else None}

    # ---- from the sockin thread ---------------------------------------------------------------
    def want(self, so: Socket) -> int:
        """READ/WRITE interest the kernel has in the host socket now."""
        raise NotImplementedError

    def ready(self, so: Socket, bits: int) -> None:
        raise NotImplementedError


class SockinStream(SockinProtocol):
    type = SOCK_STREAM
    protocol = IPPROTO_TCP
    flags = PR_CONNREQUIRED | PR_WANTRCVD | PR_LISTEN | PR_ABRTACPTDIS
    kind = "stream"
    protocol_name = "tcp"

    def set_limits(self, so: Socket) -> None:
        so.snd.hiwat = STREAM_SND
        so.rcv.hiwat = STREAM_RCV

    def listen(self, so: Socket, backlog: int) -> None:
        pcb = so.pcb
        _host(pcb.hs.listen, SOMAXCONN if backlog < 0 or backlog > SOMAXCONN else backlog)
        pcb.listening = True
        self.sockin.rearm(pcb)

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        pcb = so.pcb
        if _host(pcb.hs.connect, self._haddr(addr)):
            so.isconnected()
        else:
            pcb.connecting = True
            so.isconnecting()
        self.sockin.rearm(pcb)

    def disconnect(self, so: Socket) -> None:
        """The last descriptor closed a connected socket: abortive (RST) with SO_LINGER 0 or
        unread data, as TCP does; otherwise disconnected once the queued bytes are with the
        host (soclose's linger wait ends then)."""
        pcb = so.pcb
        pcb.closing = True
        if so.linger == 0 or so.rcv.cc:
            _host(pcb.hs.set_linger, True, 0)
            so.snd.flush(self.ns.dispose_control)
        if not so.snd.cc:
            so.isdisconnected()

    def sendspace(self, so: Socket) -> int:
        return 0 if so.pcb.connecting else so.snd.space()     # no space before the handshake

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        if flags & MSG_OOB:
            raise KernelError(Errno.EOPNOTSUPP, "sockin: no out-of-band data")
        if not so.snd.append_stream(data):
            raise KernelError(Errno.ENOBUFS, "kernel memory exhausted")
        self._flush(so)

    def shutdown(self, so: Socket) -> None:
        if not so.snd.cc:
            self._shut_wr(so)

    def _shut_wr(self, so: Socket) -> None:
        try:
            so.pcb.hs.shutdown("wr")
        except HostError as e:
            if e.name != "ENOTCONN":
                raise from_host(e) from None

    def detach(self, so: Socket) -> None:
        pcb = so.pcb
        if pcb is not None and pcb.hs is not None:
            if not pcb.closing and so.state & SS_ISCONNECTED:
                _host(pcb.hs.set_linger, True, 0)        # never accepted: its listener closed
            elif so.snd.cc and not so.error and not pcb.connecting:
                so.pcb = None
                data, _ = so.snd.take_stream(so.snd.cc, False)
                self.sockin.orphan(pcb, data)
                return
        super().detach(so)

    def info(self, so: Socket) -> dict[str, Any]:
        """netstat: the host's TCP state (TCP_INFO's first byte, Linux's numbering)."""
        d = super().info(so)
        try:
            raw = so.pcb.hs.getopt("IPPROTO_TCP", "TCP_INFO", 8)
        except (HostError, AttributeError):
            return d
        if raw and raw[0] < len(TCP_STATES):
            d["tcp_state"] = TCP_STATES[raw[0]]
        return d

    def want(self, so: Socket) -> int:
        pcb = so.pcb
        if pcb.listening:
            return 0 if pcb.paused else READ
        if pcb.connecting:
            return WRITE
        if not so.state & SS_ISCONNECTED:
            return 0
        r = READ if so.rcv.space() > 0 and not so.state & SS_CANTRCVMORE else 0
        return r | (WRITE if so.snd.cc else 0)

    def ready(self, so: Socket, bits: int) -> None:
        pcb = so.pcb
        if pcb.listening:
            self._accept(so)
            return
        if pcb.connecting:
            if not bits & (WRITE | ERROR | HUP):
                return
            pcb.connecting = False
            err = pcb.hs.connect_error()
            if err:                                 # not connected (send: ENOTCONN), may retry
                so.state &= ~SS_ISCONNECTING
                so.set_error(_errno_of(err))
                return
            so.isconnected()
        if bits & (READ | ERROR | HUP):
            self._read(so)
        if so.snd.cc and so.pcb is not None:
            self._flush(so)

    def _accept(self, head: Socket) -> None:
        si = self.sockin
        pcb = head.pcb
        while _room(head):
            try:
                got = pcb.hs.accept()
            except HostError as e:
                self.ns.count("sockin", f"accept_{e.name.lower()}")
                if e.name in ("ECONNABORTED", "EPROTO", "EPERM"):
                    continue
                break                                     # EMFILE & co: try again later
            if got is None:
                return
            si.adopting = got[0]
            try:
                child = sonewconn(head, connected=True)
            finally:
                si.adopting = None
            if child is None:
                self.ns.count("sockin", "accept_dropped")
                got[0].close()
                continue
            si.rearm(child.pcb)
        pcb.paused = True
        si.paused.add(pcb)

    def _read(self, so: Socket) -> None:
        space = so.rcv.space()
        if space <= 0 or so.state & SS_CANTRCVMORE or not so.state & SS_ISCONNECTED:
            return
        try:
            data = so.pcb.hs.recv(min(space, READ_MAX))
        except HostError as e:
            if e.name != "EAGAIN":
                self._fail(so, _errno_of(e))
            return
        if not data:
            so.cantrcvmore()
        elif so.rcv.append_stream(data):
            so.rwakeup()
        else:
            self.ns.count("sockin", "nomem")
            self._fail(so, Errno.ENOBUFS)

    def _flush(self, so: Socket) -> None:
        """Hand queued bytes to the host until it takes no more (then wait for WRITE)."""
        pcb = so.pcb
        sent = False
        while so.snd.cc:
            try:
                n = pcb.hs.send(so.snd.q[0].data[:READ_MAX])
            except HostError as e:
                if e.name == "EAGAIN":
                    break
                self._fail(so, _errno_of(e))
                return
            so.snd.take_stream(n, False)
            sent = True
        if sent:
            so.wwakeup()
            if not so.snd.cc and so.state & SS_CANTSENDMORE and not pcb.closing:
                self._shut_wr(so)
            if not so.snd.cc and pcb.closing:
                so.isdisconnected()                 # a lingering close may return now
        self.sockin.rearm(pcb)

    def _fail(self, so: Socket, errno: int) -> None:
        so.snd.flush(self.ns.dispose_control)
        so.set_error(errno)
        so.isdisconnected()


class SockinDgram(SockinProtocol):
    type = SOCK_DGRAM
    protocol = IPPROTO_UDP
    flags = PR_ATOMIC | PR_ADDR | PR_WANTRCVD
    kind = "dgram"
    protocol_name = "udp"

    def set_limits(self, so: Socket) -> None:
        so.snd.hiwat = DGRAM_SND
        so.rcv.hiwat = DGRAM_RCV

    def attach(self, so: Socket, proto: int) -> None:
        super().attach(so, proto)
        self.sockin.rearm(so.pcb)

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        if addr[0] == AF_UNSPEC:
            if so.connected:
                self.disconnect(so)
            return
        _host(so.pcb.hs.connect, self._haddr(addr))
        so.error = 0
        so.isconnected()

    def disconnect(self, so: Socket) -> None:
        """Dissolve the association: a fresh host socket (NetBSD forgets the local address
        too), with the SOL_SOCKET options the old one had."""
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        si = self.sockin
        pcb = so.pcb
        hs = _host(si.comp.socket, self.family_name, self.kind)
        for bit, name in _INHERITED:
            if so.options & bit:
                _host(hs.setopt, "SOL_SOCKET", name, 1)
        old, pcb.hs = pcb.hs, hs
        hs.token = pcb
        old.close()
        pcb.armed = 0
        so.state &= ~SS_ISCONNECTED
        si.rearm(pcb)

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        hs = so.pcb.hs
        try:
            if addr is not None:
                if so.connected:
                    raise KernelError(Errno.EISCONN, "socket is connected")
                hs.sendto(data, self._haddr(addr))
            else:
                hs.send(data)
        except HostError as e:
            if e.name == "EAGAIN":
                raise KernelError(Errno.ENOBUFS, "host send queue full") from None
            raise from_host(e) from None
        self.sockin.rearm(so.pcb)          # an implicit bind makes it worth reading

    def want(self, so: Socket) -> int:
        return READ if so.rcv.cc < so.rcv.hiwat and not so.state & SS_CANTRCVMORE else 0

    def ready(self, so: Socket, bits: int) -> None:
        hs = so.pcb.hs
        for _ in range(DGRAMS_PER_EVENT):
            if so.rcv.cc >= so.rcv.hiwat or so.state & SS_CANTRCVMORE:
                return
            try:
                data, addr = hs.recvfrom()
            except HostError as e:
                if e.name != "EAGAIN":
                    so.set_error(_errno_of(e))      # e.g. ECONNREFUSED from an ICMP error
                return
            if so.rcv.append_record(data, self._kaddr(addr), None, force=True):
                so.rwakeup()
            else:
                self.ns.count("sockin", "fullsock")


def attach_sockin(k: Any) -> Sockin:
    """Make ``k.net.sockin`` and register the socket_inet and socket_inet6 domains."""
    ns = k.net
    si = Sockin(k)
    ns.sockin = si
    for fam, dom in ((AF_INET, "socket_inet"), (AF_INET6, "socket_inet6")):
        ns.add_domain(fam, dom, [SockinStream(ns, si, fam), SockinDgram(ns, si, fam)])
    k.hooks.add("halt", si.halt)
    k.hooks.add("halt_final", si.halt_final)
    return si
