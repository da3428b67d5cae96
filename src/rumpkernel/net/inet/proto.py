"""The inet domain attached to a stack (NetBSD's in_proto.c): its protosw entries, its input
handlers, the Ethernet link layer and the net.inet.* sysctl nodes.

Interface:
    attach_inet(ns)          sets ``ns.inet``; registers UDP, raw IP and ICMP echo sockets,
                             ICMP input, the "ip" netisr queue, the "ether" link layer
Sysctl (rw): net.inet.ip.forwarding, net.inet.ip.ttl, net.inet.ip.reass_maxbytes,
net.inet.ip.reass_timeout (seconds), net.inet.icmp.errppslimit (-1: unlimited),
net.inet.icmp.bmcastecho, net.inet.udp.sendspace, net.inet.udp.recvspace,
net.inet.arp.keep / down (seconds) / maxtries; read-only counters net.inet.<proto>.stats.<name>
for the protocol counters the stack keeps (also in netinfo "stats").
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import AF_INET, IPPROTO_ICMP
from rumpkernel.net import if_ether
from rumpkernel.net.inet import icmp
from rumpkernel.net.inet.icmp_sock import PingProtocol
from rumpkernel.net.inet.inet import Inet
from rumpkernel.net.inet.ip import ip_input
from rumpkernel.net.inet.raw_ip import RawIpProtocol
from rumpkernel.net.inet.udp import UdpProtocol

STAT_NAMES = {
    "ip": ("total", "badsum", "tooshort", "badlen", "badvers", "badhlen", "badaddr",
           "fragments", "fragdropped", "fragtimeout", "reassembled", "delivered", "noproto",
           "localout", "noroute", "fragmented", "ofragments", "cantfrag", "forward",
           "cantforward", "odropped", "timeexceeded"),
    "icmp": ("total", "badsum", "tooshort", "badlen", "error", "oldicmp", "oldbad",
             "ratelimited", "bmcastecho", "out_type0", "in_type8", "in_type0", "in_type3",
             "in_type11"),
    "udp": ("ipackets", "opackets", "badsum", "badlen", "hdrops", "noport", "noportbcast",
            "fullsock"),
    "arp": ("received", "txrequests", "txreplies", "rxreplies", "txgratuitous", "dupaddr",
            "dropped", "badpkt"),
}


def attach_inet(ns: Any) -> None:
    inet = Inet(ns)
    ns.inet = inet
    udp = UdpProtocol(ns)
    raw = RawIpProtocol(ns)
    ping = PingProtocol(ns)
    ns.add_domain(AF_INET, "inet", [udp, raw, ping])
    inet.register_protocol(IPPROTO_ICMP, lambda ifp, ip, p: icmp.icmp_input(inet, ifp, ip, p))
    ns.netisr_handlers["ip"] = lambda ifp, pkt: ip_input(inet, ifp, pkt)
    ns.link_output["ether"] = if_ether.ether_output
    ns.link_input["ether"] = if_ether.ether_input
    ns.link_announce["ether"] = if_ether.announce
    _sysctl(ns, inet, udp)



def _sysctl(ns: Any, inet: Inet, udp: UdpProtocol) -> None:
    s = 1_000_000_000
    ns.add_tunable("net.inet.ip.forwarding", inet, "forwarding", 0, 1)
    ns.add_tunable("net.inet.ip.ttl", inet, "ttl", 1, 255)
    ns.add_tunable("net.inet.ip.reass_maxbytes", inet.reass, "max_bytes", 0, 1 << 30)
    ns.add_tunable("net.inet.ip.reass_timeout", inet.reass, "timeout_ns", 1, 3600, s)
    ns.add_tunable("net.inet.icmp.errppslimit", inet, "errppslimit", -1, 1 << 30)
    ns.add_tunable("net.inet.icmp.bmcastecho", inet, "bmcastecho", 0, 1)
    ns.add_tunable("net.inet.udp.sendspace", udp, "snd_space", 1, 1 << 22)
    ns.add_tunable("net.inet.udp.recvspace", udp, "rcv_space", 1, 1 << 22)
    arp = ArpDefaults(ns)
    ns.arp_defaults = arp
    ns.add_tunable("net.inet.arp.keep", arp, "keep_ns", 1, 86400, s)
    ns.add_tunable("net.inet.arp.down", arp, "down_ns", 1, 86400, s)
    ns.add_tunable("net.inet.arp.maxtries", arp, "maxtries", 1, 100)
    for proto, names in STAT_NAMES.items():
        for n in names:
            ns.add_sysctl(f"net.inet.{proto}.stats.{n}",
                          lambda proto=proto, n=n: ns.stat(proto, n))


class ArpDefaults:
    """ARP parameters (sysctl net.inet.arp.*): new caches start with them and a change
    reaches every existing cache."""

    PARAMS = ("keep_ns", "down_ns", "maxtries")

    def __init__(self, ns: Any) -> None:
        object.__setattr__(self, "ns", ns)
        object.__setattr__(self, "keep_ns", 1200 * 1_000_000_000)
        object.__setattr__(self, "down_ns", 20 * 1_000_000_000)
        object.__setattr__(self, "maxtries", 5)

    def __setattr__(self, name: str, value: int) -> None:
        object.__setattr__(self, name, value)
        for ifp in self.ns.interfaces.values():
            link = getattr(ifp, "link", None)
            if link is not None:
                setattr(link.cache, name, value)

    def apply(self, cache: Any) -> None:
        for p in self.PARAMS:
            setattr(cache, p, getattr(self, p))
