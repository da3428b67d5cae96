"""Raw IPv6 sockets (NetBSD's raw_ip6.c, RFC 3542 3) and ICMPv6 echo ("ping") sockets.

Interface:
    Raw6Protocol(ns)        protosw entry (AF_INET6, SOCK_RAW, any protocol); root only
        input(ip, data) -> bool    every received upper-layer payload of a next header goes to
                            the raw sockets of that protocol whose bound and connected
                            addresses match; True when one took it
    Ping6Protocol(ns)       protosw entry (AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6): Linux's
                            unprivileged ICMPv6 echo sockets
        input(ip, msg) -> bool     an echo reply for one of them (matched by identifier)

Raw semantics (RFC 3542): reads and writes carry the upper-layer data only, never the IPv6
header; for IPPROTO_ICMPV6 the kernel computes (and on input verifies) the checksum; for other
protocols IPV6_CHECKSUM names the checksum's offset (-1: none; EINVAL when odd or outside the
data).  Ping sockets: the caller writes an echo request (type 128, code 0, 8 bytes at least);
the kernel puts the socket's identifier (its "port") and the checksum in, and reads return
whole echo replies (ICMPv6 header included) whose identifier is the socket's.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import (
    AF_INET6,
    AF_UNSPEC,
    IPPROTO_ICMPV6,
    IPPROTO_IPV6,
    IPV6_CHECKSUM,
    SOCK_DGRAM,
    SOCK_RAW,
)
from rumpkernel.kern.errno import Errno, KernelError
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
from rumpkernel.net.socket import PR_ADDR, PR_ATOMIC, SS_ISCONNECTED, Protocol, Socket, opt_int
from rumpkernel.net.wire import icmp6 as wire
from rumpkernel.net.wire.ipv6 import UNSPECIFIED, checksum

SPACE = 256 * 1024


class _Base6(Protocol):
    flags = PR_ATOMIC | PR_ADDR

    def __init__(self, ns: Any) -> None:
        super().__init__(ns)
        self.inet6 = ns.inet6

    def sockaddr(self, so: Socket) -> tuple:
        return sockaddr6(so.pcb.laddr, so.pcb.lport, so.pcb.scope)

    def peeraddr(self, so: Socket) -> tuple:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        return sockaddr6(so.pcb.faddr, 0, so.pcb.scope)

    def disconnect(self, so: Socket) -> None:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        so.pcb.faddr = UNSPECIFIED
        so.state &= ~SS_ISCONNECTED

    def _dst(self, so: Socket, addr: tuple | None) -> tuple[bytes, int]:
        pcb = so.pcb
        if addr is not None:
            if so.connected:
                raise KernelError(Errno.EISCONN, "socket is connected")
            dst, _port, scope = in6_sockaddr(addr)
        else:
            dst, scope = pcb.faddr, pcb.scope
        if dst == UNSPECIFIED or is_v4mapped(dst):
            raise KernelError(Errno.EDESTADDRREQ if dst == UNSPECIFIED else Errno.ENETUNREACH,
                              "no IPv6 destination")
        return dst, scope

    @staticmethod
    def _accepts(pcb: In6Pcb, ip: Any) -> bool:
        if pcb.laddr != UNSPECIFIED and pcb.laddr != ip.dst:
            return False
        if pcb.faddr != UNSPECIFIED and pcb.faddr != ip.src:
            return False
        bound = getattr(pcb.so, "bound_if", 0)
        index = ip.ifp.index if ip.ifp is not None else 0
        return (not pcb.scope or pcb.scope == index) and (not bound or bound == index)

    def _append(self, so: Socket, data: bytes, ip: Any, counter: str) -> None:
        if so.rcv.append_record(data, sockaddr6(ip.src, 0, ip.scope), None):
            so.rwakeup()
        else:
            self.ns.count("rawip6", counter)


class Raw6Protocol(_Base6):
    domain = AF_INET6
    type = SOCK_RAW
    protocol = 0
    wildcard = True
    privileged = True
    name = "rawip6"

    def __init__(self, ns: Any) -> None:
        super().__init__(ns)
        self.pcbs: list[In6Pcb] = []
        ns.inet6.raw = self

    def attach(self, so: Socket, proto: int) -> None:
        if not 0 <= proto <= 255:
            raise KernelError(Errno.EPROTONOSUPPORT, f"IPv6 protocol {proto}")
        pcb = In6Pcb(so, True)
        pcb.cksum = 2 if proto == IPPROTO_ICMPV6 else -1
        so.pcb = pcb
        so.snd.hiwat = 65535
        so.rcv.hiwat = SPACE
        self.pcbs.append(pcb)

    def detach(self, so: Socket) -> None:
        if so.pcb is not None:
            if so.pcb in self.pcbs:
                self.pcbs.remove(so.pcb)
            for ifindex, group in so.pcb.groups:
                ifp = self.ns.ifindex.get(ifindex)
                if ifp is not None:
                    self.inet6.leave(ifp, group)
            so.pcb = None

    def bind(self, so: Socket, addr: tuple, l: Any) -> None:
        a, _port, scope = in6_sockaddr(addr)
        if a != UNSPECIFIED and self.inet6.owner(a, scope) is None:
            raise KernelError(Errno.EADDRNOTAVAIL, "not a local address")
        so.pcb.laddr = a
        so.pcb.scope = scope

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        if addr[0] == AF_UNSPEC:
            self.disconnect(so)
            return
        a, _port, scope = in6_sockaddr(addr)
        self.inet6.route_out(a, scope or so.pcb.scope, getattr(so, "bound_if", 0))
        so.pcb.faddr = a
        so.pcb.scope = scope or so.pcb.scope
        so.isconnected()

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        dst, scope = self._dst(so, addr)
        pcb = so.pcb
        off = pcb.cksum
        if off >= 0 and off + 2 > len(data):
            raise KernelError(Errno.EINVAL, "checksum offset past the data")
        proto = so.protocol

        def build(src: bytes) -> bytes:
            if off < 0:
                return data
            body = data[:off] + b"\0\0" + data[off + 2:]
            c = checksum(src, dst, proto, body)
            return body[:off] + bytes((c >> 8, c & 0xFF)) + body[off + 2:]

        self.ns.count("rawip6", "opackets")
        output(self.inet6, so, pcb, dst, scope, proto, build)

    def getopt(self, so: Socket, level: int, name: int) -> bytes:
        if level == IPPROTO_ICMPV6 and name == IPV6_CHECKSUM:
            raise KernelError(Errno.EINVAL, "ICMPv6 always has its checksum")
        if level != IPPROTO_IPV6:
            raise KernelError(Errno.ENOPROTOOPT, f"level {level}")
        return ip6_getopt(so.pcb, self.inet6, name)

    def setopt(self, so: Socket, level: int, name: int, value: bytes) -> None:
        if level != IPPROTO_IPV6:
            raise KernelError(Errno.ENOPROTOOPT, f"level {level}")
        if name == IPV6_CHECKSUM:
            v = opt_int(value)
            if so.protocol == IPPROTO_ICMPV6 or (v >= 0 and v % 2) or v < -1:
                raise KernelError(Errno.EINVAL, f"IPV6_CHECKSUM {v}")
            so.pcb.cksum = v
            return
        ip6_setopt(so.pcb, self.inet6, name, value)

    def input(self, ip: Any, data: bytes) -> bool:
        took = False
        good: bool | None = None
        for pcb in self.pcbs:
            so = pcb.so
            if so.protocol != ip.nh or not self._accepts(pcb, ip):
                continue
            if pcb.cksum >= 0:
                if good is None:
                    good = pcb.cksum + 2 <= len(data) and checksum(ip.src, ip.dst, ip.nh,
                                                                    data) == 0
                if not good:
                    self.ns.count("rawip6", "badsum")
                    continue
            took = True
            self._append(so, data, ip, "fullsock")
        return took


class Ping6Protocol(_Base6):
    domain = AF_INET6
    type = SOCK_DGRAM
    protocol = IPPROTO_ICMPV6
    name = "icmp6"

    def __init__(self, ns: Any) -> None:
        super().__init__(ns)
        self.pcbs = Pcb6Table(ns.inet6, "icmp6")
        ns.inet6.ping = self

    def attach(self, so: Socket, proto: int) -> None:
        so.pcb = In6Pcb(so, True)
        so.snd.hiwat = 65535
        so.rcv.hiwat = SPACE

    def detach(self, so: Socket) -> None:
        if so.pcb is not None:
            self.pcbs.detach(so.pcb)
            so.pcb = None

    def bind(self, so: Socket, addr: tuple, l: Any) -> None:
        a, ident, scope = in6_sockaddr(addr)
        self.pcbs.bind(so.pcb, a, ident, scope, True)

    def connect(self, so: Socket, addr: tuple, l: Any) -> None:
        if addr[0] == AF_UNSPEC:
            self.disconnect(so)
            return
        a, _port, scope = in6_sockaddr(addr)
        self.pcbs.connect(so.pcb, a, 1, scope)
        so.isconnected()

    def disconnect(self, so: Socket) -> None:
        if not so.connected:
            raise KernelError(Errno.ENOTCONN, "not connected")
        so.pcb.faddr = UNSPECIFIED
        so.pcb.fport = 0
        so.state &= ~SS_ISCONNECTED

    def send(self, so: Socket, data: bytes, addr: tuple | None, control: list | None,
             flags: int) -> None:
        if len(data) < wire.HEADER_LEN or data[0] != wire.ECHO_REQUEST or data[1] != 0:
            raise KernelError(Errno.EINVAL, "ping sockets send ICMPv6 echo requests only")
        dst, scope = self._dst(so, addr)
        pcb = so.pcb
        if not pcb.lport:
            self.pcbs.bind(pcb, UNSPECIFIED, 0, 0, True)
        rest = (pcb.lport << 16) | (data[6] << 8) | data[7]
        msg = wire.Icmp6Message(wire.ECHO_REQUEST, 0, rest, bytes(data[wire.HEADER_LEN:]))
        self.ns.count("icmp6", "pingsock_out")
        output(self.inet6, so, pcb, dst, scope, IPPROTO_ICMPV6, lambda src: msg.emit(src, dst))

    def input(self, ip: Any, msg: bytes) -> bool:
        ident = (msg[4] << 8) | msg[5]
        took = False
        for pcb in self.pcbs.ports.get(ident, ()):
            if not self._accepts(pcb, ip):
                continue
            took = True
            self._append(pcb.so, msg, ip, "pingsock_fullsock")
        return took

    def getopt(self, so: Socket, level: int, name: int) -> bytes:
        if level != IPPROTO_IPV6:
            raise KernelError(Errno.ENOPROTOOPT, f"level {level}")
        return ip6_getopt(so.pcb, self.inet6, name)

    def setopt(self, so: Socket, level: int, name: int, value: bytes) -> None:
        if level != IPPROTO_IPV6:
            raise KernelError(Errno.ENOPROTOOPT, f"level {level}")
        ip6_setopt(so.pcb, self.inet6, name, value)
