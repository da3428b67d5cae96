"""UDP (NetBSD's udp_usrreq.c): datagram sockets of the inet domain.

Interface:
    UdpProtocol(ns)            the protosw entry (AF_INET, SOCK_DGRAM, IPPROTO_UDP)
    udp_input(ifp, ip, payload) / udp_ctlinput(errno, src, dst, inner)   registered with inet

Semantics: bind (ephemeral ports 49152-65535, EADDRINUSE unless both set SO_REUSEADDR or
SO_REUSEPORT), connect (AF_UNSPEC dissolves the association), sendto on a connected socket
with an address is EISCONN, broadcasts need SO_BROADCAST (EACCES), a datagram larger than
65,507 bytes is EMSGSIZE; an ICMP port unreachable for a connected socket's datagram makes its
next call fail with ECONNREFUSED; a datagram that does not fit the receive buffer is dropped
and counted ("fullsock"); a bad checksum is counted and dropped, never delivered.  Dual-stack
IPv6 sockets hold their IPv4 port here too (a pcb whose socket is AF_INET6): what they receive
carries a v4-mapped source address.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import (
    AF_INET,
    AF_UNSPEC,
    IP_TOS,
    IP_TTL,
    IPPROTO_IP,
    IPPROTO_UDP,
    SO_BROADCAST,
    SOCK_DGRAM,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet import icmp
from rumpkernel.net.inet.in_pcb import InPcb, PcbTable
from rumpkernel.net.inet.inet import ANY
from rumpkernel.net.inet.ip import ip_output
from rumpkernel.net.socket import (
    PR_ADDR,
    PR_ATOMIC,
    SS_ISCONNECTED,
    Protocol,
    Socket,
    int_opt,
    opt_int,
)
from rumpkernel.net.wire import udp as wire
from rumpkernel.net.wire.base import FormatError

MAX_DATAGRAM = 65535 - 20 - 8
V4MAPPED = bytes(10) + b"\xff\xff"
SENDSPACE = 65536
RECVSPACE = 256 * 1024


def inet_sockaddr(addr: tuple) -> tuple[bytes, int]:
    if addr[0] != AF_INET:
        raise KernelError(Errno.EAFNOSUPPORT, "not an AF_INET address")
    return addr[1], addr[2]


def ip_getopt(pcb: InPcb, inet: Any, name: int) -> bytes:
    if name == IP_TTL:
        return int_opt(inet.ttl if pcb.ttl is None else pcb.ttl)
    if name == IP_TOS:
        return int_opt(pcb.tos)
    raise KernelError(Errno.ENOPROTOOPT, f"IP option {name}")


def ip_setopt(pcb: InPcb, name: int, value: bytes) -> None:
    v = opt_int(value)
    if name == IP_TTL:
        if v == -1:
            pcb.ttl = None
        elif not 1 <= v <= 255:
            raise KernelError(Errno.EINVAL, f"IP_TTL {v}")
        else:
            pcb.ttl = v
    elif name == IP_TOS:
        if not 0 <= v <= 255:
            raise KernelError(Errno.EINVAL, f"IP_TOS {v}")
        pcb.tos = v
    else:
        raise KernelError(Errno.ENOPROTOOPT, f"IP option {name}")


class UdpProtocol(Protocol):
    domain = AF_INET
    type = SOCK_DGRAM
    protocol = IPPROTO_UDP
    flags = PR_ATOMIC | PR_ADDR
    name = "udp"

    def __init__(self, ns: Any) -> None:
        super().__init__(ns)
        self.inet = ns.inet
        self.pcbs = PcbTable(ns.inet, "udp")
        self.snd_space = SENDSPACE
        self.rcv_space = RECVSPACE
        ns.inet.udp = self
        ns.inet.register_protocol(IPPROTO_UDP, self.input, self.ctlinput)

    def attach(self, so: Socket, proto: int) -> None:
        so.pcb = InPcb(so)
        so.snd.hiwat = self.snd_space
        so.rcv.hiwat = self.rcv_space

    def detach(self, so: Socket) -> None:
        if so.pcb is not None:
            self.pcbs.detach(so.pcb)
            so.pcb = None

    def bind(self, so: Socket, addr: tuple, l: Any) -> None:
        a, port = inet_sockaddr(addr)
        self.pcbs.bind(so.pcb, a, port, l.proc.cred.is_root)

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        if addr[0] == AF_UNSPEC:
            self.disconnect(so)
            return
        a, port = inet_sockaddr(addr)
        self.pcbs.connect(so.pcb, a, port)
        so.error = 0
        so.isconnected()

    def disconnect(self, so: Socket) -> None:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        self.pcbs.disconnect(so.pcb)        # NetBSD forgets the local address too
        so.state &= ~SS_ISCONNECTED

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        pcb = so.pcb
        if len(data) > MAX_DATAGRAM:
            raise KernelError(Errno.EMSGSIZE, f"UDP datagram of {len(data)} bytes")
        if addr is not None:
            if so.connected:
                raise KernelError(Errno.EISCONN, "socket is connected")
            dst, dport = inet_sockaddr(addr)
            if dport == 0:
                raise KernelError(Errno.EADDRNOTAVAIL, "port 0")
        else:
            dst, dport = pcb.faddr, pcb.fport
        inet = self.inet
        if not pcb.lport:
            self.pcbs.bind(pcb, ANY, 0, False)
        src, _rt = inet.select_source(dst, pcb.laddr, so.bound_if)
        seg = wire.emit_raw(pcb.lport, dport, data, src, dst)
        self.ns.count("udp", "opackets")
        ip_output(inet, src, dst, IPPROTO_UDP, seg, ttl=pcb.ttl, tos=pcb.tos,
                  broadcast_ok=bool(so.options & SO_BROADCAST), bound=pcb.laddr,
                  bound_if=so.bound_if)

    def sockaddr(self, so: Socket) -> tuple:
        pcb = so.pcb
        return (AF_INET, pcb.laddr, pcb.lport)

    def peeraddr(self, so: Socket) -> tuple:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        return (AF_INET, so.pcb.faddr, so.pcb.fport)

    def getopt(self, so: Socket, level: int, name: int) -> bytes:
        if level != IPPROTO_IP:
            raise KernelError(Errno.ENOPROTOOPT, f"level {level}")
        return ip_getopt(so.pcb, self.inet, name)

    def setopt(self, so: Socket, level: int, name: int, value: bytes) -> None:
        if level != IPPROTO_IP:
            raise KernelError(Errno.ENOPROTOOPT, f"level {level}")
        ip_setopt(so.pcb, name, value)

    # ---- input -------------------------------------------------------------------------------
    def input(self, ifp: Any, ip: Any, payload: bytes) -> None:
        ns = self.ns
        ns.count("udp", "ipackets")
        try:
            d = wire.parse(payload, ip.src, ip.dst)
        except FormatError as e:
            ns.count("udp", {"checksum": "badsum", "length": "badlen"}.get(e.reason, "hdrops"))
            return
        src = (AF_INET, ip.src, d.sport)
        index = ifp.index if ifp is not None else 0
        if ip.broadcast:
            pcbs = [p for p in self.pcbs.matches(ip.dst, d.dport, ip.src, d.sport)
                    if p.so.bound_if in (0, index)]
            if not pcbs:
                ns.count("udp", "noportbcast")
            for pcb in pcbs:
                self._append(pcb.so, d.payload, src)
            return
        pcb = self.pcbs.lookup(ip.dst, d.dport, ip.src, d.sport)
        if pcb is not None and pcb.so.bound_if not in (0, index):
            pcb = None                          # SO_BINDTODEVICE to another interface
        if pcb is None:
            ns.count("udp", "noport")
            icmp.error(self.inet, ip.header + payload, icmp.UNREACH, icmp.UNREACH_PORT)
            return
        self._append(pcb.so, d.payload, src)

    def _append(self, so: Socket, data: bytes, src: tuple) -> None:
        if so.domain != AF_INET:        # a dual-stack IPv6 socket (net/inet6/in6_pcb.py)
            src = (so.domain, V4MAPPED + src[1], src[2], 0, 0)
        if so.rcv.append_record(data, src, None):
            so.rwakeup()
        else:
            self.ns.count("udp", "fullsock")

    def ctlinput(self, errno: int, src: bytes, dst: bytes, inner: bytes) -> None:
        hl = (inner[0] & 0xF) * 4
        sport = (inner[hl] << 8) | inner[hl + 1]
        dport = (inner[hl + 2] << 8) | inner[hl + 3]
        for pcb in self.pcbs.ports.get(sport, ()):
            if pcb.faddr == dst and pcb.fport == dport and pcb.laddr in (src, ANY):
                pcb.so.set_error(errno)

    def info(self, so: Socket) -> dict[str, Any]:
        return {}

