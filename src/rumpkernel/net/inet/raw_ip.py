"""Raw IP sockets (NetBSD's raw_ip.c): SOCK_RAW in the inet domain, for ping and friends.

Interface:
    RawIpProtocol(ns)          protosw entry (AF_INET, SOCK_RAW, any protocol); root only
                               (EACCES)
    input(ip, datagram) -> bool    every received datagram (header included) goes to each raw
                               socket of its protocol (0: all) whose bound and connected
                               addresses match; True when one took it

Sending: the payload gets an IP header for the socket's protocol, unless IP_HDRINCL is set,
in which case the caller's header is used (its length and checksum are filled in, a zero ident
replaced).  EMSGSIZE past 65,535 bytes; broadcasts need SO_BROADCAST (EACCES).
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import AF_INET, AF_UNSPEC, IP_HDRINCL, IPPROTO_IP, SO_BROADCAST, SOCK_RAW
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet.in_pcb import InPcb
from rumpkernel.net.inet.inet import ANY
from rumpkernel.net.inet.ip import ip_output, send_fragmented
from rumpkernel.net.inet.udp import inet_sockaddr, ip_getopt, ip_setopt
from rumpkernel.net.socket import (
    PR_ADDR,
    PR_ATOMIC,
    SS_ISCONNECTED,
    Protocol,
    Socket,
    int_opt,
    opt_int,
)
from rumpkernel.net.wire import ipv4
from rumpkernel.net.wire.base import FormatError

SPACE = 256 * 1024


class RawIpProtocol(Protocol):
    domain = AF_INET
    type = SOCK_RAW
    protocol = 0
    wildcard = True
    privileged = True
    flags = PR_ATOMIC | PR_ADDR
    name = "rawip"

    def __init__(self, ns: Any) -> None:
        super().__init__(ns)
        self.inet = ns.inet
        self.pcbs: list[InPcb] = []
        ns.inet.raw = self

    def attach(self, so: Socket, proto: int) -> None:
        if not 0 <= proto <= 255:
            raise KernelError(Errno.EPROTONOSUPPORT, f"IP protocol {proto}")
        so.pcb = InPcb(so)
        so.snd.hiwat = 65535
        so.rcv.hiwat = SPACE
        self.pcbs.append(so.pcb)

    def detach(self, so: Socket) -> None:
        if so.pcb is not None:
            if so.pcb in self.pcbs:
                self.pcbs.remove(so.pcb)
            so.pcb = None

    def bind(self, so: Socket, addr: tuple, l: Any) -> None:
        a, _port = inet_sockaddr(addr)
        if a != ANY and a not in self.inet.local:
            raise KernelError(Errno.EADDRNOTAVAIL, "not a local address")
        so.pcb.laddr = a

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        if addr[0] == AF_UNSPEC:
            self.disconnect(so)
            return
        a, _port = inet_sockaddr(addr)
        self.inet.select_source(a, so.pcb.laddr)
        so.pcb.faddr = a
        so.isconnected()

    def disconnect(self, so: Socket) -> None:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        so.pcb.faddr = ANY
        so.state &= ~SS_ISCONNECTED

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        pcb = so.pcb
        if addr is not None:
            if so.connected:
                raise KernelError(Errno.EISCONN, "socket is connected")
            dst, _ = inet_sockaddr(addr)
        else:
            dst = pcb.faddr
        self.ns.count("rawip", "opackets")
        if pcb.hdrincl:
            self._send_hdrincl(so, data, dst)
            return
        ip_output(self.inet, pcb.laddr, dst, so.protocol, data, ttl=pcb.ttl, tos=pcb.tos,
                  broadcast_ok=bool(so.options & SO_BROADCAST), bound=pcb.laddr)

    def _send_hdrincl(self, so: Socket, data: bytes, dst: bytes) -> None:
        if len(data) < ipv4.HEADER_LEN:
            raise KernelError(Errno.EINVAL, "IP_HDRINCL datagram shorter than a header")
        hl = (data[0] & 0xF) * 4
        if data[0] >> 4 != 4 or hl < 20 or hl > len(data):
            raise KernelError(Errno.EINVAL, "IP_HDRINCL: bad header")
        try:
            p = ipv4.parse(data[:2] + len(data).to_bytes(2, "big") + data[4:], verify=False)
        except FormatError as e:
            raise KernelError(Errno.EINVAL, f"IP_HDRINCL: {e}") from None
        inet = self.inet
        src = p.src if p.src != ANY else inet.select_source(p.dst)[0]
        _src, rt = inet.select_source(p.dst, src)
        ident = p.ident or inet.next_ident()
        send_fragmented(inet, rt.ifp, rt.nexthop(p.dst), src, p.dst, p.proto, p.payload,
                        p.ttl, p.tos, ident, p.flags & ipv4.FLAG_DF, p.options)

    def sockaddr(self, so: Socket) -> tuple:
        return (AF_INET, so.pcb.laddr, 0)

    def peeraddr(self, so: Socket) -> tuple:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        return (AF_INET, so.pcb.faddr, 0)

    def getopt(self, so: Socket, level: int, name: int) -> bytes:
        if level != IPPROTO_IP:
            raise KernelError(Errno.ENOPROTOOPT, f"level {level}")
        if name == IP_HDRINCL:
            return int_opt(int(so.pcb.hdrincl))
        return ip_getopt(so.pcb, self.inet, name)

    def setopt(self, so: Socket, level: int, name: int, value: bytes) -> None:
        if level != IPPROTO_IP:
            raise KernelError(Errno.ENOPROTOOPT, f"level {level}")
        if name == IP_HDRINCL:
            so.pcb.hdrincl = bool(opt_int(value))
            return
        ip_setopt(so.pcb, name, value)

    def input(self, ip: Any, datagram: bytes) -> bool:
        took = False
        for pcb in self.pcbs:
            so = pcb.so
            if so.protocol not in (0, ip.proto):
                continue
            if pcb.laddr != ANY and pcb.laddr != ip.dst:
                continue
            if pcb.faddr != ANY and pcb.faddr != ip.src:
                continue
            took = True
            if so.rcv.append_record(datagram, (AF_INET, ip.src, 0), None):
                so.rwakeup()
            else:
                self.ns.count("rawip", "fullsock")
        return took
