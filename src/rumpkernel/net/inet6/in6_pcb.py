"""IPv6 protocol control blocks (NetBSD's in6_pcb.c, ip6_output.c's ip6_ctloutput): addresses,
ports, zones and per-socket IPv6 options of UDP, raw and ICMPv6 echo sockets, and the
dual-stack half of a socket that is not IPV6_V6ONLY.

Interface:
    In6Pcb(so, v6only)          laddr, lport, faddr, fport (:: / 0 when unset), scope (the
                                zone of a link-local or multicast address: an interface index),
                                hlim, mhops, mloop, mif, tclass, dontfrag, v6only, groups,
                                shadow (the IPv4 InPcb of a dual-stack socket), cksum (raw)
    Pcb6Table(inet6, name, v4=None)     ``v4``: the PcbTable of the same protocol in IPv4, for
                                        dual-stack sockets
        bind(pcb, laddr, lport, scope, root)   EADDRINUSE, EACCES (port < 1024), EADDRNOTAVAIL
                                               (not ours), EINVAL (bound already; a
                                               link-local address without a zone; a
                                               v4-mapped one on a V6ONLY socket)
        connect(pcb, faddr, fport, scope)      picks the source address and a port
        disconnect(pcb) / detach(pcb)
        lookup(dst, dport, src, sport, ifindex) -> In6Pcb | None   the most specific match
        matches(dst, dport, src, sport, ifindex) -> [In6Pcb]       every match (multicast)
    in6_sockaddr(addr) -> (addr16, port, scope)   EAFNOSUPPORT for other families
    sockaddr6(addr, port, scope) -> the tuple the socket layer encodes
    ip6_getopt(pcb, inet6, name) / ip6_setopt(pcb, inet6, name, value)   level IPPROTO_IPV6
    output(inet6, so, pcb, dst, scope, nh, build)  route, source, ``build(src) -> payload``,
                                                   send with the socket's options

Dual stack (RFC 3493 3.7): a socket that is not IPV6_V6ONLY and is bound to :: (or to a
v4-mapped address) also holds the port in the IPv4 table through its ``shadow`` pcb, so IPv4
datagrams reach it (with v4-mapped source addresses) and the port conflicts with IPv4 sockets.
Connecting to a v4-mapped address makes the socket an IPv4 one in all but name; connecting to
an IPv6 address drops the shadow.  IPV6_V6ONLY can change only before bind (EINVAL after).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import (
    AF_INET6,
    IPV6_CHECKSUM,
    IPV6_DONTFRAG,
    IPV6_JOIN_GROUP,
    IPV6_LEAVE_GROUP,
    IPV6_MULTICAST_HOPS,
    IPV6_MULTICAST_IF,
    IPV6_MULTICAST_LOOP,
    IPV6_TCLASS,
    IPV6_UNICAST_HOPS,
    IPV6_V6ONLY,
    SO_REUSEADDR,
    SO_REUSEPORT,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet6.in6 import V4MAPPED, is_v4mapped, scope_of
from rumpkernel.net.socket import int_opt, opt_int
from rumpkernel.net.wire.ipv6 import LOOPBACK, UNSPECIFIED, is_multicast

if TYPE_CHECKING:
    from rumpkernel.net.inet6.in6 import Inet6

PORT_FIRST, PORT_LAST = 49152, 65535
RESERVED = 1024
ANY4 = b"\0\0\0\0"
MAX_GROUPS = 20                      # memberships per socket (Linux's optmem bound is similar)


class In6Pcb:
    __slots__ = ("cksum", "dontfrag", "faddr", "fport", "groups", "hlim", "laddr", "lport",
                 "mhops", "mif", "mloop", "scope", "shadow", "so", "tclass", "v6only")

    def __init__(self, so: Any, v6only: bool = False) -> None:
        self.so = so
        self.laddr = UNSPECIFIED
        self.lport = 0
        self.faddr = UNSPECIFIED
        self.fport = 0
        self.scope = 0
        self.hlim: int | None = None
        self.mhops: int | None = None
        self.mloop = True
        self.mif = 0
        self.tclass = 0
        self.dontfrag = False
        self.v6only = v6only
        self.groups: list[tuple[int, bytes]] = []
        self.shadow: Any = None
        self.cksum = -1

    @property
    def mapped(self) -> bool:
        return is_v4mapped(self.laddr) or is_v4mapped(self.faddr)


def in6_sockaddr(addr: tuple) -> tuple[bytes, int, int]:
    if addr[0] != AF_INET6 or len(addr) < 5:
        raise KernelError(Errno.EAFNOSUPPORT, "not an AF_INET6 address")
    return addr[1], addr[2], addr[4]


def sockaddr6(addr: bytes, port: int, scope: int = 0) -> tuple:
    return (AF_INET6, addr, port, 0, scope if scope_of(addr) else 0)


def mapped(a4: bytes) -> bytes:
    return V4MAPPED + a4


class Pcb6Table:
    def __init__(self, inet6: Inet6, name: str, v4: Any = None) -> None:
        self.inet6 = inet6
        self.name = name
        self.v4 = v4
        self.ports: dict[int, list[In6Pcb]] = {}
        self.next_port = PORT_FIRST + inet6.rand(PORT_LAST - PORT_FIRST + 1)

    # ---- binding ------------------------------------------------------------------------------
    @staticmethod
    def _reusable(a: In6Pcb, b: In6Pcb) -> bool:
        oa, ob = a.so.options, b.so.options
        return bool((oa & ob & SO_REUSEPORT) or (oa & ob & SO_REUSEADDR))

    def _conflict(self, pcb: In6Pcb, laddr: bytes, lport: int) -> bool:
        for other in self.ports.get(lport, ()):
            if other is pcb:
                continue
            if laddr != UNSPECIFIED and other.laddr != UNSPECIFIED and laddr != other.laddr:
                continue
            if not self._reusable(pcb, other):
                return True
        return False

    def _check_local(self, laddr: bytes, scope: int) -> None:
        inet6 = self.inet6
        if laddr == UNSPECIFIED or is_multicast(laddr):
            return
        if is_v4mapped(laddr):
            inet = inet6.ns.inet
            a4 = laddr[12:]
            if a4 != ANY4 and (inet is None or (a4 not in inet.local
                                                and not inet.is_broadcast(a4))):
                raise KernelError(Errno.EADDRNOTAVAIL, "not a local address")
            return
        if scope_of(laddr) and not scope:
            raise KernelError(Errno.EINVAL, "a link-local address needs a scope id")
        if inet6.owner(laddr, scope) is None:
            raise KernelError(Errno.EADDRNOTAVAIL, "not a local address")

    def bind(self, pcb: In6Pcb, laddr: bytes, lport: int, scope: int, root: bool) -> None:
        if pcb.lport:
            raise KernelError(Errno.EINVAL, "socket is already bound")
        if scope:
            self.inet6.zone_ifp(scope)
        is_mapped = is_v4mapped(laddr)
        if is_mapped and pcb.v6only:
            raise KernelError(Errno.EINVAL, "IPV6_V6ONLY socket and a v4-mapped "
                              "address")               # Linux's inet6_bind
        self._check_local(laddr, scope)
        dual = self.v4 is not None and not pcb.v6only and (laddr == UNSPECIFIED or is_mapped)
        if lport == 0:
            lport = self.ephemeral(laddr, pcb, dual)
        else:
            if lport < RESERVED and not root:
                raise KernelError(Errno.EACCES, f"port {lport} needs root")
            if not is_mapped and self._conflict(pcb, laddr, lport):
                raise KernelError(Errno.EADDRINUSE, f"port {lport} in use")
        if dual:
            from rumpkernel.net.inet.in_pcb import InPcb

            shadow = InPcb(pcb.so)
            self.v4.bind(shadow, laddr[12:] if is_mapped else ANY4, lport, root)
            pcb.shadow = shadow
        pcb.laddr = laddr
        pcb.lport = lport
        pcb.scope = scope if scope_of(laddr) else 0
        self.ports.setdefault(lport, []).append(pcb)

    def ephemeral(self, laddr: bytes = UNSPECIFIED, pcb: In6Pcb | None = None,
                  dual: bool = False) -> int:
        span = PORT_LAST - PORT_FIRST + 1
        for _ in range(span):
            p = self.next_port
            self.next_port = PORT_FIRST if p >= PORT_LAST else p + 1
            if p in self.ports:
                continue
            if dual and self.v4.ports.get(p):
                continue
            return p
        raise KernelError(Errno.EAGAIN, f"{self.name}: no free ephemeral port")

    def _drop_shadow(self, pcb: In6Pcb) -> None:
        if pcb.shadow is not None:
            self.v4.detach(pcb.shadow)
            pcb.shadow = None

    # ---- association ------------------------------------------------------------------------
    def connect(self, pcb: In6Pcb, faddr: bytes, fport: int, scope: int) -> None:
        if fport == 0 and self.name == "udp6":
            raise KernelError(Errno.EADDRNOTAVAIL, "port 0")
        if faddr == UNSPECIFIED:
            faddr = mapped(b"\x7f\0\0\x01") if is_v4mapped(pcb.laddr) else LOOPBACK
        if is_v4mapped(faddr):
            self._connect4(pcb, faddr, fport)
            return
        if is_v4mapped(pcb.laddr):
            raise KernelError(Errno.ENETUNREACH, "bound to an IPv4 address")
        ifp, _nh, _rt = self.inet6.route_out(faddr, scope or pcb.scope,
                                             getattr(pcb.so, "bound_if", 0))
        src = pcb.laddr if pcb.laddr != UNSPECIFIED else self.inet6.select_source(faddr, ifp)
        if not pcb.lport:
            self.bind(pcb, UNSPECIFIED, 0, 0, False)
        self._drop_shadow(pcb)
        pcb.laddr = src
        pcb.faddr = faddr
        pcb.fport = fport
        pcb.scope = ifp.index if scope_of(faddr) or scope_of(src) else 0

    def _connect4(self, pcb: In6Pcb, faddr: bytes, fport: int) -> None:
        if pcb.v6only or self.v4 is None:
            raise KernelError(Errno.ENETUNREACH, "IPV6_V6ONLY socket and a v4-mapped address")
        if pcb.laddr != UNSPECIFIED and not is_v4mapped(pcb.laddr):
            raise KernelError(Errno.ENETUNREACH, "bound to an IPv6 address")
        if not pcb.lport:
            self.bind(pcb, UNSPECIFIED, 0, 0, False)
        if pcb.shadow is None:
            raise KernelError(Errno.ENETUNREACH, "the socket has no IPv4 half")
        self.v4.connect(pcb.shadow, faddr[12:], fport)
        pcb.laddr = mapped(pcb.shadow.laddr)
        pcb.faddr = faddr
        pcb.fport = fport

    def disconnect(self, pcb: In6Pcb) -> None:
        pcb.faddr = UNSPECIFIED
        pcb.fport = 0
        pcb.laddr = UNSPECIFIED
        pcb.scope = 0
        if pcb.shadow is not None:
            self.v4.disconnect(pcb.shadow)
        elif self.v4 is not None and not pcb.v6only and pcb.lport:
            from rumpkernel.net.inet.in_pcb import InPcb

            shadow = InPcb(pcb.so)
            try:
                self.v4.bind(shadow, ANY4, pcb.lport, True)
                pcb.shadow = shadow
            except KernelError:
                pass                             # the IPv4 port went to someone else

    def detach(self, pcb: In6Pcb) -> None:
        lst = self.ports.get(pcb.lport)
        if lst is not None and pcb in lst:
            lst.remove(pcb)
            if not lst:
                del self.ports[pcb.lport]
        if self.v4 is not None:
            self._drop_shadow(pcb)
        for ifindex, group in pcb.groups:
            ifp = self.inet6.ns.ifindex.get(ifindex)
            if ifp is not None:
                self.inet6.leave(ifp, group)
        pcb.groups.clear()
        pcb.lport = 0

    # ---- demultiplexing -------------------------------------------------------------------------
    @staticmethod
    def _zone_ok(pcb: In6Pcb, ifindex: int) -> bool:
        bound = getattr(pcb.so, "bound_if", 0)
        return (not pcb.scope or pcb.scope == ifindex) and (not bound or bound == ifindex)

    def lookup(self, dst: bytes, dport: int, src: bytes, sport: int,
               ifindex: int) -> In6Pcb | None:
        best, score = None, -1
        for pcb in self.ports.get(dport, ()):
            if pcb.mapped or not self._zone_ok(pcb, ifindex):
                continue
            s = 0
            if pcb.faddr != UNSPECIFIED:
                if pcb.faddr != src or pcb.fport != sport:
                    continue
                s += 2
            if pcb.laddr != UNSPECIFIED:
                if pcb.laddr != dst:
                    continue
                s += 1
            if s > score:
                best, score = pcb, s
        return best

    def matches(self, dst: bytes, dport: int, src: bytes, sport: int,
                ifindex: int) -> list[In6Pcb]:
        out = []
        for pcb in self.ports.get(dport, ()):
            if pcb.mapped or not self._zone_ok(pcb, ifindex):
                continue
            if pcb.laddr not in (UNSPECIFIED, dst):
                continue
            if pcb.faddr != UNSPECIFIED and (pcb.faddr != src or pcb.fport != sport):
                continue
            out.append(pcb)
        return out

    def all(self) -> list[In6Pcb]:
        return [p for lst in self.ports.values() for p in lst]


# ---- options ------------------------------------------------------------------------------------
def ip6_getopt(pcb: In6Pcb, inet6: Inet6, name: int) -> bytes:
    if name == IPV6_V6ONLY:
        return int_opt(int(pcb.v6only))
    if name == IPV6_UNICAST_HOPS:
        return int_opt(inet6.hlim if pcb.hlim is None else pcb.hlim)
    if name == IPV6_MULTICAST_HOPS:
        return int_opt(1 if pcb.mhops is None else pcb.mhops)
    if name == IPV6_MULTICAST_LOOP:
        return int_opt(int(pcb.mloop))
    if name == IPV6_MULTICAST_IF:
        return int_opt(pcb.mif)
    if name == IPV6_TCLASS:
        return int_opt(pcb.tclass)
    if name == IPV6_DONTFRAG:
        return int_opt(int(pcb.dontfrag))
    if name == IPV6_CHECKSUM:
        return int_opt(pcb.cksum)
    raise KernelError(Errno.ENOPROTOOPT, f"IPv6 option {name}")


def _hops(v: int, name: str) -> int | None:
    if v == -1:
        return None
    if not 0 <= v <= 255:
        raise KernelError(Errno.EINVAL, f"{name} {v}")
    return v


def ip6_setopt(pcb: In6Pcb, inet6: Inet6, name: int, value: bytes) -> None:
    if name in (IPV6_JOIN_GROUP, IPV6_LEAVE_GROUP):
        _membership(pcb, inet6, name == IPV6_JOIN_GROUP, value)
        return
    v = opt_int(value)
    if name == IPV6_V6ONLY:
        if pcb.lport:
            raise KernelError(Errno.EINVAL, "IPV6_V6ONLY after bind")
        pcb.v6only = bool(v)
    elif name == IPV6_UNICAST_HOPS:
        pcb.hlim = _hops(v, "IPV6_UNICAST_HOPS")
    elif name == IPV6_MULTICAST_HOPS:
        pcb.mhops = _hops(v, "IPV6_MULTICAST_HOPS")
    elif name == IPV6_MULTICAST_LOOP:
        if v not in (0, 1):
            raise KernelError(Errno.EINVAL, f"IPV6_MULTICAST_LOOP {v}")
        pcb.mloop = bool(v)
    elif name == IPV6_MULTICAST_IF:
        if v:
            inet6.zone_ifp(v)
        pcb.mif = v
    elif name == IPV6_TCLASS:
        if not -1 <= v <= 255:
            raise KernelError(Errno.EINVAL, f"IPV6_TCLASS {v}")
        pcb.tclass = max(v, 0)
    elif name == IPV6_DONTFRAG:
        pcb.dontfrag = bool(v)
    else:
        raise KernelError(Errno.ENOPROTOOPT, f"IPv6 option {name}")


def _membership(pcb: In6Pcb, inet6: Inet6, join: bool, value: bytes) -> None:
    """struct ipv6_mreq: the group (16 bytes), then the interface index (4 bytes, host
    order; 0: the interface a route to the group would use)."""
    if len(value) < 20:
        raise KernelError(Errno.EINVAL, f"ipv6_mreq of {len(value)} bytes")
    group = bytes(value[:16])
    index = int.from_bytes(value[16:20], "little")
    if not is_multicast(group):
        raise KernelError(Errno.EINVAL, "not a multicast address")
    if not index:
        ups = [i for i in inet6.up_interfaces() if not i.in6.loop]
        if not ups:
            raise KernelError(Errno.EADDRNOTAVAIL, "no interface for the group")
        index = ups[0].index
    ifp = inet6.zone_ifp(index)
    key = (index, group)
    if join:
        if key in pcb.groups:
            raise KernelError(Errno.EADDRINUSE, "already a member")
        if len(pcb.groups) >= MAX_GROUPS:
            raise KernelError(Errno.ENOBUFS, "too many memberships")
        inet6.join(ifp, group)
        pcb.groups.append(key)
    else:
        if key not in pcb.groups:
            raise KernelError(Errno.EADDRNOTAVAIL, "not a member")
        pcb.groups.remove(key)
        inet6.leave(ifp, group)


# ---- output ---------------------------------------------------------------------------------
def output(inet6: Inet6, so: Any, pcb: In6Pcb, dst: bytes, scope: int, nh: int,
           build: Callable[[bytes], bytes]) -> None:
    from rumpkernel.net.inet6.ip6 import ip6_output

    bound = getattr(so, "bound_if", 0)
    zone = scope or (pcb.scope if dst == pcb.faddr else 0)
    if is_multicast(dst) and not zone:
        zone = pcb.mif
    route = inet6.route_out(dst, zone, bound)
    ifp = route[0]
    src = pcb.laddr
    chosen = src == UNSPECIFIED or is_multicast(src)
    if chosen:
        src = inet6.select_source(dst, ifp)
    hlim = pcb.mhops if dst[0] == 0xFF else pcb.hlim
    ip6_output(inet6, src, dst, nh, build(src), hlim=hlim, tclass=pcb.tclass,
               dontfrag=pcb.dontfrag, mloop=pcb.mloop, route=route, src_ok=chosen)
