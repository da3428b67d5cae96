"""The virtif NIC (``virtN`` on a host TAP, net/if_virtif.py) as a component."""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.component import Phase, component


@component("net_virtif", phase=Phase.NET_IF, faction="net", requires=("net_inet",),
           desc="virtif: Ethernet over a host TAP device (virtN)")
def virtif_init(k: Any) -> None:
    from rumpkernel.net.if_nic import make_cloner
    from rumpkernel.net.if_virtif import VirtifDriver

    k.net.cloners["virt"] = make_cloner(VirtifDriver)
