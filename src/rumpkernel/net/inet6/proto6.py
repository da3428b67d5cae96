"""The inet6 domain attached to a stack (NetBSD's in6_proto.c): its protosw entries, input
handlers, the IPv6 link layers, interface hooks and the net.inet6.* sysctl nodes.

Interface:
    attach_inet6(ns)        sets ``ns.inet6``; registers UDP, raw IPv6 and ICMPv6 echo sockets
                            in AF_INET6, ICMPv6 input (next header 58), the "ip6" netisr queue,
                            EtherType 0x86dd, the "ether"/"loop" IPv6 link outputs, and the
                            interface up/down/detach hooks
                            and TCP over IPv6 when IPv4 has TCP (net/inet6/tcp6.py)
    register_tcp6(ns, protocol)   add a SOCK_STREAM protosw entry to AF_INET6 (tcp6.py does)

Sysctl (rw): net.inet6.ip6.forwarding, net.inet6.ip6.hlim, net.inet6.ip6.accept_rtadv,
net.inet6.ip6.dad_count, net.inet6.ip6.v6only (default for new sockets; Linux's 0),
net.inet6.ip6.stable_iid (1: RFC 7217 identifiers, 0: modified EUI-64; for interfaces brought
up afterwards), net.inet6.ip6.reass_maxbytes, net.inet6.ip6.reass_timeout (seconds),
net.inet6.icmp6.errppslimit (-1: unlimited), net.inet6.icmp6.mcastecho,
net.inet6.udp6.sendspace, net.inet6.udp6.recvspace; read-only counters
net.inet6.<proto>.stats.<name> for ip6, icmp6, udp6, nd6 (also in netinfo "stats").
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import AF_INET6
from rumpkernel.net.inet6 import icmp6, nd6
from rumpkernel.net.inet6.in6 import Inet6
from rumpkernel.net.inet6.ip6 import ip6_input
from rumpkernel.net.inet6.raw6 import Ping6Protocol, Raw6Protocol
from rumpkernel.net.inet6.udp6 import Udp6Protocol
from rumpkernel.net.wire import ethernet
from rumpkernel.net.wire.ipv6 import NH_ICMPV6

STAT_NAMES = {
    "ip6": ("total", "tooshort", "badvers", "badaddr", "noinet6", "notmember", "badoptions",
            "badrouting", "toomanyhdrs", "fragments", "fragdropped", "fragtimeout",
            "reassembled", "delivered", "noproto", "localout", "noroute", "fragmented",
            "ofragments", "cantfrag", "forward", "cantforward", "odropped", "timeexceeded",
            "tentative"),
    "icmp6": ("total", "badsum", "tooshort", "badnd", "badinner", "error", "errnotsent",
              "ratelimited", "senderr", "pmtuchanged", "mcastecho", "in_1", "in_2", "in_3",
              "in_4", "in_128", "in_129", "in_133", "in_134", "in_135", "in_136", "out_1",
              "out_3", "out_4", "out_129", "pingsock_out"),
    "udp6": ("ipackets", "opackets", "badsum", "badlen", "hdrops", "noport", "noportmcast",
             "fullsock"),
    "nd6": ("in_ns", "in_na", "in_ra", "in_rs", "in_redirect", "out_ns", "out_na", "out_rs",
            "badhlim", "ra_ignored", "dad_ok", "dad_duplicate", "resolvefail", "nosource",
            "nomem"),
}


def attach_inet6(ns: Any) -> None:
    inet6 = Inet6(ns)
    ns.inet6 = inet6
    udp = Udp6Protocol(ns)
    raw = Raw6Protocol(ns)
    ping = Ping6Protocol(ns)
    ns.add_domain(AF_INET6, "inet6", [udp, raw, ping])
    inet6.register_protocol(NH_ICMPV6, lambda ifp, ip, p: icmp6.icmp6_input(inet6, ifp, ip, p))
    ns.netisr_handlers["ip6"] = lambda ifp, pkt: ip6_input(inet6, ifp, pkt)
    ns.link_output6["ether"] = nd6.ether_output6
    ns.link_output6["loop"] = nd6.loop_output6
    ns.ethertypes[ethernet.ETHERTYPE_IPV6.to_bytes(2, "big")] = nd6.ether_input6
    ns.ifstate_hooks.append(_ifstate(inet6))
    ns.k.hooks.add("halt_final", lambda *a: inet6.halt_final())
    _sysctl(ns, inet6, udp)
    from rumpkernel.net.inet6.tcp6 import attach_tcp6

    attach_tcp6(ns)


def register_tcp6(ns: Any, protocol: Any) -> None:
    prs = ns.domains[AF_INET6]
    if protocol not in prs:
        prs.insert(0, protocol)


def _ifstate(inet6: Inet6) -> Any:
    def hook(ifp: Any, event: str) -> None:
        if event == "up":
            inet6.if_up(ifp)
        elif event == "down":
            inet6.if_down(ifp)
        elif event == "detach":
            inet6.if_detached(ifp)
    return hook



def _sysctl(ns: Any, inet6: Inet6, udp: Udp6Protocol) -> None:
    s = 1_000_000_000
    ns.add_tunable("net.inet6.ip6.forwarding", inet6, "forwarding", 0, 1)
    ns.add_tunable("net.inet6.ip6.hlim", inet6, "hlim", 1, 255)
    ns.add_tunable("net.inet6.ip6.accept_rtadv", inet6, "accept_rtadv", 0, 1)
    ns.add_tunable("net.inet6.ip6.dad_count", inet6, "dad_count", 0, 15)
    ns.add_tunable("net.inet6.ip6.v6only", inet6, "v6only", 0, 1)
    ns.add_tunable("net.inet6.ip6.stable_iid", inet6, "stable_iid", 0, 1)
    ns.add_tunable("net.inet6.ip6.reass_maxbytes", inet6.reass, "max_bytes", 0, 1 << 30)
    ns.add_tunable("net.inet6.ip6.reass_timeout", inet6.reass, "timeout_ns", 1, 3600, s)
    ns.add_tunable("net.inet6.icmp6.errppslimit", inet6, "errppslimit", -1, 1 << 30)
    ns.add_tunable("net.inet6.icmp6.mcastecho", inet6, "mcastecho", 0, 1)
    ns.add_tunable("net.inet6.udp6.sendspace", udp, "snd_space", 1, 1 << 22)
    ns.add_tunable("net.inet6.udp6.recvspace", udp, "rcv_space", 1, 1 << 22)
    for proto, names in STAT_NAMES.items():
        for n in names:
            ns.add_sysctl(f"net.inet6.{proto}.stats.{n}",
                          lambda proto=proto, n=n: ns.stat(proto, n))
