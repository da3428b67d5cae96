"""Ethernet link layer and ARP (NetBSD's if_ethersubr.c and if_arp.c): framing, demultiplexing
by EtherType, address resolution around the sans-IO ``ArpCache`` with its timers on callouts.

Interface (stack lock held):
    ether_input(ifp, frame)          registered as ``ns.link_input["ether"]``; EtherTypes
                                     other than IPv4 and ARP go to ``ns.ethertypes``; ``frame``
                                     may be a memoryview, IPv4 gets a view of it
    ether_output(ifp, pkt, nexthop)  registered as ``ns.link_output["ether"]``: broadcast
                                     frames for broadcasts, else the resolved link address (the
                                     packet waits in the ARP cache meanwhile; EHOSTDOWN when
                                     the neighbour did not answer)
    announce(ifp, addr)              gratuitous ARP for a new address
    EtherLink(ifp)                   ``ifp.link``: the ARP cache, its callout, its memory
    arp_entries(ns) / arp_add(ifp, ip, mac, permanent) / arp_delete(ifp, ip)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import IFF_NOARP, IFF_PROMISC
from rumpkernel.kern.errno import KernelError
from rumpkernel.net.inet.arp import ArpCache
from rumpkernel.net.wire import arp as arpwire
from rumpkernel.net.wire import ethernet
from rumpkernel.net.wire.base import FormatError, ip4str, macstr

if TYPE_CHECKING:
    from rumpkernel.net.interface import Ifnet

BROADCAST_ALL = b"\xff\xff\xff\xff"
_HDR_IP = ethernet.ETHERTYPE_IP.to_bytes(2, "big")
_HDR_ARP = ethernet.ETHERTYPE_ARP.to_bytes(2, "big")


class EtherLink:
    """Per-interface link state: the ARP cache with its timer and accounted held packets."""

    def __init__(self, ifp: Ifnet) -> None:
        self.ifp = ifp
        ns = ifp.ns
        self.cache = ArpCache()
        defaults = getattr(ns, "arp_defaults", None)
        if defaults is not None:
            defaults.apply(self.cache)
        self.callout = ns.callout(self._timer)
        self.armed: int | None = None
        self.accounted = 0

    def sync(self) -> None:
        """Account held bytes and arm the timer for the cache's next deadline."""
        k = self.ifp.ns.k
        delta = self.cache.held_bytes - self.accounted
        if delta > 0:
            try:
                k.kmem.alloc(delta, "arphold")
            except KernelError:
                self.cache.flush()
                self.ifp.ns.count("arp", "nomem")
                delta = self.cache.held_bytes - self.accounted
        if delta < 0:
            k.kmem.free(-delta, "arphold")
        self.accounted = self.cache.held_bytes
        when = self.cache.deadline
        if when is not None and (self.armed is None or when < self.armed):
            self.armed = when
            self.ifp.ns.schedule(self.callout, when - k.monotonic_ns())

    def _timer(self) -> None:
        self.armed = None
        ifp = self.ifp
        dropped = self.cache.timeout(ifp.ns.k.monotonic_ns())
        if dropped:
            ifp.ns.count("arp", "dropped", len(dropped))
        self._send_requests()
        self.sync()

    def _send_requests(self) -> None:
        ifp = self.ifp
        for ip in self.cache.take_requests():
            src = _source_for(ifp, ip)
            if src is not None:
                request(ifp, src, ip)

    def detach(self) -> None:
        self.cache.flush()
        self.ifp.ns.k.callouts.stop(self.callout)
        self.sync()


def _source_for(ifp: Ifnet, target: bytes) -> bytes | None:
    for ia in ifp.addrs:
        if bytes(a & m for a, m in zip(ia.addr, ia.mask)) == bytes(
                t & m for t, m in zip(target, ia.mask)):
            return ia.addr
    return ifp.addrs[0].addr if ifp.addrs else None


def request(ifp: Ifnet, spa: bytes, tpa: bytes, counter: str = "txrequests") -> None:
    ifp.ns.count("arp", counter)
    pkt = arpwire.ArpPacket(arpwire.OP_REQUEST, ifp.lladdr, spa, bytes(6), tpa).emit()
    ifp.transmit(ethernet.pad(ethernet.BROADCAST + ifp.lladdr + _HDR_ARP + pkt))


def announce(ifp: Ifnet, addr: bytes) -> None:
    """Gratuitous ARP: a request for our own new address."""
    if ifp.flags & IFF_NOARP or not ifp.lladdr:
        return
    try:
        request(ifp, addr, addr, "txgratuitous")
    except KernelError:
        pass


