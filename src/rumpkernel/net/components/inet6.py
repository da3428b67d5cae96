"""The IPv6 component (the dissertation's rumpnet_netinet6): IPv6, ICMPv6, neighbour discovery,
address autoconfiguration, UDP/raw/ICMPv6-echo sockets in AF_INET6 (net/inet6/proto6.py)."""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.component import Phase, component


@component("net_inet6", phase=Phase.NET, faction="net", requires=("net_inet",),
           desc="IPv6, ICMPv6, neighbour discovery, SLAAC, UDP and raw sockets over IPv6")
def inet6_init(k: Any) -> None:
    from rumpkernel.net.inet6.proto6 import attach_inet6

    attach_inet6(k.net)
