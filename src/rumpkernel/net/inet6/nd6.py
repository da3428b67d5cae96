"""Neighbour discovery on interfaces (NetBSD's nd6.c, nd6_nbr.c, nd6_rtr.c): the glue between
the sans-IO cores of one interface (``Addrconf``, ``NeighborCache``) and the kernel -- their
actions become packets, routes and group memberships, their deadlines a callout, received ND
messages their input -- plus the IPv6 link layers (Ethernet and loopback).

Interface (stack lock held):
    apply(in6, actions)                 run Addrconf actions (SendNS/RS/NA, groups, addresses,
                                        routers, prefixes, link parameters, DNS servers)
    sync(in6)                           actions, solicitations, held-packet memory, timer
    timer(in6)                          the interface's callout
    nd_input(inet6, ifp, ip, msg)       a received NS / NA / RS / RA / redirect (typed record)
    ether_output6(ifp, pkt, nexthop)    ``ns.link_output6["ether"]``: multicast to 33:33:..,
                                        unicast through the neighbour cache (held meanwhile)
    loop_output6(ifp, pkt, nexthop)     ``ns.link_output6["loop"]``
    ether_input6(ifp, payload)          ``ns.ethertypes[86dd]``
    nd_entries(ns) -> [dict]            what ``rump.ndp -a`` shows

Rules: ND messages count only with hop limit 255 (RFC 4861 7.1); router advertisements are
ignored when net.inet6.ip6.accept_rtadv is 0 or forwarding is on; held packets are charged to
kernel memory ("nd6hold"); packets of a neighbour that never answered get an ICMPv6 address
unreachable; RDNSS servers are kept per interface (``in6.dns``, netinfo "nd6").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.errno import KernelError
from rumpkernel.net.inet6 import addrconf as ac
from rumpkernel.net.wire import ethernet, icmp6, ipv6
from rumpkernel.net.wire.base import macstr
from rumpkernel.net.wire.ipv6 import NH_ICMPV6, Ipv6Packet, ip6str

if TYPE_CHECKING:
    from rumpkernel.net.inet6.in6 import Ifinfo6, Inet6, Ip6In
    from rumpkernel.net.interface import Ifnet

ETHERTYPE_IPV6 = ethernet.ETHERTYPE_IPV6.to_bytes(2, "big")
_NULL_HDR_INET6 = (24).to_bytes(4, "little")       # DLT_NULL: NetBSD's AF_INET6


# ---- actions ------------------------------------------------------------------------------------
def apply(in6: Ifinfo6, actions: list) -> None:
    inet6 = in6.inet6
    ifp = in6.ifp
    ns = inet6.ns
    for a in actions:
        if isinstance(a, ac.JoinGroup):
            in6.groups[a.group] += 1
        elif isinstance(a, ac.LeaveGroup):
            inet6.leave(ifp, a.group)
        elif isinstance(a, ac.SendNS):
            opts: tuple = (icmp6.Nonce(a.nonce),) if a.nonce else ()
            if a.src != ipv6.UNSPECIFIED:
                opts = (icmp6.LinkAddr(icmp6.OPT_SOURCE_LLADDR, ifp.lladdr), *opts)
            _send_nd(in6, a.src, a.dst, icmp6.NeighborSolicitation(a.target, opts), "out_ns")
        elif isinstance(a, ac.SendRS):
            opts = (icmp6.LinkAddr(icmp6.OPT_SOURCE_LLADDR, ifp.lladdr),) if a.slla else ()
            _send_nd(in6, a.src, ipv6.ALL_ROUTERS, icmp6.RouterSolicitation(opts), "out_rs")
        elif isinstance(a, ac.SendNA):
            send_na(in6, a)
        elif isinstance(a, ac.AddressAdded):
            inet6.address_added(ifp, a.addr, a.plen)
        elif isinstance(a, ac.AddressRemoved):
            inet6.address_removed(ifp, a.addr, a.plen)
        elif isinstance(a, ac.AddressReady):
            ns.count("nd6", "dad_ok")
        elif isinstance(a, ac.AddressDuplicate):
            ns.count("nd6", "dad_duplicate")
            ns.k.log(f"{ifp.name}: duplicate address {ip6str(a.addr)} detected")
        elif isinstance(a, ac.RouterAdded | ac.RouterRemoved):
            inet6.routers_changed()
        elif isinstance(a, ac.PrefixAdded | ac.PrefixRemoved):
            inet6.prefix_changed(ifp, a.prefix, a.plen)
        elif isinstance(a, ac.LinkParams):
            _link_params(in6, a)
        elif isinstance(a, ac.DnsServers):
            in6.dns = a.servers


def _link_params(in6: Ifinfo6, p: ac.LinkParams) -> None:
    if p.hop_limit:
        in6.hop_limit = p.hop_limit
    if p.mtu and p.mtu <= in6.ifp.mtu:
        in6.ra_mtu = p.mtu
    if in6.nc is not None:
        if p.reachable_ns:
            in6.nc.set_reachable(p.reachable_ns, in6.inet6.rand)
        if p.retrans_ns:
            in6.nc.set_retrans(p.retrans_ns)


def sync(in6: Ifinfo6) -> None:
    """Run what the cores asked for, account held packets and re-arm the timer."""
    for _ in range(8):                        # actions may cause actions; bounded
        acts = in6.ac.take_actions()
        if not acts:
            break
        apply(in6, acts)
    nc = in6.nc
    if nc is not None:
        _solicit(in6)
        for r in nc.take_lost_routers():
            in6.ac.router_unreachable(r)
            apply(in6, in6.ac.take_actions())
        k = in6.inet6.k
        delta = nc.held_bytes - in6.accounted
        if delta > 0:
            try:
                k.kmem.alloc(delta, "nd6hold")
            except KernelError:
                nc.dropped += len(nc.flush())
                in6.inet6.ns.count("nd6", "nomem")
                delta = nc.held_bytes - in6.accounted
        if delta < 0:
            k.kmem.free(-delta, "nd6hold")
        in6.accounted = nc.held_bytes
    in6.arm()


def timer(in6: Ifinfo6) -> None:
    inet6 = in6.inet6
    now = inet6.now()
    in6.ac.timeout(now, inet6.rand)
    if in6.nc is not None:
        failed = in6.nc.timeout(now)
        if failed:
            _unreachable(in6, failed)
    sync(in6)


def _unreachable(in6: Ifinfo6, pkts: list[bytes]) -> None:
    from rumpkernel.net.inet6 import icmp6 as kicmp6

    inet6 = in6.inet6
    inet6.ns.count("nd6", "resolvefail", len(pkts))
    for p in pkts:
        kicmp6.error(inet6, in6.ifp, p, icmp6.DEST_UNREACH, icmp6.UNREACH_ADDR, 0)


def _solicit(in6: Ifinfo6) -> None:
    ifp = in6.ifp
    for target, lladdr in in6.nc.take_solicitations():   # type: ignore[union-attr]
        src = _ns_source(in6, target)
        if src is None:
            in6.inet6.ns.count("nd6", "nosource")
            continue
        dst = ipv6.solicited_node(target) if lladdr is None else target
        m = icmp6.NeighborSolicitation(
            target, (icmp6.LinkAddr(icmp6.OPT_SOURCE_LLADDR, ifp.lladdr),))
        raw = Ipv6Packet(src, dst, NH_ICMPV6, m.emit(src, dst), 255).emit()
        in6.inet6.ns.count("nd6", "out_ns")
        _frame(ifp, lladdr or ipv6.multicast_mac(dst), raw)


def _ns_source(in6: Ifinfo6, target: bytes) -> bytes | None:
    best = None
    for a in in6.ac.addresses():
        if a.state not in (ac.PREFERRED, ac.DEPRECATED):
            continue
        if ipv6.is_linklocal(target) == ipv6.is_linklocal(a.addr):
            return a.addr
        best = best or a.addr
    return best


def _send_nd(in6: Ifinfo6, src: bytes, dst: bytes, msg: Any, counter: str) -> None:
    raw = Ipv6Packet(src, dst, NH_ICMPV6, msg.emit(src, dst), 255).emit()
    in6.inet6.ns.count("nd6", counter)
    try:
        output6(in6.ifp, raw, dst)
    except KernelError:
        in6.inet6.ns.count("nd6", "senderr")


def send_na(in6: Ifinfo6, a: ac.SendNA) -> None:
    na = icmp6.NeighborAdvertisement(
        a.target, a.flags, (icmp6.LinkAddr(icmp6.OPT_TARGET_LLADDR, in6.ifp.lladdr),))
    _send_nd(in6, a.src, a.dst, na, "out_na")


# ---- input --------------------------------------------------------------------------------------
def nd_input(inet6: Inet6, ifp: Ifnet, ip: Ip6In, m: Any) -> None:
    ns = inet6.ns
    in6 = inet6.ifinfo(ifp)
    if in6 is None or in6.nc is None:
        ns.count("nd6", "ignored")
        return
    if ip.hlim != 255:
        ns.count("nd6", "badhlim")
        return
    now = inet6.now()
    nc = in6.nc
    if isinstance(m, icmp6.NeighborSolicitation):
        ns.count("nd6", "in_ns")
        slla = icmp6.find(m.options, icmp6.LinkAddr, icmp6.OPT_SOURCE_LLADDR)
        if slla is not None and ip.src != ipv6.UNSPECIFIED and len(slla.addr) == 6:
            _flush(in6, ip.src, nc.learn(ip.src, slla.addr, now))
        na = in6.ac.input_ns(ip.src, ip.dst, ip.hlim, m, now, inet6.rand)
        if na is not None:
            send_na(in6, na)
    elif isinstance(m, icmp6.NeighborAdvertisement):
        ns.count("nd6", "in_na")
        if in6.ac.input_na(m, ip.hlim, now, inet6.rand):
            ns.count("nd6", "na_for_us")
        tlla = icmp6.find(m.options, icmp6.LinkAddr, icmp6.OPT_TARGET_LLADDR)
        addr = tlla.addr if tlla is not None and len(tlla.addr) == 6 else None
        _flush(in6, m.target, nc.advertised(m.target, addr, m.router, m.solicited,
                                            m.override, now))
    elif isinstance(m, icmp6.RouterAdvertisement):
        ns.count("nd6", "in_ra")
        if not inet6.accept_rtadv or inet6.forwarding:
            ns.count("nd6", "ra_ignored")
            return
        slla = icmp6.find(m.options, icmp6.LinkAddr, icmp6.OPT_SOURCE_LLADDR)
        if slla is not None and len(slla.addr) == 6 and ipv6.is_linklocal(ip.src):
            _flush(in6, ip.src, nc.learn(ip.src, slla.addr, now, router=True))
        if not in6.ac.input_ra(ip.src, ip.hlim, m, now, inet6.rand):
            ns.count("nd6", "ra_ignored")
    elif isinstance(m, icmp6.RouterSolicitation):
        ns.count("nd6", "in_rs")                 # we are not a router
    else:
        ns.count("nd6", "in_redirect")          # parsed, not acted on
    sync(in6)


def _flush(in6: Ifinfo6, neighbour: bytes, held: list[bytes]) -> None:
    if not held:
        return
    lladdr = None
    for e in in6.nc.entries():                  # type: ignore[union-attr]
        if e.ip == neighbour:
            lladdr = e.lladdr
    if lladdr is None:
        return
    for raw in held:
        _frame(in6.ifp, lladdr, raw)


# ---- link layers --------------------------------------------------------------------------------
def output6(ifp: Ifnet, pkt: bytes, nexthop: bytes) -> None:
    from rumpkernel.kern.abi import IFF_UP
    from rumpkernel.kern.errno import Errno

    if not ifp.flags & IFF_UP:
        ifp.oerrors += 1
        raise KernelError(Errno.ENETDOWN, f"{ifp.name} is down")
    ifp.ns.link_output6[ifp.kind](ifp, pkt, nexthop)


def _frame(ifp: Ifnet, dst: bytes, pkt: bytes) -> None:
    ifp.transmit(ethernet.pad(dst + ifp.lladdr + ETHERTYPE_IPV6 + pkt))


def ether_output6(ifp: Ifnet, pkt: bytes, nexthop: bytes) -> None:
    if nexthop[0] == 0xFF:
        _frame(ifp, ipv6.multicast_mac(nexthop), pkt)
        return
    in6 = ifp.in6
    if in6 is None or in6.nc is None:
        from rumpkernel.kern.errno import Errno

        raise KernelError(Errno.ENETDOWN, f"{ifp.name}: IPv6 is not up")
    now = in6.inet6.now()
    dst = in6.nc.fast(nexthop, now)
    if dst is None:
        dst = in6.nc.resolve(nexthop, pkt, now)
        sync(in6)
    if dst is not None:
        _frame(ifp, dst, pkt)


def loop_output6(ifp: Ifnet, pkt: bytes, nexthop: bytes) -> None:
    ifp.opackets += 1
    ifp.obytes += len(pkt)
    ifp.ipackets += 1
    ifp.ibytes += len(pkt)
    if ifp.pcap is not None:
        ifp.pcap.write(_NULL_HDR_INET6 + pkt)
    ifp.ns.netisr_enqueue(ifp, "ip6", pkt)


def ether_input6(ifp: Ifnet, payload: bytes) -> None:
    from rumpkernel.net.inet6.ip6 import ip6_input

    ip6_input(ifp.ns.inet6, ifp, payload)


# ---- administration -----------------------------------------------------------------------------
def nd_entries(ns: Any) -> list[dict[str, Any]]:
    now = ns.k.monotonic_ns()
    out = []
    for ifp in ns.interfaces.values():
        in6 = getattr(ifp, "in6", None)
        if in6 is None or in6.nc is None:
            continue
        for e in in6.nc.entries():
            out.append({"ip": ip6str(e.ip), "mac": macstr(e.lladdr) if e.lladdr else None,
                        "interface": ifp.name, "state": e.state, "router": e.router,
                        "expires_in": max(0, (e.expires - now) // 10**9)
                        if e.expires is not None else None})
    return out
