"""The net faction's components (the dissertation's rumpnet, rumpnet_net, rumpnet_netinet,
rumpnet_local; Table 3.4 init levels NET and NET_IF).

    net        (NET)     the socket layer, interfaces, routing, the local domain, system calls,
                         ``k.net``
    net_inet   (NET)     IPv4, ICMP, UDP, raw sockets, ARP and Ethernet; net.inet.* sysctls
    net_lo     (NET_IF)  lo0 with 127.0.0.1/8 (what etc/rc.d/network does on NetBSD)
NIC drivers (shmif, virtif, the in-process wire) are components of their own in ``dev/``.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import AF_LOCAL
from rumpkernel.kern.component import Phase, component


@component("net", phase=Phase.NET, faction="net",
           desc="network faction: sockets, interfaces, routing, local domain")
def net_init(k: Any) -> None:
    import rumpkernel.net.sys_socket as sys_socket
    from rumpkernel.net.if_loop import create_loop, loop_output
    from rumpkernel.net.local.uipc import local_protocols
    from rumpkernel.net.stack import NetStack

    ns = NetStack(k)
    k.net = ns
    ns.add_domain(AF_LOCAL, "local", local_protocols(ns))
    ns.cloners["lo"] = create_loop
    ns.link_output["loop"] = loop_output
    k.install_syscalls("net", sys_socket)
    k.hooks.add("halt", ns.halt)
    k.hooks.add("halt_final", ns.halt_final)
    k.hooks.add("statistics", ns.statistics)


@component("net_inet", phase=Phase.NET, faction="net", requires=("net",),
           desc="IPv4, ICMP, UDP, raw IP, ARP over Ethernet")
def inet_init(k: Any) -> None:
    from rumpkernel.net.inet.proto import attach_inet

    attach_inet(k.net)


@component("net_lo", phase=Phase.NET_IF, faction="net", requires=("net_inet",),
           desc="loopback interface lo0 with 127.0.0.1")
def lo_init(k: Any) -> None:
    ns = k.net
    with ns.lock:
        lo = ns.clone_create("lo0")
        ns.inet.add_address(lo, b"\x7f\0\0\x01", b"\xff\0\0\0")
        ns.set_up(lo, True)
