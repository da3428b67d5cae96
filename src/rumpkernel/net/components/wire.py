"""The in-process wire NIC (``wireN``, net/if_wire.py) as a component."""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.component import Phase, component


@component("net_wire", phase=Phase.NET_IF, faction="net", requires=("net_inet",),
           desc="in-process Ethernet wire with fault injection (wireN)")
def wire_init(k: Any) -> None:
    from rumpkernel.net.if_nic import make_cloner
    from rumpkernel.net.if_wire import WireDriver

    k.net.cloners["wire"] = make_cloner(WireDriver)
