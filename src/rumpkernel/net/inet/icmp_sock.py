"""ICMP echo ("ping") sockets: SOCK_DGRAM with IPPROTO_ICMP, as Linux has them, so sending
echo requests needs no raw socket and no privilege.

Interface:
    PingProtocol(ns)        protosw entry (AF_INET, SOCK_DGRAM, IPPROTO_ICMP)
    input(ip, msg) -> bool  an echo reply for one of these sockets (matched by identifier)

Semantics: the caller writes an ICMP echo request -- type 8, code 0, then anything for the
identifier and checksum, sequence number, data; the kernel puts the socket's identifier (its
"port": bound, or chosen on first use) and the checksum in.  Anything else is EINVAL.  Reads
return whole echo replies (ICMP header included, no IP header) whose identifier is the
socket's, from the address they came from.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import AF_INET, AF_UNSPEC, IPPROTO_ICMP, SO_BROADCAST, SOCK_DGRAM
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet.in_pcb import InPcb, PcbTable
from rumpkernel.net.inet.inet import ANY
from rumpkernel.net.inet.ip import ip_output
from rumpkernel.net.inet.udp import inet_sockaddr, ip_getopt, ip_setopt
from rumpkernel.net.socket import PR_ADDR, PR_ATOMIC, SS_ISCONNECTED, Protocol, Socket
from rumpkernel.net.wire import icmp as wire

SPACE = 256 * 1024


class PingProtocol(Protocol):
    domain = AF_INET
    type = SOCK_DGRAM
    protocol = IPPROTO_ICMP
    flags = PR_ATOMIC | PR_ADDR
    name = "icmp"

    def __init__(self, ns: Any) -> None:
        super().__init__(ns)
        self.inet = ns.inet
        self.pcbs = PcbTable(ns.inet, "icmp")
        ns.inet.ping = self

    def attach(self, so: Socket, proto: int) -> None:
        so.pcb = InPcb(so)
        so.snd.hiwat = 65535
        so.rcv.hiwat = SPACE

    def detach(self, so: Socket) -> None:
        if so.pcb is not None:
            self.pcbs.detach(so.pcb)
            so.pcb = None

    def bind(self, so: Socket, addr: tuple, l: Any) -> None:
        a, ident = inet_sockaddr(addr)
        self.pcbs.bind(so.pcb, a, ident, True)

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        if addr[0] == AF_UNSPEC:
            self.disconnect(so)
            return
        a, _ = inet_sockaddr(addr)
        self.pcbs.connect(so.pcb, a, 1)
        so.isconnected()

    def disconnect(self, so: Socket) -> None:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        self.pcbs.disconnect(so.pcb, keep_laddr=True)
        so.state &= ~SS_ISCONNECTED

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        if len(data) < wire.HEADER_LEN or data[0] != wire.ECHO or data[1] != 0:
            raise KernelError(Errno.EINVAL, "ping sockets send ICMP echo requests only")
        pcb = so.pcb
        if addr is not None:
            if so.connected:
                raise KernelError(Errno.EISCONN, "socket is connected")
            dst, _ = inet_sockaddr(addr)
        else:
            dst = pcb.faddr
        if not pcb.lport:
            self.pcbs.bind(pcb, ANY, 0, True)
        seq = (data[6] << 8) | data[7]
        msg = wire.emit(wire.ECHO, 0, (pcb.lport << 16) | seq, data[wire.HEADER_LEN:])
        self.ns.count("icmp", "pingsock_out")
        ip_output(self.inet, None if pcb.laddr == ANY else pcb.laddr, dst, IPPROTO_ICMP, msg,
                  ttl=pcb.ttl, tos=pcb.tos, broadcast_ok=bool(so.options & SO_BROADCAST),
                  bound=pcb.laddr)

    def input(self, ip: Any, msg: bytes) -> bool:
        ident = (msg[4] << 8) | msg[5]
        took = False
        for pcb in self.pcbs.ports.get(ident, ()):
            if pcb.laddr not in (ANY, ip.dst) or pcb.faddr not in (ANY, ip.src):
                continue
            took = True
            if pcb.so.rcv.append_record(msg, (AF_INET, ip.src, 0), None):
                pcb.so.rwakeup()
            else:
                self.ns.count("icmp", "pingsock_fullsock")
        return took

    def sockaddr(self, so: Socket) -> tuple:
        return (AF_INET, so.pcb.laddr, so.pcb.lport)

    def peeraddr(self, so: Socket) -> tuple:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        return (AF_INET, so.pcb.faddr, 0)

    def getopt(self, so: Socket, level: int, name: int) -> bytes:
        return ip_getopt(so.pcb, self.inet, name)

    def setopt(self, so: Socket, level: int, name: int, value: bytes) -> None:
        ip_setopt(so.pcb, name, value)
