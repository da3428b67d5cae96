"""Virtual Ethernet NICs: what shmif, virtif and the in-process wire share.

A NIC's host side is a *port* from a hypercall companion with ``send(frame)``, ``recv() ->
bytes | None`` (None: closed), ``close()`` (wakes a waiting ``recv``), optionally
``release()`` (free host resources once the receive thread ended) and ``info() -> dict``.
The driver opens it when the interface gets its link string (``ifconfig X linkstr ...``), runs
one receive kernel thread that hands frames to ``ifp.input``, and closes it on destroy or
halt.

Interface:
    NicDriver(k, companion, version)       subclasses set ``companion``/``version`` and may
                                           override ``open_port(comp, linkstr)``
    make_cloner(driver_cls) -> (ns, name) -> Ifnet   an Ethernet interface with a random
                                           locally administered address, MTU 1500 (settable
                                           up to ``driver_cls.max_mtu``)
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import IFF_BROADCAST, IFF_MULTICAST, IFF_RUNNING, IFF_SIMPLEX
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.if_ether import attach_ether
from rumpkernel.net.interface import Ifnet

ETHERMTU = 1500


class NicDriver:
    companion = ""
    version = 1
    #: the port's send may block (a file lock, a device write): give the vCPU up around it
    blocking_send = True
    #: largest MTU ``ifconfig mtu`` accepts (jumbo links between kernels go up to 64 KiB)
    max_mtu = 9000

    def __init__(self, k: Any) -> None:
        self.k = k
        self.port: Any = None
        self.thread: Any = None
        self.linkstr: str | None = None
        self.ifp: Ifnet | None = None

    def open_port(self, comp: Any, linkstr: str) -> Any:
        raise NotImplementedError

    def set_linkstr(self, ifp: Ifnet, text: str) -> None:
        """Attach to host resource ``text`` (replacing the current one); empty detaches."""
        self.stop()
        if not text:
            return
        k = self.k
        comp = k.hostcall(k.host.companion, self.companion, self.version)
        port = k.hostcall(self.open_port, comp, text)
        self.port = port
        self.linkstr = text
        self.ifp = ifp
        with ifp.ns.lock:
            ifp.flags |= IFF_RUNNING
        self.thread = k.kthread_create(lambda: self._rx(port, ifp), f"{ifp.name}rx")

    def _rx(self, port: Any, ifp: Ifnet) -> None:
        k = self.k
        while True:
            frame = k.hostcall(port.recv)
            if frame is None:
                return
            ifp.input(frame)

    def transmit(self, frame: bytes) -> bool:
        port = self.port
        if port is None:
            raise KernelError(Errno.ENETDOWN, "no link")
        if self.blocking_send:
            self.k.hostcall(port.send, frame)
        else:
            port.send(frame)
        return True

    def stop(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            self.k.hostcall(port.close)
        if self.thread is not None:
            t, self.thread = self.thread, None
            self.k.kthread_join(t)
        release = getattr(port, "release", None)
        if release is not None:                 # host descriptors, once nobody reads them
            self.k.hostcall(release)
        self.linkstr = None
        if self.ifp is not None:
            self.ifp.flags &= ~IFF_RUNNING

    def info(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.companion, "linkstr": self.linkstr}
        if self.port is not None:
            d.update(self.port.info())
        return d


def random_lladdr(k: Any) -> bytes:
    r = bytearray(k.random_bytes(6))
    r[0] = (r[0] & 0xFC) | 0x02          # unicast, locally administered
    return bytes(r)


def make_cloner(driver_cls: type[NicDriver], lladdr: Any = random_lladdr) -> Any:
    def create(ns: Any, name: str) -> Ifnet:
        ifp = Ifnet(ns, name, "ether", driver_cls(ns.k), ETHERMTU, lladdr(ns.k))
        ifp.max_mtu = driver_cls.max_mtu
        ifp.flags = IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST
        attach_ether(ifp)
        return ifp
    return create
