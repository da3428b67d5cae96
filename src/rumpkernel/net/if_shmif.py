"""shmif: the Ethernet bus between kernels in different processes through a host file
(shmif(4); host side ``hypercall/dev/shmif.py``).  No privileges needed.

    ifconfig shmif0 create; ifconfig shmif0 linkstr /tmp/busfile; ifconfig shmif0 inet 10.0.0.1/24

``ifconfig shmif0 mtu 65521`` makes the bus a jumbo link (the largest frame a bus record holds).

Component "net_shmif" (NET_IF): registers the "shmif" interface cloner.  Link addresses are
b2:a0:xx:xx:xx:xx as on NetBSD.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.net.if_nic import NicDriver


class ShmifDriver(NicDriver):
    companion = "shmif"
    version = 1
    max_mtu = 65535 - 14           # a frame (with its Ethernet header) fits a bus record

    def open_port(self, comp: Any, linkstr: str) -> Any:
        return comp.attach(linkstr)


def lladdr(k: Any) -> bytes:
    """NetBSD's shmif addresses: b2:a0 and four random bytes."""
    return b"\xb2\xa0" + k.random_bytes(4)

