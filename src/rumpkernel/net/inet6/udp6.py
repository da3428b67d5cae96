"""UDP over IPv6 (NetBSD's udp6_usrreq.c): datagram sockets of the inet6 domain, dual-stack
unless IPV6_V6ONLY.

Interface:
    Udp6Protocol(ns)          the protosw entry (AF_INET6, SOCK_DGRAM, IPPROTO_UDP); registers
                              its input for next header 17
    input(ifp, ip, payload) / ctlinput(errno, src, dst, upper)

Semantics as UDP over IPv4 (net/inet/udp.py: ephemeral ports, SO_REUSEADDR/SO_REUSEPORT,
EISCONN, ECONNREFUSED from port unreachables, "fullsock" drops), plus: the checksum is
mandatory (a zero one is a drop); link-local and multicast destinations need a zone (the
sockaddr_in6 scope id, IPV6_MULTICAST_IF or SO_BINDTODEVICE; ENETUNREACH without); a datagram
to a v4-mapped address goes out over IPv4 (ENETUNREACH on an IPV6_V6ONLY socket), and IPv4
datagrams reach a dual-stack socket with v4-mapped source addresses; multicast datagrams go
to every socket bound to the port (BSD semantics; the interface filters by membership).
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import (
    AF_INET6,
    AF_UNSPEC,
    IPPROTO_IPV6,
    IPPROTO_UDP,
    SO_BROADCAST,
    SOCK_DGRAM,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet6 import icmp6
from rumpkernel.net.inet6.in6 import is_v4mapped
from rumpkernel.net.inet6.in6_pcb import (
    In6Pcb,
    Pcb6Table,
    in6_sockaddr,
    ip6_getopt,
    ip6_setopt,
    output,
    sockaddr6,
)
from rumpkernel.net.socket import PR_ADDR, PR_ATOMIC, SS_ISCONNECTED, Protocol, Socket
from rumpkernel.net.wire import icmp6 as icmp6wire
from rumpkernel.net.wire import udp6 as wire
from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.ipv6 import NH_UDP, UNSPECIFIED

MAX_DATAGRAM = 65535 - 8
SENDSPACE = 65536
RECVSPACE = 256 * 1024


class Udp6Protocol(Protocol):
    domain = AF_INET6
    type = SOCK_DGRAM
    protocol = IPPROTO_UDP
    flags = PR_ATOMIC | PR_ADDR
    name = "udp6"

    def __init__(self, ns: Any) -> None:
        super().__init__(ns)
        self.inet6 = ns.inet6
        v4 = ns.inet.udp if ns.inet is not None else None
        self.v4 = v4
        self.pcbs = Pcb6Table(ns.inet6, "udp6", v4.pcbs if v4 is not None else None)
        self.snd_space = SENDSPACE
        self.rcv_space = RECVSPACE
        ns.inet6.udp = self
        ns.inet6.register_protocol(NH_UDP, self.input, self.ctlinput)

    def attach(self, so: Socket, proto: int) -> None:
        so.pcb = In6Pcb(so, bool(self.inet6.v6only))
        so.snd.hiwat = self.snd_space
        so.rcv.hiwat = self.rcv_space

    def detach(self, so: Socket) -> None:
        if so.pcb is not None:
            self.pcbs.detach(so.pcb)
            so.pcb = None

    def bind(self, so: Socket, addr: tuple, l: Any) -> None:
        a, port, scope = in6_sockaddr(addr)
        self.pcbs.bind(so.pcb, a, port, scope, l.proc.cred.is_root)

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        if addr[0] == AF_UNSPEC:
            self.disconnect(so)
            return
        a, port, scope = in6_sockaddr(addr)
        self.pcbs.connect(so.pcb, a, port, scope)
        so.error = 0
        so.isconnected()

    def disconnect(self, so: Socket) -> None:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        self.pcbs.disconnect(so.pcb)
        so.state &= ~SS_ISCONNECTED

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        pcb: In6Pcb = so.pcb
        if len(data) > MAX_DATAGRAM:
            raise KernelError(Errno.EMSGSIZE, f"UDP datagram of {len(data)} bytes")
        if addr is not None:
            if so.connected:
                raise KernelError(Errno.EISCONN, "socket is connected")
            dst, dport, scope = in6_sockaddr(addr)
            if dport == 0:
                raise KernelError(Errno.EADDRNOTAVAIL, "port 0")
        else:
            dst, dport, scope = pcb.faddr, pcb.fport, pcb.scope
        if is_v4mapped(dst):
            self._send4(so, pcb, data, dst[12:], dport)
            return
        if is_v4mapped(pcb.laddr):
            raise KernelError(Errno.ENETUNREACH, "bound to an IPv4 address")
        if dst == UNSPECIFIED:
            raise KernelError(Errno.EDESTADDRREQ, "no destination")
        if not pcb.lport:
            self.pcbs.bind(pcb, UNSPECIFIED, 0, 0, False)
        lport = pcb.lport
        self.ns.count("udp6", "opackets")
        output(self.inet6, so, pcb, dst, scope, NH_UDP,
               lambda src: wire.emit(lport, dport, data, src, dst))

    def _send4(self, so: Socket, pcb: In6Pcb, data: bytes, dst: bytes, dport: int) -> None:
        from rumpkernel.net.inet.ip import ip_output
        from rumpkernel.net.wire import udp as udp4

        if pcb.v6only or self.v4 is None:
            raise KernelError(Errno.ENETUNREACH, "IPV6_V6ONLY socket and a v4-mapped address")
        if not pcb.lport:
            self.pcbs.bind(pcb, UNSPECIFIED, 0, 0, False)
        sh = pcb.shadow
        if sh is None:
            raise KernelError(Errno.ENETUNREACH, "bound to an IPv6 address")
        inet = self.ns.inet
        src, _rt = inet.select_source(dst, sh.laddr)
        seg = udp4.emit_raw(pcb.lport, dport, data, src, dst)
        self.ns.count("udp", "opackets")
        ip_output(inet, src, dst, IPPROTO_UDP, seg, ttl=pcb.hlim, tos=pcb.tclass,
                  broadcast_ok=bool(so.options & SO_BROADCAST), bound=sh.laddr)

    def sockaddr(self, so: Socket) -> tuple:
        pcb = so.pcb
        return sockaddr6(pcb.laddr, pcb.lport, pcb.scope)

    def peeraddr(self, so: Socket) -> tuple:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        return sockaddr6(so.pcb.faddr, so.pcb.fport, so.pcb.scope)

    def getopt(self, so: Socket, level: int, name: int) -> bytes:
        if level == IPPROTO_IPV6:
            return ip6_getopt(so.pcb, self.inet6, name)
        raise KernelError(Errno.ENOPROTOOPT, f"level {level}")

    def setopt(self, so: Socket, level: int, name: int, value: bytes) -> None:
        if level == IPPROTO_IPV6:
            ip6_setopt(so.pcb, self.inet6, name, value)
            return
        raise KernelError(Errno.ENOPROTOOPT, f"level {level}")

    # ---- input -------------------------------------------------------------------------------
    def input(self, ifp: Any, ip: Any, payload: bytes) -> None:
        ns = self.ns
        ns.count("udp6", "ipackets")
        try:
            d = wire.parse(payload, ip.src, ip.dst)
        except FormatError as e:
            ns.count("udp6", {"checksum": "badsum", "length": "badlen"}.get(e.reason,
                                                                            "hdrops"))
            return
        src = sockaddr6(ip.src, d.sport, ip.scope)
        index = ifp.index if ifp is not None else 0
        if ip.multicast:
            pcbs = self.pcbs.matches(ip.dst, d.dport, ip.src, d.sport, index)
            if not pcbs:
                ns.count("udp6", "noportmcast")
            for pcb in pcbs:
                self._append(pcb.so, d.payload, src)
            return
        pcb = self.pcbs.lookup(ip.dst, d.dport, ip.src, d.sport, index)
        if pcb is None:
            ns.count("udp6", "noport")
            icmp6.error(self.inet6, ifp, ip.orig, icmp6wire.DEST_UNREACH,
                        icmp6wire.UNREACH_PORT, 0)
            return
        self._append(pcb.so, d.payload, src)

    def _append(self, so: Socket, data: bytes, src: tuple) -> None:
        if so.rcv.append_record(data, src, None):
            so.rwakeup()
        else:
            self.ns.count("udp6", "fullsock")

    def ctlinput(self, errno: int, src: bytes, dst: bytes, upper: bytes) -> None:
        sport = (upper[0] << 8) | upper[1]
        dport = (upper[2] << 8) | upper[3]
        for pcb in self.pcbs.ports.get(sport, ()):
            if pcb.faddr == dst and pcb.fport == dport and pcb.laddr in (src, UNSPECIFIED):
                pcb.so.set_error(errno)

    def info(self, so: Socket) -> dict[str, Any]:
        return {}
