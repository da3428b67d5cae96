"""Internet protocol control blocks: the local/foreign address and port of each UDP or raw
socket, port allocation and demultiplexing (NetBSD's in_pcb.c).

Interface:
    InPcb(so)                        laddr, lport, faddr, fport (ANY / 0 when unset), ttl, tos
    PcbTable(inet, name)
        bind(pcb, laddr, lport, root)     EADDRINUSE (unless both sockets set SO_REUSEPORT or
                                          SO_REUSEADDR), EACCES (port < 1024 without root),
                                          EADDRNOTAVAIL (not a local address), EINVAL (bound)
        connect(pcb, faddr, fport)        picks the source address and an ephemeral port
        disconnect(pcb) / detach(pcb)
        lookup(laddr, lport, faddr, fport) -> InPcb | None    the most specific match
        matches(dst, dport, src, sport) -> [InPcb]            every match (broadcasts)
        ephemeral() -> port               49152..65535 from a random start; EAGAIN when full
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import SO_REUSEADDR, SO_REUSEPORT
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet.inet import ANY

if TYPE_CHECKING:
    from rumpkernel.net.inet.inet import Inet

PORT_FIRST, PORT_LAST = 49152, 65535
RESERVED = 1024


class InPcb:
    __slots__ = ("faddr", "fport", "hdrincl", "laddr", "lport", "so", "tos", "ttl")

    def __init__(self, so: Any) -> None:
        self.so = so
        self.laddr = ANY
        self.lport = 0
        self.faddr = ANY
        self.fport = 0
        self.ttl: int | None = None
        self.tos = 0
        self.hdrincl = False


class PcbTable:
    def __init__(self, inet: Inet, name: str) -> None:
        self.inet = inet
        self.name = name
        self.ports: dict[int, list[InPcb]] = {}
        self.next_port = PORT_FIRST + int.from_bytes(inet.k.random_bytes(2), "big") % (
            PORT_LAST - PORT_FIRST + 1)

    def _reusable(self, a: InPcb, b: InPcb) -> bool:
        oa, ob = a.so.options, b.so.options
        return bool((oa & ob & SO_REUSEPORT) or (oa & ob & SO_REUSEADDR))

    def _conflict(self, pcb: InPcb, laddr: bytes, lport: int) -> bool:
        for other in self.ports.get(lport, ()):
            if other is pcb:
                continue
            if laddr != ANY and other.laddr != ANY and laddr != other.laddr:
                continue
            if not self._reusable(pcb, other):
                return True
        return False

    def bind(self, pcb: InPcb, laddr: bytes, lport: int, root: bool) -> None:
        if pcb.lport:
            raise KernelError(Errno.EINVAL, "socket is already bound")
        if laddr != ANY and laddr not in self.inet.local and not self.inet.is_broadcast(laddr):
            raise KernelError(Errno.EADDRNOTAVAIL, "not a local address")
        if lport == 0:
            lport = self.ephemeral(laddr, pcb)
        else:
            if lport < RESERVED and not root:
                raise KernelError(Errno.EACCES, f"port {lport} needs root")
            if self._conflict(pcb, laddr, lport):
                raise KernelError(Errno.EADDRINUSE, f"port {lport} in use")
        pcb.laddr = laddr
        pcb.lport = lport
        self.ports.setdefault(lport, []).append(pcb)

    def ephemeral(self, laddr: bytes = ANY, pcb: InPcb | None = None) -> int:
        span = PORT_LAST - PORT_FIRST + 1
        for _ in range(span):
            p = self.next_port
            self.next_port = PORT_FIRST if p >= PORT_LAST else p + 1
            if p not in self.ports:
                return p
        raise KernelError(Errno.EAGAIN, f"{self.name}: no free ephemeral port")

    def connect(self, pcb: InPcb, faddr: bytes, fport: int) -> None:
        if fport == 0 and self.name == "udp":
            raise KernelError(Errno.EADDRNOTAVAIL, "port 0")
        src, _rt = self.inet.select_source(faddr, pcb.laddr)
        if not pcb.lport:
            self.bind(pcb, ANY, 0, False)
        if pcb.laddr == ANY:
            pcb.laddr = src
        pcb.faddr = faddr
        pcb.fport = fport

    def disconnect(self, pcb: InPcb, keep_laddr: bool = False) -> None:
        pcb.faddr = ANY
        pcb.fport = 0
        if not keep_laddr:
            pcb.laddr = ANY

    def detach(self, pcb: InPcb) -> None:
        lst = self.ports.get(pcb.lport)
        if lst is not None and pcb in lst:
            lst.remove(pcb)
            if not lst:
                del self.ports[pcb.lport]
        pcb.lport = 0

    def lookup(self, laddr: bytes, lport: int, faddr: bytes, fport: int) -> InPcb | None:
        best, score = None, -1
        for pcb in self.ports.get(lport, ()):
            s = 0
            if pcb.faddr != ANY:
                if pcb.faddr != faddr or pcb.fport != fport:
                    continue
                s += 2
            if pcb.laddr != ANY:
                if pcb.laddr != laddr:
                    continue
                s += 1
            if s > score:
                best, score = pcb, s
        return best

    def matches(self, dst: bytes, dport: int, src: bytes, sport: int) -> list[InPcb]:
        out = []
        for pcb in self.ports.get(dport, ()):
            if pcb.laddr not in (ANY, dst):
                continue
            if pcb.faddr != ANY and (pcb.faddr != src or pcb.fport != sport):
                continue
            out.append(pcb)
        return out

    def all(self) -> list[InPcb]:
        return [p for lst in self.ports.values() for p in lst]
