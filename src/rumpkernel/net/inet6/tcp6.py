"""TCP over IPv6 (NetBSD's tcp6_usrreq / in6_pcb glue for TCP): the AF_INET6 stream protosw
entry and the IPv6 half of the TCP socket glue.  The engine, port space, timers and counters
are IPv4's (net/inet/tcp_usrreq.TcpProtocol): the engine sees addresses as bytes, so only
addresses, routes, MSS, output and ICMPv6 differ by family -- and they live here.

Interface:
    attach_tcp6(ns)          with IPv4's TCP present: registers Tcp6Protocol in AF_INET6,
                             TCP input (next header 6), ICMPv6 errors and packet-too-big
                             notices; sets ``ns.inet.tcp.v6`` to the Tcp6Glue
    Tcp6Protocol(ns, tcp)    the protosw entry (AF_INET6, SOCK_STREAM, IPPROTO_TCP, "tcp6"):
                             every operation is ``tcp``'s (which reads ``pcb.family``)
    Tcp6Glue(ns, tcp)        what TcpProtocol asks of IPv6:
        local_sockaddr(pcb, addr) -> (addr, port)    bind: a v4-mapped address becomes the
                                  IPv4 one (EINVAL on an IPV6_V6ONLY socket, as Linux); a
                                  link-local one needs a zone (EINVAL), ENXIO for a bad one
        route(so, pcb, addr) -> (laddr, faddr, fport, mss)   connect: source, destination and
                                  our MSS; a v4-mapped destination goes over IPv4
                                  (ENETUNREACH on an IPV6_V6ONLY socket or one bound to an
                                  IPv6 address); :: means ::1; multicast: ENETUNREACH
        route_mss(laddr, dst) -> MSS   the path MTU (interface MTU, lowered by packet-too-big) less
                                  60 (IPv6 and TCP headers), at least 1220 (RFC 8200's 1280)
        output(pcb, src, dst, seg)   the segment through ip6_output (hop limit and traffic
                                  class from IPV6_UNICAST_HOPS/IPV6_TCLASS, the zone of a
                                  link-local peer)
        sockaddr(addr, port, scope)  the AF_INET6 tuple (4-byte addresses v4-mapped)
        zone_of(addr)             the interface index of a link-local local address
        getopt/setopt(pcb, name[, value])   IPV6_V6ONLY (EINVAL after bind),
                                  IPV6_UNICAST_HOPS (-1: the default), IPV6_TCLASS
        input(ifp, ip, payload), ctlinput(errno, src, dst, upper), pmtu(src, dst, upper, mtu)

Path MTU (RFC 8201): a packet-too-big lowers the connection's send MSS to the new MTU less
60 and its options, and resends what is outstanding in segments of the new size (no window
reduction: the loss was the path's, not congestion).  An ICMPv6 unreachable aborts a
connection still in SYN_SENT when it quotes our SYN (as for IPv4); later ones are soft errors.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import (
    AF_INET6,
    IPPROTO_TCP,
    IPV6_TCLASS,
    IPV6_UNICAST_HOPS,
    IPV6_V6ONLY,
    SOCK_STREAM,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet6.in6 import V4MAPPED, is_v4mapped, scope_of
from rumpkernel.net.inet6.in6_pcb import in6_sockaddr, sockaddr6
from rumpkernel.net.inet6.proto6 import register_tcp6
from rumpkernel.net.socket import Protocol, int_opt, opt_int
from rumpkernel.net.wire.ipv6 import LOOPBACK, UNSPECIFIED, is_multicast
from rumpkernel.net.wire.tcp import emit_for

NH_TCP = 6
HEADERS = 60                     # IPv6 (40) and TCP (20) headers
MIN_MTU = 1280
OPS = ("attach", "detach", "bind", "listen", "connect", "send", "rcvd", "shutdown",
       "disconnect", "abort", "sendspace", "sockaddr", "peeraddr", "getopt", "setopt",
       "control", "info", "poll_extra")


class Tcp6Protocol(Protocol):
    domain = AF_INET6
    type = SOCK_STREAM
    protocol = IPPROTO_TCP
    name = "tcp6"
    oob = True

    def __init__(self, ns: Any, tcp: Any) -> None:
        super().__init__(ns)
        self.flags = tcp.flags
        for op in OPS:                     # the one TCP protocol serves both families
            setattr(self, op, getattr(tcp, op))


class Tcp6Glue:
    def __init__(self, ns: Any, tcp: Any) -> None:
        self.ns = ns
        self.tcp = tcp
        self.inet6 = ns.inet6

    # ---- addresses ------------------------------------------------------------------------------
    def local_sockaddr(self, pcb: Any, addr: tuple) -> tuple[bytes, int]:
        a, port, scope = in6_sockaddr(addr)
        if is_v4mapped(a):
            if pcb.v6only:
                raise KernelError(Errno.EINVAL, "IPV6_V6ONLY socket and a v4-mapped "
                                  "address")           # Linux's inet6_bind
            return a[12:], port
        if is_multicast(a):
            raise KernelError(Errno.EINVAL, "TCP cannot bind a multicast address")
        if scope_of(a):
            if not scope:
                raise KernelError(Errno.EINVAL, "a link-local address needs a scope id")
            self.inet6.zone_ifp(scope)
            pcb.scope = scope
        return a, port

    @staticmethod
    def sockaddr(addr: bytes, port: int, scope: int) -> tuple:
        if len(addr) == 4:
            return sockaddr6(V4MAPPED + addr, port, 0)
        return sockaddr6(addr, port, scope)

    def zone_of(self, addr: bytes) -> int:
        if not scope_of(addr):
            return 0
        ifp = self.inet6.owner(addr)
        return ifp.index if ifp is not None else 0

    # ---- routes and MSS ------------------------------------------------------------------------
    def route(self, so: Any, pcb: Any, addr: tuple) -> tuple[bytes, bytes, int, int]:
        faddr, fport, scope = in6_sockaddr(addr)
        if is_v4mapped(faddr):
            if pcb.v6only:
                raise KernelError(Errno.ENETUNREACH, "IPV6_V6ONLY socket and a v4-mapped "
                                  "address")
            if len(pcb.laddr) == 16 and not pcb.unbound:
                raise KernelError(Errno.ENETUNREACH, "bound to an IPv6 address")
            laddr, faddr4, mss = self.tcp.route4(pcb, faddr[12:])
            return laddr, faddr4, fport, mss
        if len(pcb.laddr) == 4 and not pcb.unbound:
            raise KernelError(Errno.ENETUNREACH, "bound to an IPv4 address")
        if faddr == UNSPECIFIED:
            faddr = LOOPBACK
        if is_multicast(faddr):
            raise KernelError(Errno.ENETUNREACH, "TCP to a multicast address")
        inet6 = self.inet6
        ifp, _nh, _rt = inet6.route_out(faddr, scope or pcb.scope, so.bound_if)
        laddr = pcb.laddr if not pcb.unbound else inet6.select_source(faddr, ifp)
        if scope_of(faddr) or scope_of(laddr):
            pcb.scope = ifp.index
        return laddr, faddr, fport, self._mss(faddr, ifp)

    def route_mss(self, laddr: bytes, dst: bytes) -> int | None:
        try:
            ifp, _nh, _rt = self.inet6.route_out(dst, self.zone_of(laddr))
        except KernelError:
            return None
        return self._mss(dst, ifp)

    def _mss(self, dst: bytes, ifp: Any) -> int:
        out = ifp
        rt = self.inet6.routes.lookup(dst) if not scope_of(dst) else None
        if rt is not None and rt.ifp is not None:
            out = rt.ifp
        mtu = out.in6.mtu if out.in6 is not None else out.mtu
        pm = self.inet6.pmtu(dst) if self.inet6.pmtus else None
        if pm is not None and pm < mtu:
            mtu = pm
        return max(mtu, MIN_MTU) - HEADERS

    # ---- output --------------------------------------------------------------------------------
    def output(self, pcb: Any, src: bytes, dst: bytes, seg: Any) -> None:
        from rumpkernel.net.inet6.ip6 import ip6_output

        if pcb is not None:
            hlim, tclass, scope = pcb.ttl, pcb.tos, pcb.scope
        else:
            hlim, tclass, scope = None, 0, self.zone_of(src) if scope_of(dst) else 0
        self.ns.count("tcp6", "opackets")
        ip6_output(self.inet6, src, dst, NH_TCP, emit_for(seg, src, dst), hlim=hlim,
                   tclass=tclass, scope=scope)

    # ---- options --------------------------------------------------------------------------------
    def getopt(self, pcb: Any, name: int) -> bytes:
        if name == IPV6_V6ONLY:
            return int_opt(int(pcb.v6only))
        if name == IPV6_UNICAST_HOPS:
            return int_opt(self.inet6.hlim if pcb.ttl is None else pcb.ttl)
        if name == IPV6_TCLASS:
            return int_opt(pcb.tos)
        raise KernelError(Errno.ENOPROTOOPT, f"tcp6: IPv6 option {name}")

    def setopt(self, pcb: Any, name: int, value: bytes) -> None:
        v = opt_int(value)
        if name == IPV6_V6ONLY:
            if pcb.lport:
                raise KernelError(Errno.EINVAL, "IPV6_V6ONLY after bind")
            pcb.v6only = bool(v)
        elif name == IPV6_UNICAST_HOPS:
            if not -1 <= v <= 255:
                raise KernelError(Errno.EINVAL, f"IPV6_UNICAST_HOPS {v}")
            pcb.ttl = None if v == -1 else v
        elif name == IPV6_TCLASS:
            if not -1 <= v <= 255:
                raise KernelError(Errno.EINVAL, f"IPV6_TCLASS {v}")
            pcb.tos = max(v, 0)
        else:
            raise KernelError(Errno.ENOPROTOOPT, f"tcp6: IPv6 option {name}")

    # ---- input and ICMPv6 -----------------------------------------------------------------------
    def input(self, ifp: Any, ip: Any, payload: bytes) -> None:
        tcp = self.tcp
        if ip.multicast:
            tcp.stack.stats.drop("multicast")
            return
        self.ns.count("tcp6", "ipackets")
        tcp.stack.input_bytes(ip.src, ip.dst, payload, tcp.now())
        tcp._flush()

    def _conn(self, src: bytes, dst: bytes, upper: bytes) -> Any:
        if len(upper) < 8:
            return None
        sport = int.from_bytes(upper[0:2], "big")
        dport = int.from_bytes(upper[2:4], "big")
        return self.tcp.stack.connections.get((src, sport, dst, dport))

    def ctlinput(self, errno: int, src: bytes, dst: bytes, upper: bytes) -> None:
        """An ICMPv6 error about a segment we sent: fatal in SYN_SENT for our SYN."""
        from rumpkernel.net.inet.tcp_fsm import TcpState

        conn = self._conn(src, dst, upper)
        if conn is None or conn.state != TcpState.SYN_SENT or \
                int.from_bytes(upper[4:8], "big") != conn.iss:
            return
        tcp = self.tcp
        now = tcp.now()
        conn.drop(Errno(errno), now, send_rst=False)
        conn._done(now)
        tcp._flush()

    def pmtu(self, src: bytes, dst: bytes, upper: bytes, mtu: int) -> None:
        """Packet too big (RFC 8201 4): smaller segments for this connection from now on,
        and what is in flight again at the new size."""
        conn = self._conn(src, dst, upper)
        if conn is None or not conn.connected:
            return
        optlen = 12 if conn.ts_ok else 0
        mss = max(min(max(mtu, MIN_MTU) - HEADERS, conn.peer_mss) - optlen, 64)
        if mss >= conn.snd_mss:
            return
        tcp = self.tcp
        resend(conn, mss, tcp.now())
        self.ns.count("tcp6", "pmtu_lowered")
        tcp._flush()


def resend(conn: Any, mss: int, now: float) -> None:
    """Lower ``conn``'s send MSS and go back to snd_una (as after a timeout, but the
    congestion window stays: Linux's tcp_simple_retransmit)."""
    from rumpkernel.net.inet.tcp_output import output

    conn.snd_mss = mss
    if conn.snd_max > conn.snd_una:
        conn.rtt_seq = None
        conn.snd_nxt = conn.snd_una
        output(conn, now)


def attach_tcp6(ns: Any) -> None:
    inet = ns.inet
    tcp = getattr(inet, "tcp", None) if inet is not None else None
    if tcp is None:
        return
    glue = Tcp6Glue(ns, tcp)
    tcp.v6 = glue
    ns.inet6.register_protocol(NH_TCP, glue.input, glue.ctlinput)
    ns.inet6.pmtu_hooks[NH_TCP] = glue.pmtu
    register_tcp6(ns, Tcp6Protocol(ns, tcp))
