"""The shmif NIC (``shmifN``, net/if_shmif.py) as a component.  Like every component module,
it imports its driver only when a kernel boots with it, not when the catalog is read."""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.component import Phase, component


@component("net_shmif", phase=Phase.NET_IF, faction="net", requires=("net_inet",),
           desc="shmif: Ethernet over a shared host file (shmifN)")
def shmif_init(k: Any) -> None:
    from rumpkernel.net.if_nic import make_cloner
    from rumpkernel.net.if_shmif import ShmifDriver, lladdr

    k.net.cloners["shmif"] = make_cloner(ShmifDriver, lladdr)
