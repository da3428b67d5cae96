"""The inet domain's state (``ns.inet``): interface addresses, the connected and local routes
they imply, the protocol input table, parameters (sysctl ``net.inet.*``) and timers.

Interface:
    Inet(ns)                              made by the "net_inet" component
    add_address(ifp, addr, mask, broadcast=None)   SIOCAIFADDR: replaces the mask/broadcast of
                                          an address the interface has; adds the subnet route
                                          and a local host route, brings the interface up and
                                          announces the address (gratuitous ARP)
    delete_address(ifp, addr)             SIOCDIFADDR (EADDRNOTAVAIL)
    is_local(addr) / is_broadcast(addr, ifp=None) / ifaddr_for(addr) -> (ifp, IfAddr) | None
    select_source(dst, bound=None, bound_if=0) -> (src, route)    ENETUNREACH /
                                          EADDRNOTAVAIL; ``bound_if`` (SO_BINDTODEVICE) keeps
                                          the datagram on that interface, and lets a broadcast
                                          leave it from 0.0.0.0 while it has no address (DHCP)
    register_protocol(proto, input_fn, ctlinput_fn=None)
        input_fn(ifp, ip: IpIn, payload: bytes)       a datagram for us (reassembled)
        ctlinput_fn(errno, src, dst, inner: bytes)    an ICMP error about a datagram we sent
                                                      (``inner``: its IP header + 8 bytes)
    next_ident() / now()
    params: forwarding, ttl, errppslimit, bmcastecho, reass (ip_reass.Reassembler)

Protocol handlers are called with the stack lock held; a missing one makes the datagram an
ICMP protocol-unreachable (unless a raw socket took it) and a counted drop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import (
    IFF_BROADCAST,
    IFF_LOOPBACK,
    IFF_UP,
    RTF_CONNECTED,
    RTF_LOCAL,
    RTF_STATIC,
    RTF_UP,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet.ip_reass import Reassembler
from rumpkernel.net.interface import IfAddr
from rumpkernel.net.route import Route
from rumpkernel.net.wire.base import prefix_mask

if TYPE_CHECKING:
    from rumpkernel.net.interface import Ifnet
    from rumpkernel.net.stack import NetStack

ANY = b"\0\0\0\0"
BROADCAST_ALL = b"\xff\xff\xff\xff"


class IpIn:
    """What a protocol's input learns about the datagram that carried its payload."""

    __slots__ = ("broadcast", "dst", "header", "ifp", "proto", "src", "tos", "ttl")

    def __init__(self, ifp: Any, src: bytes, dst: bytes, proto: int, ttl: int, tos: int,
                 header: bytes, broadcast: bool) -> None:
        self.ifp = ifp
        self.src = src
        self.dst = dst
        self.proto = proto
        self.ttl = ttl
        self.tos = tos
        self.header = header
        self.broadcast = broadcast


