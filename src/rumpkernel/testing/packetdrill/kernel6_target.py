"""The packetdrill kernel target over IPv6: the same scripts against a whole kernel whose
script peer is an IPv6 neighbour, so IPv6 input and output, the AF_INET6 socket glue and TCP's
IPv6 pseudo-header checksum all run.

Interface:
    Kernel6Target(seed=1)    KernelTarget (kernel_target.py) with ``pd0`` at fd00:d::1/64
                             (DAD off, MTU 1520 so our MSS is 1460 as on the IPv4 target's
                             1500: the scripts do not change) and the peer at fd00:d::2 on
                             the link; sockets are AF_INET6

How it works: ``pd0`` is a link of its own kind ("pdrill6"); what the kernel sends through it
is an IPv6 datagram -- TCP ones are parsed (checksum verified over the IPv6 pseudo-header)
and collected, the rest (router solicitations) ignored; an injected segment becomes an IPv6
datagram handed to ``ifp.input``.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern import abi as K
from rumpkernel.kern.abi import IFF_RUNNING
from rumpkernel.kern.syscall import structs
from rumpkernel.net.inet6.ip6 import ip6_input
from rumpkernel.net.interface import Ifnet
from rumpkernel.net.wire import ipv6
from rumpkernel.net.wire.tcp import TcpFormatError, TcpSegment, emit_for, parse_for
from rumpkernel.testing.packetdrill.kernel_target import KernelTarget, _Driver

LOCAL6 = bytes.fromhex("fd00000d000000000000000000000001")
REMOTE6 = bytes.fromhex("fd00000d000000000000000000000002")
LINK6 = "pdrill6"
MTU = 1520                       # 1520 - 60 = 1460, the IPv4 target's MSS


class Kernel6Target(KernelTarget):
    def _attach_interface(self) -> Ifnet:
        k = self.k
        ns = k.net
        self.local_ip, self.remote_ip = LOCAL6, REMOTE6
        ns.link_output6[LINK6] = self._output6
        ns.link_input[LINK6] = lambda ifp, pkt: ip6_input(ns.inet6, ifp, pkt)
        with k.entered(), ns.lock:
            ns.inet6.dad_count = 0
            ifp = Ifnet(ns, "pd0", LINK6, _Driver(), MTU)
            ifp.flags = IFF_RUNNING
            ns.attach_if(ifp)
            ns.inet6.add_address(ifp, LOCAL6, 64)          # brings pd0 up
        return ifp

    def inject(self, seg: TcpSegment) -> None:
        raw = emit_for(seg, self.remote_ip, self.local_ip)
        pkt = ipv6.header(self.remote_ip, self.local_ip, 6, len(raw), 64) + raw
        with self.k.entered():
            self.ifp.input(pkt)
        self._yield()

    def _output6(self, ifp: Ifnet, pkt: bytes, nexthop: bytes) -> None:
        """What the kernel sends through pd0 (stack lock held)."""
        ifp.opackets += 1
        if len(pkt) < 40 or pkt[6] != 6:
            return                                    # ND, router solicitations
        length = int.from_bytes(pkt[4:6], "big")
        src, dst = bytes(pkt[8:24]), bytes(pkt[24:40])
        try:
            seg = parse_for(pkt[40:40 + length], src, dst)
        except TcpFormatError as e:
            raise AssertionError(f"the kernel sent a malformed segment: {e}") from None
        if seg.flags & 0x12 == 0x02:
            self._ports = (seg.src_port, seg.dst_port)
        self.sent.append((self.now, seg))
        self._cv.broadcast()

    @staticmethod
    def _sockaddr(addr: bytes, port: int) -> bytes:
        return structs.pack_sockaddr_in6(addr, port)

    def sys_socket(self, domain: Any, type_: Any, proto: Any) -> int:
        return self._new_fd(self.k.sys.sys_socket(K.AF_INET6, K.SOCK_STREAM, K.IPPROTO_TCP))
