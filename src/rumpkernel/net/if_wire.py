"""The in-process wire NIC (``wireN``): kernels of one process on an Ethernet hub with seeded
fault injection (host side: ``hypercall/dev/wire.py``).  ``ifconfig wire0 create; ifconfig
wire0 linkstr HUBNAME``; ``ifconfig wire0 mtu 65535`` makes it a jumbo link (an MSS of
65,495 bytes: a whole TCP window in a few segments).  On the sim host a network of kernels on
faulty wires replays from the world's seed; it works on the posix host too (real time).

Component "net_wire" (NET_IF): registers the "wire" interface cloner.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.net.if_nic import NicDriver


class WireDriver(NicDriver):
    companion = "wire"
    version = 1
    blocking_send = False          # a hub send only takes the hub's and ports' short locks
    max_mtu = 65535                # a jumbo link: TCP between kernels in 64 KiB segments

    def open_port(self, comp: Any, linkstr: str) -> Any:
        return comp.attach(linkstr)