def ether_output(ifp: Ifnet, pkt: bytes, nexthop: bytes) -> None:
    ns = ifp.ns
    if nexthop == BROADCAST_ALL or ns.inet.is_broadcast(nexthop, ifp):
        dst = ethernet.BROADCAST
    elif nexthop[0] >= 224:
        dst = bytes((1, 0, 0x5E, nexthop[1] & 0x7F, nexthop[2], nexthop[3]))
    else:
        link: EtherLink = ifp.link
        try:
            dst = link.cache.resolve(nexthop, pkt, ns.k.monotonic_ns())
        finally:
            link._send_requests()
            link.sync()
        if dst is None:
            return
    ifp.transmit(ethernet.pad(dst + ifp.lladdr + _HDR_IP + pkt))


def ether_input(ifp: Ifnet, frame: bytes) -> None:
    ns = ifp.ns
    if len(frame) < ethernet.HEADER_LEN:
        ifp.ierrors += 1
        ns.count("ether", "tooshort")
        return
    dst = frame[0:6]
    if dst != ifp.lladdr and not dst[0] & 1 and not ifp.flags & IFF_PROMISC:
        ns.count("ether", "notours")
        return
    if frame[6:12] == ifp.lladdr:
        ns.count("ether", "own")           # our own frame echoed back by a shared medium
        return
    et = frame[12:14]
    if et == _HDR_IP:
        if dst != ifp.lladdr and not dst[0] & 1:
            return                          # promiscuous: seen, not for us
        from rumpkernel.net.inet.ip import ip_input

        ip_input(ns.inet, ifp, memoryview(frame)[14:])    # no copy of a 64 KiB frame
    elif et == _HDR_ARP:
        arp_input(ifp, bytes(frame[14:]))
    else:
        other = ns.ethertypes.get(et)          # IPv6 (net/inet6/nd6.py)
        if other is None:
            ifp.noproto += 1
            ns.count("ether", "noproto")
        elif dst == ifp.lladdr or dst[0] & 1:
            other(ifp, bytes(frame[14:]))


def arp_input(ifp: Ifnet, buf: bytes) -> None:
    ns = ifp.ns
    ns.count("arp", "received")
    try:
        p = arpwire.parse(buf)
    except FormatError:
        ns.count("arp", "badpkt")
        return
    if p.op not in (arpwire.OP_REQUEST, arpwire.OP_REPLY) or p.sha == ifp.lladdr:
        ns.count("arp", "ignored")
        return
    if p.sha[0] & 1 or p.spa == BROADCAST_ALL:
        ns.count("arp", "badaddr")
        return
    mine = [ia.addr for ia in ifp.addrs]
    if p.spa in mine:
        ns.count("arp", "dupaddr")
        ns.k.log(f"{ifp.name}: {macstr(p.sha)} claims our address {ip4str(p.spa)}")
        return
    ours = p.tpa in mine
    link: EtherLink = ifp.link
    if p.spa != b"\0\0\0\0":
        held = link.cache.learn(p.spa, p.sha, ns.k.monotonic_ns(), create=ours)
        for pkt in held:
            ifp.transmit(ethernet.pad(p.sha + ifp.lladdr + _HDR_IP + pkt))
        link.sync()
    if p.op == arpwire.OP_REQUEST and ours and not ifp.flags & IFF_NOARP:
        ns.count("arp", "txreplies")
        reply = arpwire.ArpPacket(arpwire.OP_REPLY, ifp.lladdr, p.tpa, p.sha, p.spa).emit()
        ifp.transmit(ethernet.pad(p.sha + ifp.lladdr + _HDR_ARP + reply))
    elif p.op == arpwire.OP_REPLY:
        ns.count("arp", "rxreplies")


# ---- administration (rump.arp) --------------------------------------------------------------
def arp_entries(ns: Any) -> list[dict[str, Any]]:
    now = ns.k.monotonic_ns()
    out = []
    for ifp in ns.interfaces.values():
        if isinstance(ifp.link, EtherLink):
            for ip, mac, state, expires in ifp.link.cache.entries():
                out.append({"ip": ip4str(ip), "mac": macstr(mac) if mac else None,
                            "interface": ifp.name, "state": state,
                            "expires_in": max(0, (expires - now) // 10**9)
                            if state != "permanent" else None,
                            "held": len(ifp.link.cache.table[ip].held)})
    return out


def arp_add(ifp: Ifnet, ip: bytes, mac: bytes, permanent: bool) -> None:
    link: EtherLink = ifp.link
    for pkt in link.cache.add(ip, mac, permanent, ifp.ns.k.monotonic_ns()):
        ifp.transmit(ethernet.pad(mac + ifp.lladdr + _HDR_IP + pkt))
    link.sync()


def arp_delete(ifp: Ifnet, ip: bytes) -> None:
    link: EtherLink = ifp.link
    link.cache.delete(ip)
    link.sync()


def attach_ether(ifp: Ifnet) -> None:
    ifp.link = EtherLink(ifp)
