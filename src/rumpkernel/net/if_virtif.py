"""virtif: a kernel's interface on a host TAP device, so it talks to the host's own network
stack (virt(4); host side ``hypercall/dev/tap.py``).  Needs CAP_NET_ADMIN on the host (or a
TAP made beforehand for the user).

    ifconfig virt0 create; ifconfig virt0 linkstr tap0; ifconfig virt0 inet 10.0.0.2/24

The TAP is opened (or created) in the network namespace the kernel's process runs in; no
address is configured on the host side by the kernel.  Component "net_virtif" (NET_IF)
registers the "virt" interface cloner.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.net.if_nic import NicDriver


class VirtifDriver(NicDriver):
    companion = "tap"
    version = 1

    def open_port(self, comp: Any, linkstr: str) -> Any:
        return comp.attach(linkstr)

