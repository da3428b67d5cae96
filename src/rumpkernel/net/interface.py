"""Network interfaces (NetBSD's ifnet): name, index, flags, MTU, link address, addresses,
counters, a bounded output queue, an optional pcap tap, and the driver underneath.

Interface:
    Ifnet(ns, name, kind, driver, mtu, lladdr)   kind "ether" or "loop"
    ifp.output(pkt, nexthop)       an IPv4 datagram for ``nexthop`` (lock held): the link layer
                                   (Ethernet + ARP, or loopback) frames and queues it
    ifp.transmit(frame)            queue a finished frame and start the driver (bounded queue:
                                   ``oqdrops`` when full)
    ifp.input(frame, csum_ok=False)  from a driver's receive thread (lock NOT held): counted,
                                   tapped, handed to the link layer; ``csum_ok``: the host
                                   vouched for the transport checksum (``rx_csum_ok`` is set
                                   while it is processed: TCP skips its verification)
    ifp.capabilities, ifp.tso_max  IFCAP_* offloads the driver negotiated; the largest TCP
                                   super-segment (IP datagram) it segments itself, 0: none
    ifp.start_pcap(path) / stop_pcap()   every frame sent and received, to a host pcap file
    ifp.stop_driver() / detach()
    ifp.info() -> dict             for netstat -i / ifconfig ("addrs6": IPv6 addresses when
                                   the kernel has IPv6)
Drivers (dev/) implement ``transmit(frame) -> bool`` (False: busy, keep it queued),
``set_linkstr(ifp, text)``, ``stop()``, ``info() -> dict`` and ``linkstr``; a driver feeds
received frames to ``ifp.input`` from its own kernel thread.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import IFF_RUNNING, IFF_UP
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.wire.base import ip4str, macstr, mask_len

if TYPE_CHECKING:
    from rumpkernel.net.stack import NetStack

IFQ_MAXLEN = 256
# NetBSD's if_capabilities bits (the offloads a driver negotiated with its host side)
IFCAP_TSOv4, IFCAP_CSUM_TCPv4_Rx, IFCAP_CSUM_TCPv4_Tx = 0x00080, 0x00400, 0x00800
IFCAP_CSUM_TCPv6_Rx, IFCAP_CSUM_TCPv6_Tx, IFCAP_TSOv6 = 0x04000, 0x08000, 0x40000
IFCAP_NAMES = {IFCAP_TSOv4: "TSO4", IFCAP_TSOv6: "TSO6", IFCAP_CSUM_TCPv4_Rx: "TCP4CSUM_Rx",
               IFCAP_CSUM_TCPv4_Tx: "TCP4CSUM_Tx", IFCAP_CSUM_TCPv6_Rx: "TCP6CSUM_Rx",
               IFCAP_CSUM_TCPv6_Tx: "TCP6CSUM_Tx"}
LINKTYPE_NULL, LINKTYPE_ETHERNET = 0, 1       # pcap link types: BSD loopback, Ethernet
COUNTERS = ("ipackets", "ierrors", "iqdrops", "ibytes", "opackets", "oerrors", "oqdrops",
            "obytes", "noproto")


class IfAddr:
    """One IPv4 address of an interface."""

    __slots__ = ("addr", "broadcast", "mask")

    def __init__(self, addr: bytes, mask: bytes, broadcast: bytes | None) -> None:
        self.addr = addr
        self.mask = mask
        self.broadcast = broadcast

    @property
    def plen(self) -> int:
        return mask_len(self.mask)

    def net(self) -> bytes:
        return bytes(a & m for a, m in zip(self.addr, self.mask))


class PcapTap:
    """Frames to a host pcap file, through the "pcap" host companion."""

    __slots__ = ("k", "path", "writer")

    def __init__(self, k: Any, path: str, linktype: int) -> None:
        self.k = k
        self.path = path
        comp = k.hostcall(k.host.companion, "pcap", 1)
        self.writer = k.hostcall(comp.open, path, linktype)

    def write(self, frame: bytes) -> None:
        self.k.hostcall(self.writer.write, frame, self.k.time_ns())

    def close(self) -> None:
        self.k.hostcall(self.writer.close)


class Ifnet:
    def __init__(self, ns: NetStack, name: str, kind: str, driver: Any, mtu: int,
                 lladdr: bytes = b"") -> None:
        self.ns = ns
        self.name = name
        self.index = 0
        self.kind = kind
        self.driver = driver
        self.flags = 0
        self.mtu = mtu
        self.max_mtu = 9000 if kind == "ether" else 65535
        self.lladdr = lladdr
        self.addrs: list[IfAddr] = []
        self.snd: deque[bytes] = deque()
        self.snd_maxlen = IFQ_MAXLEN
        self.pcap: PcapTap | None = None
        self.link: Any = None            # link-layer state (the ARP cache of an Ethernet)
        self.capabilities = 0            # IFCAP_* the driver negotiated (offloads in use)
        self.tso_max = 0                 # largest TCP super-segment it cuts itself (0: none)
        self.rx_csum_ok = False          # the frame being input was checksummed by the host
        for c in COUNTERS:
            setattr(self, c, 0)

    # ---- output ----------------------------------------------------------------------------
    def output(self, pkt: bytes, nexthop: bytes) -> None:
        if not self.flags & IFF_UP:
            self.oerrors += 1
            raise KernelError(Errno.ENETDOWN, f"{self.name} is down")
        self.ns.link_output[self.kind](self, pkt, nexthop)

    def transmit(self, frame: bytes) -> None:
        if len(self.snd) >= self.snd_maxlen:
            self.oqdrops += 1
            self.ns.count("if", "oqdrops")
            return
        self.snd.append(frame)
        self.start()

    def start(self) -> None:
        snd = self.snd
        drv = self.driver
        while snd:
            frame = snd[0]
            if not self.flags & IFF_RUNNING or drv is None:
                snd.clear()
                self.oerrors += 1
                return
            try:
                if not drv.transmit(frame):
                    return
            except KernelError as e:
                self.oerrors += 1
                self.ns.k.log(f"{self.name}: transmit: {e}")
            else:
                self.opackets += 1
                self.obytes += len(frame)
                if self.pcap is not None:
                    self.pcap.write(frame)
            snd.popleft()

    # ---- input -------------------------------------------------------------------------------
    def input(self, frame: bytes, csum_ok: bool = False) -> None:
        """A received frame, from the driver's thread (takes the stack lock).  ``csum_ok``:
        the host vouched for its transport checksum (virtio DATA_VALID or NEEDS_CSUM), so TCP
        does not verify it (``rx_csum_ok`` while it is processed)."""
        ns = self.ns
        with ns.lock:
            if ns.halting:
                return
            self.ipackets += 1
            self.ibytes += len(frame)
            if self.pcap is not None:
                self.pcap.write(frame)
            if not self.flags & IFF_UP:
                self.iqdrops += 1
                return
            if not csum_ok:
                ns.link_input[self.kind](self, frame)
                return
            self.rx_csum_ok = True
            try:
                ns.link_input[self.kind](self, frame)
            finally:
                self.rx_csum_ok = False

    # ---- pcap ----------------------------------------------------------------------------------
    def start_pcap(self, path: str) -> None:
        self.stop_pcap()
        lt = LINKTYPE_ETHERNET if self.kind == "ether" else LINKTYPE_NULL
        self.pcap = PcapTap(self.ns.k, path, lt)

    def stop_pcap(self) -> None:
        if self.pcap is not None:
            self.pcap.close()
            self.pcap = None

    # ---- life cycle ------------------------------------------------------------------------------
    def stop_driver(self) -> None:
        if self.driver is not None:
            self.driver.stop()
        self.flags &= ~IFF_RUNNING

    def detach(self) -> None:
        self.stop_driver()
        self.stop_pcap()
        self.snd.clear()
        if self.link is not None:
            self.link.detach()
            self.link = None

    @property
    def linkstr(self) -> str | None:
        return getattr(self.driver, "linkstr", None)

    def info(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "index": self.index, "flags": self.flags, "mtu": self.mtu,
            "kind": self.kind, "lladdr": macstr(self.lladdr) if self.lladdr else "",
            "linkstr": self.linkstr,
            "addrs": [{"addr": ip4str(a.addr), "plen": a.plen,
                       "broadcast": ip4str(a.broadcast) if a.broadcast else None}
                      for a in self.addrs],
            "pcap": self.pcap.path if self.pcap is not None else None,
            "capabilities": [n for bit, n in IFCAP_NAMES.items() if self.capabilities & bit],
            "tso_max": self.tso_max,
        }
        if self.ns.inet6 is not None:
            from rumpkernel.net.inet6.info6 import if_addrs6

            d["addrs6"] = if_addrs6(self)
        for c in COUNTERS:
            d[c] = getattr(self, c)
        if self.driver is not None:
            d["driver"] = self.driver.info()
        return d
