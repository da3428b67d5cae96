"""The inet6 domain's state (``ns.inet6``): per-interface IPv6 state, the IPv6 routing table,
address bookkeeping, source address selection, parameters (sysctl ``net.inet6.*``) and the
protocol input table.  NetBSD's in6.c / in6_ifattach.c / nd6_rtr.c, around the sans-IO cores
(``addrconf.Addrconf``, ``nd.NeighborCache``, ``frag6.Reassembler6``).

Interface (the stack lock is held for all of them):
    Inet6(ns)                            made by the "net_inet6" component
    ifinfo(ifp) -> Ifinfo6 | None        ``ifp.in6``: IPv6 on one interface (None: down / never up)
    if_up(ifp) / if_down(ifp)            interface state hooks: up starts address
                                         configuration (a link-local address, DAD, router
                                         solicitation; ::1 and fe80::1 on a loopback), down
                                         removes every address (static ones come back at up)
    if_detached(ifp)
    add_address(ifp, addr, plen)         a static address (EEXIST, EINVAL); DAD'd on Ethernet
    delete_address(ifp, addr)            EADDRNOTAVAIL
    owner(addr, scope=0) -> Ifnet | None the interface holding ``addr`` (link-local: on
                                         interface index ``scope``), tentative ones included
    usable(addr, scope=0) -> bool        assigned and not tentative/duplicate
    select_source(dst, ifp) -> bytes     RFC 6724 simplified: same scope, preferred before
                                         deprecated, longest matching prefix (EADDRNOTAVAIL)
    route_out(dst, scope=0, bound_if=0) -> (ifp, nexthop, route | None)
                                         ENETUNREACH (no route, or a link-local/multicast
                                         destination without a zone), EHOSTUNREACH (reject)
    register_protocol(nh, input_fn, ctlinput_fn=None)
        input_fn(ifp, ip: Ip6In, payload)             an upper-layer payload for us
        ctlinput_fn(errno, src, dst, upper: bytes)    an ICMPv6 error about one we sent
                                                      (``upper``: at least 8 bytes of it)
    join(ifp, group) / leave(ifp, group) multicast memberships (counted)
    rand(n) / now() / next_ident()
    pmtu(dst) / set_pmtu(dst, mtu)       path MTU from packet-too-big (10 minutes, 1024 entries)
    pmtu_hooks[nh] = fn(src, dst, upper, mtu)   a transport told of a packet-too-big about
                                         one of its datagrams (TCP lowers its MSS)
    params: forwarding, hlim, accept_rtadv, dad_count, v6only, stable_iid, errppslimit,
            mcastecho, reass (Reassembler6), errlimit (icmp6_error.RateLimit)

Routes: a local host route through lo0 per address (RTF_LOCAL), a prefix route per static
address and per on-link prefix from router advertisements (RTF_CONNECTED), the default route
through the first router of the default router list (RTF_DYNAMIC; a static default wins).
Link-local destinations are not in the table: they leave through the interface their zone
(sockaddr_in6 scope id) names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import (
    IFF_LOOPBACK,
    IFF_UP,
    RTF_BLACKHOLE,
    RTF_CONNECTED,
    RTF_DYNAMIC,
    RTF_LOCAL,
    RTF_REJECT,
    RTF_STATIC,
    RTF_UP,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet6 import addrconf as ac
from rumpkernel.net.inet6.frag6 import Reassembler6
from rumpkernel.net.inet6.icmp6_error import RateLimit
from rumpkernel.net.inet6.nd import NeighborCache
from rumpkernel.net.route import Route, RouteTable
from rumpkernel.net.wire.ipv6 import (
    LOOPBACK,
    UNSPECIFIED,
    is_linklocal,
    is_multicast,
    prefix_match,
    prefix_of,
)

if TYPE_CHECKING:
    from rumpkernel.net.interface import Ifnet
    from rumpkernel.net.stack import NetStack

SEC = 10**9
LL_ONE = bytes.fromhex("fe800000000000000000000000000001")
V4MAPPED = bytes(10) + b"\xff\xff"
PMTU_TIMEOUT = 600 * SEC
PMTU_MAX = 1024


def is_v4mapped(a: bytes) -> bool:
    return a[:12] == V4MAPPED


def scope_of(addr: bytes) -> bool:
    """True when ``addr`` needs a zone (link-local unicast, interface/link-local multicast)."""
    return is_linklocal(addr) or (addr[0] == 0xFF and addr[1] & 0x0F in (1, 2))


class Ip6In:
    """What an upper layer learns about the datagram that carried its payload."""

    __slots__ = ("dst", "hlim", "ifp", "multicast", "nh", "orig", "src", "tclass")

    def __init__(self, ifp: Any, src: bytes, dst: bytes, nh: int, hlim: int, tclass: int,
                 orig: bytes) -> None:
        self.ifp = ifp
        self.src = src
        self.dst = dst
        self.nh = nh
        self.hlim = hlim
        self.tclass = tclass
        self.orig = orig                 # the whole datagram from its IPv6 header (errors)
        self.multicast = dst[0] == 0xFF

    # the names IPv4's IpIn uses, so a transport written for both reads either
    @property
    def ttl(self) -> int:
        return self.hlim

    @property
    def tos(self) -> int:
        return self.tclass

    @property
    def proto(self) -> int:
        return self.nh

    @property
    def header(self) -> bytes:
        return self.orig[:40]

    @property
    def broadcast(self) -> bool:
        return self.multicast

    @property
    def scope(self) -> int:
        """The zone to report with a link-local source (the receiving interface's index)."""
        return self.ifp.index if self.ifp is not None and scope_of(self.src) else 0


class Ifinfo6:
    """IPv6 on one interface: address configuration, neighbour cache, groups, link params."""

    def __init__(self, inet6: Inet6, ifp: Ifnet) -> None:
        self.inet6 = inet6
        self.ifp = ifp
        loop = bool(ifp.flags & IFF_LOOPBACK)
        self.loop = loop
        self.ac = ac.Addrconf(ifp.lladdr or bytes(6), inet6.secret, ifp.name.encode(),
                              mode=ac.STABLE if inet6.stable_iid else ac.EUI64,
                              dad_transmits=0 if loop else inet6.dad_count,
                              router=loop or bool(inet6.forwarding))
        self.nc: NeighborCache | None = None if loop else NeighborCache()
        self.groups: Counter[bytes] = Counter()
        self.statics: dict[bytes, int] = {}          # survive down/up
        self.hop_limit = 0                           # from router advertisements; 0: default
        self.ra_mtu = 0
        self.dns: tuple[bytes, ...] = ()
        self.callout = inet6.ns.callout(self._timer)
        self.armed: int | None = None
        self.accounted = 0

    @property
    def mtu(self) -> int:
        m = self.ifp.mtu
        return min(m, self.ra_mtu) if self.ra_mtu else m

    def _timer(self) -> None:
        from rumpkernel.net.inet6 import nd6

        self.armed = None
        nd6.timer(self)

    def arm(self) -> None:
        times = [t for t in (self.ac.deadline, self.nc.deadline if self.nc else None)
                 if t is not None]
        if not times:
            return
        when = min(times)
        if self.armed is None or when < self.armed:
            self.armed = when
            ns = self.inet6.ns
            ns.schedule(self.callout, max(0, when - ns.k.monotonic_ns()))

    def stop(self) -> None:
        self.inet6.ns.k.callouts.stop(self.callout)
        self.armed = None


class Inet6:
    def __init__(self, ns: NetStack) -> None:
        self.ns = ns
        self.k = ns.k
        self.routes = RouteTable(128)
        self.local: dict[bytes, Ifnet] = {}          # non-link-local unicast addresses
        self.protocols: dict[int, Callable[[Any, Ip6In, bytes], None]] = {}
        self.ctlinputs: dict[int, Callable[[int, bytes, bytes, bytes], None]] = {}
        self.secret = self.k.random_bytes(16)
        self.forwarding = 0
        self.hlim = 64
        self.accept_rtadv = 1
        self.dad_count = 1
        self.v6only = 0
        self.stable_iid = 1
        self.errppslimit = 100
        self.mcastecho = 1
        self.errlimit = RateLimit(self.errppslimit, 10)
        self.reass = Reassembler6()
        self.reass_accounted = 0
        self.reass_callout = ns.callout(self._reass_timer)
        self.reass_armed = 0
        self.ident = int.from_bytes(self.k.random_bytes(4), "big")
        self.pmtus: dict[bytes, tuple[int, int]] = {}
        self.pmtu_hooks: dict[int, Callable[[bytes, bytes, bytes, int], None]] = {}
        self.raw: Any = None
        self.udp: Any = None
        self.ping: Any = None
        self.tcp: Any = None
        self._pool = b""

    # ---- time, randomness, ids ---------------------------------------------------------------
    def now(self) -> int:
        return self.k.monotonic_ns()

    def rand(self, n: int) -> int:
        if n <= 1:
            return 0
        if len(self._pool) < 8:
            self._pool = self.k.random_bytes(64)
        v, self._pool = int.from_bytes(self._pool[:8], "big"), self._pool[8:]
        return v % n

    def next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFFFFFF
        return self.ident

    def register_protocol(self, nh: int, input_fn: Callable[[Any, Ip6In, bytes], None],
                          ctlinput_fn: Callable[[int, bytes, bytes, bytes], None] | None = None
                          ) -> None:
        self.protocols[nh] = input_fn
        if ctlinput_fn is not None:
            self.ctlinputs[nh] = ctlinput_fn

    # ---- interfaces ----------------------------------------------------------------------------
    @staticmethod
    def ifinfo(ifp: Ifnet) -> Ifinfo6 | None:
        return getattr(ifp, "in6", None)

    def if_up(self, ifp: Ifnet) -> None:
        from rumpkernel.net.inet6 import nd6

        in6 = self.ifinfo(ifp)
        if in6 is None:
            in6 = Ifinfo6(self, ifp)
            ifp.in6 = in6
        now = self.now()
        if in6.loop:
            in6.ac.running = True
            in6.ac.actions.append(ac.JoinGroup(ac.ALL_NODES))
            for addr, plen in ((LOOPBACK, 128), (LL_ONE, 64)):
                if addr not in in6.ac.addrs:
                    in6.ac.add_static(addr, plen, now, self.rand)
        else:
            in6.ac.start(now, self.rand)
        for addr, plen in in6.statics.items():
            if addr not in in6.ac.addrs:
                in6.ac.add_static(addr, plen, now, self.rand)
        nd6.sync(in6)

    def if_down(self, ifp: Ifnet) -> None:
        from rumpkernel.net.inet6 import nd6

        in6 = self.ifinfo(ifp)
        if in6 is None:
            return
        acts = in6.ac.stop()
        nd6.apply(in6, acts)
        if in6.nc is not None:
            in6.nc.flush()
        in6.groups.clear()
        in6.hop_limit = in6.ra_mtu = 0
        nd6.sync(in6)
        in6.stop()

    def if_detached(self, ifp: Ifnet) -> None:
        self.if_down(ifp)
        in6 = self.ifinfo(ifp)
        if in6 is not None:
            in6.statics.clear()
            ifp.in6 = None
        self.routes.delete_if(ifp)
        self.routers_changed()

    def up_interfaces(self) -> list[Ifnet]:
        return [i for i in self.ns.interfaces.values()
                if i.flags & IFF_UP and self.ifinfo(i) is not None]

    # ---- addresses -----------------------------------------------------------------------------
    def add_address(self, ifp: Ifnet, addr: bytes, plen: int) -> None:
        from rumpkernel.net.inet6 import nd6

        if is_multicast(addr) or addr == UNSPECIFIED or is_v4mapped(addr) \
                or not 0 < plen <= 128:
            raise KernelError(Errno.EINVAL, "not a unicast address / prefix length")
        owner = self.local.get(addr)
        if owner is not None and owner is not ifp:
            raise KernelError(Errno.EEXIST, "address is assigned to another interface")
        in6 = self.ifinfo(ifp)
        if in6 is not None and addr in in6.ac.addrs:
            if in6.statics.get(addr) == plen:
                raise KernelError(Errno.EEXIST, "address already configured")
            in6.ac.remove(addr)
            nd6.apply(in6, in6.ac.take_actions())
        if not ifp.flags & IFF_UP:
            self.ns.set_up(ifp, True)
        in6 = self.ifinfo(ifp)
        assert in6 is not None
        in6.statics[addr] = plen
        if addr not in in6.ac.addrs:
            in6.ac.add_static(addr, plen, self.now(), self.rand)
        nd6.sync(in6)

    def delete_address(self, ifp: Ifnet, addr: bytes) -> None:
        from rumpkernel.net.inet6 import nd6

        in6 = self.ifinfo(ifp)
        if in6 is None or addr not in in6.ac.addrs:
            raise KernelError(Errno.EADDRNOTAVAIL, "the interface has no such address")
        in6.statics.pop(addr, None)
        in6.ac.remove(addr)
        nd6.sync(in6)

    def owner(self, addr: bytes, scope: int = 0) -> Ifnet | None:
        if is_linklocal(addr):
            cands = [self.ns.ifindex.get(scope)] if scope else list(self.ns.interfaces.values())
            for ifp in cands:
                in6 = self.ifinfo(ifp) if ifp is not None else None
                if in6 is not None and addr in in6.ac.addrs:
                    return ifp
            return None
        return self.local.get(addr)

    def usable(self, addr: bytes, scope: int = 0) -> bool:
        ifp = self.owner(addr, scope)
        return ifp is not None and ifp.in6.ac.usable(addr)

    def is_local(self, addr: bytes) -> bool:
        return self.usable(addr)

    def addresses(self, ifp: Ifnet) -> list[ac.AddressInfo]:
        in6 = self.ifinfo(ifp)
        return in6.ac.addresses() if in6 is not None else []

    # ---- source selection ------------------------------------------------------------------------
    def select_source(self, dst: bytes, ifp: Ifnet | None) -> bytes:
        if dst == LOOPBACK:
            return LOOPBACK
        own = self.owner(dst, ifp.index if ifp is not None else 0)
        if own is not None and own.in6.ac.usable(dst):
            return dst
        link = scope_of(dst)
        best: tuple | None = None
        pools = [ifp] if ifp is not None else []
        if not link:
            pools += [i for i in self.up_interfaces() if i is not ifp]
        for rank_if, i in enumerate(pools):
            in6 = self.ifinfo(i)
            if in6 is None:
                continue
            for a in in6.ac.addresses():
                if a.state not in (ac.PREFERRED, ac.DEPRECATED):
                    continue
                ll = is_linklocal(a.addr)
                if a.addr == LOOPBACK and dst != LOOPBACK:
                    continue
                if link and not ll:
                    continue
                key = (ll != link, rank_if, a.state != ac.PREFERRED,
                       -_common_prefix(a.addr, dst))
                if best is None or key < best[0]:
                    best = (key, a.addr)
        if best is None:
            raise KernelError(Errno.EADDRNOTAVAIL, "no usable IPv6 source address")
        return best[1]

    # ---- routing ---------------------------------------------------------------------------------
    def zone_ifp(self, scope: int) -> Ifnet:
        ifp = self.ns.ifindex.get(scope)
        if ifp is None:
            raise KernelError(Errno.ENXIO, f"no interface with index {scope}")
        return ifp

    def route_out(self, dst: bytes, scope: int = 0, bound_if: int = 0
                  ) -> tuple[Ifnet, bytes, Route | None]:
        if scope_of(dst):
            zone = scope or bound_if
            if not zone:
                self.ns.count("ip6", "noroute")
                raise KernelError(Errno.ENETUNREACH, "a link-local or multicast destination "
                                  "needs a zone (scope id)")
            return self.zone_ifp(zone), dst, None
        if is_multicast(dst):
            if bound_if:
                return self.zone_ifp(bound_if), dst, None
        rt = self.routes.lookup(dst)
        if rt is None:
            if bound_if:
                return self.zone_ifp(bound_if), dst, None
            self.ns.count("ip6", "noroute")
            raise KernelError(Errno.ENETUNREACH, "no route to the destination network")
        if rt.flags & RTF_REJECT:
            raise KernelError(Errno.EHOSTUNREACH, "reject route")
        if bound_if and rt.ifp.index != bound_if and not rt.flags & RTF_LOCAL:
            return self.zone_ifp(bound_if), dst, None
        return rt.ifp, rt.gateway if rt.gateway is not None else dst, rt

    @staticmethod
    def blackhole(rt: Route | None) -> bool:
        return rt is not None and bool(rt.flags & RTF_BLACKHOLE)

    def loopback_ifp(self) -> Ifnet | None:
        for ifp in self.ns.interfaces.values():
            if ifp.flags & IFF_LOOPBACK:
                return ifp
        return None

    def _add_route(self, dst: bytes, plen: int, gw: bytes | None, ifp: Ifnet, flags: int,
                   src: bytes | None = None) -> None:
        if self.routes.get(dst, plen) is None:
            self.routes.add(Route(prefix_of(dst, plen), plen, gw, ifp, RTF_UP | flags, src=src))

    def _del_route(self, dst: bytes, plen: int, ifp: Ifnet, unless: int = RTF_STATIC) -> None:
        r = self.routes.get(dst, plen)
        if r is not None and r.ifp is ifp and not r.flags & unless:
            self.routes.delete(dst, plen)

    def address_added(self, ifp: Ifnet, addr: bytes, plen: int) -> None:
        if is_linklocal(addr):
            return
        self.local[addr] = ifp
        lo = self.loopback_ifp() or ifp
        self._add_route(addr, 128, None, lo, RTF_LOCAL, src=addr)
        if plen < 128:
            self.prefix_changed(ifp, prefix_of(addr, plen), plen)

    def address_removed(self, ifp: Ifnet, addr: bytes, plen: int) -> None:
        if is_linklocal(addr):
            return
        if self.local.get(addr) is ifp:
            del self.local[addr]
            r = self.routes.get(addr, 128)
            if r is not None and r.flags & RTF_LOCAL:
                self.routes.delete(addr, 128)
        if plen < 128:
            self.prefix_changed(ifp, prefix_of(addr, plen), plen)

    def prefix_changed(self, ifp: Ifnet, prefix: bytes, plen: int) -> None:
        """Keep the prefix route while an on-link prefix or a static address justifies it."""
        in6 = self.ifinfo(ifp)
        wanted = in6 is not None and ((prefix, plen) in in6.ac.prefix_list or any(
            a.plen == plen and prefix_match(a.addr, prefix, plen) and a.origin != "linklocal"
            for a in in6.ac.addresses()))
        r = self.routes.get(prefix, plen)
        if wanted and r is None:
            self._add_route(prefix, plen, None, ifp, RTF_CONNECTED)
        elif not wanted and r is not None and r.ifp is ifp and r.flags & RTF_CONNECTED:
            self.routes.delete(prefix, plen)

    def routers_changed(self) -> None:
        """The default route follows the default router list (RFC 4861 6.3.6)."""
        r = self.routes.get(UNSPECIFIED, 0)
        if r is not None and not r.flags & RTF_DYNAMIC:
            return                                        # a static default wins
        choice = None
        for ifp in self.up_interfaces():
            in6 = ifp.in6
            if in6.nc is None or not in6.ac.router_list:
                continue
            router = in6.ac.select_router(in6.nc.probably_reachable)
            if router is not None:
                choice = (router, ifp)
                break
        if r is not None and (choice is None or (r.gateway, r.ifp) != choice):
            self.routes.delete(UNSPECIFIED, 0)
            r = None
        if choice is not None and r is None:
            self.routes.add(Route(UNSPECIFIED, 0, choice[0], choice[1], RTF_UP | RTF_DYNAMIC))

    # ---- multicast groups ----------------------------------------------------------------------
    def join(self, ifp: Ifnet, group: bytes) -> None:
        in6 = self.ifinfo(ifp)
        if in6 is None:
            raise KernelError(Errno.EADDRNOTAVAIL, f"{ifp.name} has no IPv6")
        in6.groups[group] += 1

    def leave(self, ifp: Ifnet, group: bytes) -> None:
        in6 = self.ifinfo(ifp)
        if in6 is None or not in6.groups.get(group):
            return
        in6.groups[group] -= 1
        if in6.groups[group] <= 0:
            del in6.groups[group]

    # ---- path MTU --------------------------------------------------------------------------------
    def pmtu(self, dst: bytes) -> int | None:
        e = self.pmtus.get(dst)
        if e is None:
            return None
        if e[1] <= self.now():
            del self.pmtus[dst]
            return None
        return e[0]

    def set_pmtu(self, dst: bytes, mtu: int) -> None:
        mtu = max(1280, mtu)
        old = self.pmtu(dst)
        if old is not None and old <= mtu:
            return
        if len(self.pmtus) >= PMTU_MAX and dst not in self.pmtus:
            self.pmtus.pop(next(iter(self.pmtus)))
        self.pmtus[dst] = (mtu, self.now() + PMTU_TIMEOUT)
        self.ns.count("icmp6", "pmtuchanged")

    # ---- reassembly memory and timer -----------------------------------------------------------
    def sync_reass(self) -> None:
        delta = self.reass.held_bytes - self.reass_accounted
        if delta > 0:
            try:
                self.k.kmem.alloc(delta, "ip6reass")
            except KernelError:
                self.ns.count("ip6", "fragdropped", len(self.reass.queues))
                self.reass.drop_all()
                self.k.kmem.free(self.reass_accounted, "ip6reass")
                self.reass_accounted = 0
                return
        elif delta < 0:
            self.k.kmem.free(-delta, "ip6reass")
        self.reass_accounted = self.reass.held_bytes
        when = self.reass.deadline
        if when is not None and (not self.reass_armed or when < self.reass_armed):
            self.reass_armed = when
            self.ns.schedule(self.reass_callout, max(0, when - self.now()))

    def _reass_timer(self) -> None:
        from rumpkernel.net.inet6 import icmp6
        from rumpkernel.net.wire import icmp6 as wire

        self.reass_armed = 0
        for first in self.reass.timeout(self.now()):
            self.ns.count("ip6", "fragtimeout")
            icmp6.error(self, None, first, wire.TIME_EXCEEDED, wire.TIMXCEED_REASS, 0)
        self.sync_reass()

    def halt_final(self) -> None:
        self.reass.drop_all()
        self.sync_reass()
        for ifp in list(self.ns.interfaces.values()):
            in6 = self.ifinfo(ifp)
            if in6 is not None:
                in6.stop()


def _common_prefix(a: bytes, b: bytes) -> int:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return 128 - x.bit_length()
