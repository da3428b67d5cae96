"""The loopback interface (lo0): what a kernel sends to itself goes through the input softint.

Interface:
    create_loop(ns, name) -> Ifnet     the "lo" cloner (lo0 is made at boot by "net_lo")
    loop_output(ifp, pkt, nexthop)     registered as ``ns.link_output["loop"]``
MTU 33,184 (NetBSD's LOMTU); pcap taps see BSD loopback (DLT_NULL) frames.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import IFF_LOOPBACK, IFF_MULTICAST, IFF_RUNNING
from rumpkernel.net.interface import Ifnet

LOMTU = 33184
_NULL_HDR_INET = (2).to_bytes(4, "little")    # DLT_NULL: the address family, host order


class LoopDriver:
    linkstr = None

    def transmit(self, frame: bytes) -> bool:
        return True

    def set_linkstr(self, ifp: Ifnet, text: str) -> None:
        from rumpkernel.kern.errno import Errno, KernelError

        raise KernelError(Errno.ENOTTY, "loopback has no link")

    def stop(self) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"type": "loopback"}


def create_loop(ns: Any, name: str) -> Ifnet:
    ifp = Ifnet(ns, name, "loop", LoopDriver(), LOMTU)
    ifp.flags = IFF_LOOPBACK | IFF_MULTICAST | IFF_RUNNING
    return ifp


def loop_output(ifp: Ifnet, pkt: bytes, nexthop: bytes) -> None:
    ifp.opackets += 1
    ifp.obytes += len(pkt)
    ifp.ipackets += 1
    ifp.ibytes += len(pkt)
    if ifp.pcap is not None:
        ifp.pcap.write(_NULL_HDR_INET + pkt)
    ifp.ns.netisr_enqueue(ifp, "ip", pkt)