class Inet:
    def __init__(self, ns: NetStack) -> None:
        self.ns = ns
        self.k = ns.k
        self.local: dict[bytes, tuple[Ifnet, IfAddr]] = {}
        self.bcast: dict[bytes, Ifnet] = {}
        self.protocols: dict[int, Callable[[Any, IpIn, bytes], None]] = {}
        self.ctlinputs: dict[int, Callable[[int, bytes, bytes, bytes], None]] = {}
        self.forwarding = 0
        self.ttl = 64
        self.errppslimit = 100
        self.bmcastecho = 0
        self.reass = Reassembler()
        self.reass_accounted = 0
        self.reass_callout = ns.callout(self._reass_timer)
        self.reass_armed = 0
        self.ident = int.from_bytes(self.k.random_bytes(2), "big")
        self.icmp_tokens = float(self.errppslimit)
        self.icmp_last = self.now()
        self.raw: Any = None        # the raw IP protocol (raw sockets get a copy of input)
        self.udp: Any = None
        self.ping: Any = None       # ICMP echo sockets (they get the echo replies)

    # ---- time, ids ------------------------------------------------------------------------
    def now(self) -> int:
        return self.k.monotonic_ns()

    def next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFF
        return self.ident

    def register_protocol(self, proto: int, input_fn: Callable[[Any, IpIn, bytes], None],
                          ctlinput_fn: Callable[[int, bytes, bytes, bytes], None] | None = None
                          ) -> None:
        self.protocols[proto] = input_fn
        if ctlinput_fn is not None:
            self.ctlinputs[proto] = ctlinput_fn

    # ---- addresses -----------------------------------------------------------------------------
    def is_local(self, addr: bytes) -> bool:
        return addr in self.local

    def is_broadcast(self, addr: bytes, ifp: Ifnet | None = None) -> bool:
        if addr == BROADCAST_ALL:
            return True
        owner = self.bcast.get(addr)
        return owner is not None and (ifp is None or owner is ifp)

    def ifaddr_for(self, addr: bytes) -> tuple[Ifnet, IfAddr] | None:
        return self.local.get(addr)

    def add_address(self, ifp: Ifnet, addr: bytes, mask: bytes,
                    broadcast: bytes | None = None) -> None:
        if addr == ANY or addr[0] >= 224:
            raise KernelError(Errno.EINVAL, "not a unicast address")
        plen = _plen(mask)
        if ifp.flags & IFF_BROADCAST and broadcast is None and plen < 31:
            broadcast = bytes(a | (~m & 0xFF) for a, m in zip(addr, mask))
        owner = self.local.get(addr)
        if owner is not None and owner[0] is not ifp:
            raise KernelError(Errno.EEXIST, "address is assigned to another interface")
        if owner is not None:
            self.delete_address(ifp, addr)
        ia = IfAddr(addr, mask, broadcast)
        ifp.addrs.append(ia)
        self.local[addr] = (ifp, ia)
        if broadcast is not None:
            self.bcast[broadcast] = ifp
        self._add_routes(ifp, ia)
        self.ns.set_up(ifp, True)
        announce = self.ns.link_announce.get(ifp.kind)
        if announce is not None:
            announce(ifp, addr)

    def _add_routes(self, ifp: Ifnet, ia: IfAddr) -> None:
        routes = self.ns.routes
        plen = ia.plen
        if plen < 32 and routes.get(ia.addr, plen) is None:
            routes.add(Route(ia.addr, plen, None, ifp, RTF_UP | RTF_CONNECTED, src=ia.addr))
        if routes.get(ia.addr, 32) is None:
            lo = self.loopback_ifp()
            routes.add(Route(ia.addr, 32, None, lo or ifp, RTF_UP | RTF_LOCAL, src=ia.addr))

    def loopback_ifp(self) -> Ifnet | None:
        for ifp in self.ns.interfaces.values():
            if ifp.flags & IFF_LOOPBACK:
                return ifp
        return None

    def delete_address(self, ifp: Ifnet, addr: bytes) -> None:
        owner = self.local.get(addr)
        if owner is None or owner[0] is not ifp:
            raise KernelError(Errno.EADDRNOTAVAIL, "the interface has no such address")
        ia = owner[1]
        ifp.addrs.remove(ia)
        del self.local[addr]
        if ia.broadcast is not None and self.bcast.get(ia.broadcast) is ifp:
            del self.bcast[ia.broadcast]
        routes = self.ns.routes
        r = routes.get(ia.addr, 32)
        if r is not None and r.flags & RTF_LOCAL:
            routes.delete(ia.addr, 32)
        r = routes.get(ia.addr, ia.plen)
        if r is not None and r.ifp is ifp and not r.flags & RTF_STATIC and ia.plen < 32:
            routes.delete(ia.addr, ia.plen)
            for other in ifp.addrs:             # another address still covers the subnet
                if other.plen == ia.plen and other.net() == ia.net():
                    self._add_routes(ifp, other)
                    break

    def if_detached(self, ifp: Ifnet) -> None:
        for ia in list(ifp.addrs):
            self.delete_address(ifp, ia.addr)
        lo = self.loopback_ifp()
        if ifp is lo:
            for r in list(self.ns.routes.routes()):
                if r.ifp is ifp and r.flags & RTF_LOCAL:
                    owner = self.local.get(r.dst)
                    if owner is not None:
                        r.ifp = owner[0]

    def select_source(self, dst: bytes, bound: bytes | None = None,
                      bound_if: int = 0) -> tuple[bytes, Route]:
        r = self.ns.routes.lookup(dst)
        if bound_if:
            r = self._device_route(dst, r, bound_if)
            if not r.ifp.addrs and r.src is None and (dst == BROADCAST_ALL
                                                      or self.is_broadcast(dst, r.ifp)):
                return ANY, r                   # DHCP: no address yet, to everyone
        if r is None:
            if dst == BROADCAST_ALL:
                r = self._broadcast_route(bound)
            if r is None:
                self.ns.count("ip", "noroute")
                raise KernelError(Errno.ENETUNREACH, "no route to the destination network")
        if bound is not None and bound != ANY:
            return bound, r
        if r.src is not None and r.src in self.local:
            return r.src, r
        for ia in r.ifp.addrs:
            return ia.addr, r
        if r.flags & RTF_LOCAL:
            return dst, r
        raise KernelError(Errno.EADDRNOTAVAIL, f"{r.ifp.name} has no IPv4 address")

    def _device_route(self, dst: bytes, r: Route | None, index: int) -> Route:
        """SO_BINDTODEVICE: the route if it leaves through that interface (or is local),
        else the destination as if on that interface's link."""
        ifp = self.ns.ifindex.get(index)
        if ifp is None:
            raise KernelError(Errno.ENXIO, f"no interface with index {index}")
        if r is not None and (r.ifp is ifp or r.flags & RTF_LOCAL):
            return r
        src = ifp.addrs[0].addr if ifp.addrs else None
        return Route(dst, 32, None, ifp, RTF_UP, src=src)

    def _broadcast_route(self, bound: bytes | None) -> Route | None:
        """255.255.255.255 leaves through the bound address's interface, else the first
        broadcast-capable interface that is up and has an address."""
        if bound is not None and bound in self.local:
            ifp, ia = self.local[bound]
            return Route(BROADCAST_ALL, 32, None, ifp, RTF_UP, src=ia.addr)
        for ifp in self.ns.interfaces.values():
            if ifp.flags & IFF_BROADCAST and ifp.flags & IFF_UP and ifp.addrs:
                return Route(BROADCAST_ALL, 32, None, ifp, RTF_UP, src=ifp.addrs[0].addr)
        return None

    # ---- reassembly accounting and timer -------------------------------------------------------
    def sync_reass_memory(self) -> None:
        delta = self.reass.held_bytes - self.reass_accounted
        if delta > 0:
            try:
                self.k.kmem.alloc(delta, "ipreass")
            except KernelError:
                self.reass.drop_all()
                self.ns.count("ip", "fragdropped")
                self.k.kmem.free(self.reass_accounted, "ipreass")
                self.reass_accounted = 0
                return
        elif delta < 0:
            self.k.kmem.free(-delta, "ipreass")
        self.reass_accounted = self.reass.held_bytes
        when = self.reass.deadline
        if when is not None and (not self.reass_armed or when < self.reass_armed):
            self.reass_armed = when
            self.ns.schedule(self.reass_callout, when - self.now())

    def _reass_timer(self) -> None:
        from rumpkernel.net.inet import icmp

        self.reass_armed = 0
        for header, first8 in self.reass.timeout(self.now()):
            self.ns.count("ip", "fragtimeout")
            icmp.error(self, header + first8, icmp.TIME_EXCEEDED, icmp.TIMXCEED_REASS)
        self.sync_reass_memory()

    # ---- halt ------------------------------------------------------------------------------------
    def halt_final(self) -> None:
        self.reass.drop_all()
        self.sync_reass_memory()


def _plen(mask: bytes) -> int:
    from rumpkernel.net.wire.base import mask_len

    return mask_len(mask)


def parse_prefix(text: str) -> tuple[bytes, bytes]:
    """"10.0.0.1/24" -> (address, mask)."""
    from rumpkernel.net.wire.base import ip4

    addr, _, plen = text.partition("/")
    return ip4(addr), prefix_mask(int(plen) if plen else 32)
