"""Network configuration of a kernel through its system calls (ioctls on a socket and the
``netinfo`` call), so the same code configures a local kernel and a ``rump_server``:

    cfg = k.socket.config                      # or NetConfig(conn.sys)
    cfg.ifconfig("shmif0", create=True, linkstr="/tmp/bus", inet="10.0.0.2/24")
    cfg.route_add("default", gateway="10.0.0.1")
    cfg.interfaces()                           # what rump.ifconfig -a shows

Interface (addresses are dotted strings; errors are the host's OSError):
    create(name) / destroy(name) / linkstr(name, text) / pcap(name, path | None)
    address(name, "a.b.c.d/len", broadcast=None) / delete_address(name, "a.b.c.d")
    flags(name) / set_flags(name, flags) / up(name) / down(name)   kernel IFF_* values
    mtu(name) / set_mtu(name, mtu) / index(name)
    route_add(dst, gateway=None, interface=None, reject=False, blackhole=False)
        dst: "default", "a.b.c.d/len" or a host "a.b.c.d"
    route_delete(dst, gateway=None) / route_get(dst) -> dict
    arp_set(ip, mac, interface=None, permanent=True) / arp_delete(ip, interface=None)
    interfaces() / routes() / arp() / sockets() / stats() -> the kernel's tables
    ifconfig(name, create=False, linkstr=None, inet=None, inet6=None, up=True)   the usual
        sequence
  IPv6 (addresses as text, "fe80::1%wire0" naming a zone):
    address6(name, "fd00::1/64") / delete_address6(name, "fd00::1")
    route6_add(dst, gateway=None, interface=None, reject=False, blackhole=False)
        dst: "default", "fd00:1::/64" or a host "fd00:1::5"
    route6_delete(dst, gateway=None) / route6_get(dst) -> dict
    routes6() / nd6() / rdnss() -> the kernel's IPv6 tables
"""

from __future__ import annotations

import errno
import json
from typing import Any

from rumpkernel.kern import abi as K
from rumpkernel.kern.syscall import structs as S


def _ip4(text: str) -> bytes:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise ValueError(f"not an IPv4 address: {text!r}")
    return bytes(int(p) for p in parts)


def _mask(plen: int) -> bytes:
    if not 0 <= plen <= 32:
        raise ValueError(f"prefix length {plen}")
    return ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF).to_bytes(4, "big")


def parse_cidr(text: str, default_plen: int = 32) -> tuple[bytes, int]:
    """"10.0.0.1/24" -> (4 bytes, 24); "default" -> (0.0.0.0, 0)."""
    if text == "default":
        return bytes(4), 0
    addr, _, plen = text.partition("/")
    return _ip4(addr), int(plen) if plen else default_plen


def parse_cidr6(text: str, default_plen: int = 128) -> tuple[bytes, int, str]:
    """"fd00::1/64" -> (16 bytes, 64, zone); "default" -> (::, 0, "")."""
    from rumpkernel.net.wire.ipv6 import ip6

    if text == "default":
        return bytes(16), 0, ""
    addr, _, plen = text.partition("/")
    addr, _, zone = addr.partition("%")
    try:
        a = ip6(addr)
    except Exception:
        raise ValueError(f"not an IPv6 address: {addr!r}") from None
    n = int(plen) if plen else default_plen
    if not 0 <= n <= 128:
        raise ValueError(f"prefix length {n}")
    return a, n, zone


def _mask6(plen: int) -> bytes:
    return (((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)).to_bytes(16, "big")


def _mac(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a link-layer address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def _sin(addr: bytes) -> bytes:
    return S.pack_sockaddr_in(addr, 0)


class NetConfig:
    def __init__(self, sys: Any) -> None:
        self.sys = sys

    # ---- plumbing ----------------------------------------------------------------------------
    def _ioctl(self, cmd: int, data: bytes) -> bytes:
        fd = self.sys.sys_socket(K.AF_LOCAL, K.SOCK_DGRAM, 0)
        try:
            buf = bytearray(data)
            self.sys.sys_ioctl(fd, cmd, buf, len(buf))
            return bytes(buf)
        finally:
            self.sys.sys_close(fd)

    def _ifreq(self, cmd: int, name: str, value: int = 0) -> int:
        out = self._ioctl(cmd, S.IFREQ.pack(S.ifname_bytes(name), S.IFINT.pack(value)))
        return S.IFINT.unpack_from(out, 16)[0]

    def info(self, topic: str) -> Any:
        what = topic.encode()
        for _ in range(8):
            n = self.sys.sys_netinfo(what, None, 0)
            buf = bytearray(max(n, 1))
            try:
                n = self.sys.sys_netinfo(what, buf, len(buf))
            except OSError as e:
                if e.errno == errno.ERANGE:      # the table grew in between: ask again
                    continue
                raise
            return json.loads(bytes(buf[:n]))
        raise OSError(errno.EAGAIN, f"netinfo {topic}: the table keeps changing")

    # ---- interfaces ----------------------------------------------------------------------------
    def create(self, name: str) -> None:
        self._ifreq(K.SIOCIFCREATE, name)

    def destroy(self, name: str) -> None:
        self._ifreq(K.SIOCIFDESTROY, name)

    def linkstr(self, name: str, text: str) -> None:
        self._ioctl(K.SIOCSLINKSTR, S.ifname_bytes(name).ljust(16, b"\0") + text.encode()
                    + b"\0")

    def pcap(self, name: str, path: str | None) -> None:
        """Write every frame ``name`` sends and receives to host file ``path`` (pcap);
        None stops."""
        self._ioctl(K.SIOCSIFPCAP, S.ifname_bytes(name).ljust(16, b"\0")
                    + (path or "").encode() + b"\0")

    def flags(self, name: str) -> int:
        return self._ifreq(K.SIOCGIFFLAGS, name)

    def set_flags(self, name: str, flags: int) -> None:
        self._ifreq(K.SIOCSIFFLAGS, name, flags)

    def up(self, name: str) -> None:
        self.set_flags(name, self.flags(name) | K.IFF_UP)

    def down(self, name: str) -> None:
        self.set_flags(name, self.flags(name) & ~K.IFF_UP)

    def mtu(self, name: str) -> int:
        return self._ifreq(K.SIOCGIFMTU, name)

    def set_mtu(self, name: str, mtu: int) -> None:
        self._ifreq(K.SIOCSIFMTU, name, mtu)

    def index(self, name: str) -> int:
        return self._ifreq(K.SIOCGIFINDEX, name)

    def address(self, name: str, cidr: str, broadcast: str | None = None,
                netmask: str | None = None) -> None:
        addr, plen = parse_cidr(cidr, default_plen=-1)
        if netmask is not None:
            mask = _ip4(netmask)
        elif plen >= 0:
            mask = _mask(plen)
        else:
            mask = bytes(4)                     # the kernel picks the classful mask
        bc = _sin(_ip4(broadcast)) if broadcast else bytes(16)
        self._ioctl(K.SIOCAIFADDR, S.IFALIASREQ.pack(S.ifname_bytes(name), _sin(addr), bc,
                                                     _sin(mask) if any(mask) else bytes(16)))

    def delete_address(self, name: str, addr: str) -> None:
        self._ioctl(K.SIOCDIFADDR, S.IFREQ.pack(S.ifname_bytes(name), _sin(_ip4(addr))))

    def ifconfig(self, name: str, *, create: bool = False, linkstr: str | None = None,
                 inet: str | None = None, inet6: str | None = None, up: bool = True) -> None:
        if create:
            self.create(name)
        if linkstr is not None:
            self.linkstr(name, linkstr)
        if inet is not None:
            self.address(name, inet)
        if inet6 is not None:
            self.address6(name, inet6)
        if up:
            self.up(name)

    # ---- IPv6 --------------------------------------------------------------------------------
    def _sin6(self, addr: bytes, zone: str = "") -> bytes:
        return S.pack_sockaddr_in6(addr, 0, 0, self.index(zone) if zone else 0)

    def address6(self, name: str, cidr: str) -> None:
        addr, plen, _zone = parse_cidr6(cidr, default_plen=64)
        self._ioctl(K.SIOCAIFADDR_IN6, S.IN6_ALIASREQ.pack(
            S.ifname_bytes(name), self._sin6(addr), bytes(28),
            S.pack_sockaddr_in6(_mask6(plen), 0), 0, 0xFFFFFFFF, 0xFFFFFFFF))

    def delete_address6(self, name: str, addr: str) -> None:
        a, _plen, _zone = parse_cidr6(addr)
        self._ioctl(K.SIOCDIFADDR_IN6, S.IN6_IFREQ.pack(S.ifname_bytes(name), self._sin6(a)))

    def _rtreq6(self, dst: str, gateway: str | None, interface: str | None,
                flags: int) -> bytes:
        addr, plen, _ = parse_cidr6(dst)
        gw = bytes(28)
        if gateway is not None:
            g, _gplen, zone = parse_cidr6(gateway)
            gw = self._sin6(g, zone)
            flags |= K.RTF_GATEWAY
            if zone and not interface:
                interface = zone
        if plen == 128:
            flags |= K.RTF_HOST
        return S.RTREQ6.pack(self._sin6(addr), gw, plen,
                             (interface or "").encode().ljust(16, b"\0")[:16], flags, 0)

    def route6_add(self, dst: str, gateway: str | None = None, interface: str | None = None,
                   reject: bool = False, blackhole: bool = False) -> None:
        flags = (K.RTF_REJECT if reject else 0) | (K.RTF_BLACKHOLE if blackhole else 0)
        self._ioctl(K.SIOCADDRT6, self._rtreq6(dst, gateway, interface, flags))

    def route6_delete(self, dst: str, gateway: str | None = None) -> None:
        self._ioctl(K.SIOCDELRT6, self._rtreq6(dst, gateway, None, 0))

    def route6_get(self, dst: str) -> dict[str, Any]:
        from rumpkernel.net.wire.ipv6 import ip6str

        out = self._ioctl(K.SIOCGETRT6, self._rtreq6(dst, None, None, K.RTF_HOST))
        d, gw, plen, ifname, flags, use = S.RTREQ6.unpack(out)
        return {"dst": ip6str(d[8:24]), "plen": plen,
                "gateway": ip6str(gw[8:24]) if flags & K.RTF_GATEWAY else None,
                "interface": S.ifname_of(ifname).decode(), "flags": flags, "use": use}

    def routes6(self) -> list[dict[str, Any]]:
        return self.info("routes6")

    def nd6(self) -> dict[str, Any]:
        got = self.info("nd6")
        return got[0] if got else {"neighbors": [], "interfaces": []}

    def rdnss(self) -> list[dict[str, Any]]:
        return self.info("rdnss")

    # ---- routes and ARP --------------------------------------------------------------------------
    def _rtreq(self, dst: str, gateway: str | None, interface: str | None, flags: int) -> bytes:
        addr, plen = parse_cidr(dst)
        if plen == 32:
            flags |= K.RTF_HOST
        if gateway is not None:
            flags |= K.RTF_GATEWAY
        return S.RTREQ.pack(_sin(addr), _sin(_ip4(gateway)) if gateway else bytes(16),
                            _sin(_mask(plen)),
                            (interface or "").encode().ljust(16, b"\0")[:16], flags, 0)

    def route_add(self, dst: str, gateway: str | None = None, interface: str | None = None,
                  reject: bool = False, blackhole: bool = False) -> None:
        flags = (K.RTF_REJECT if reject else 0) | (K.RTF_BLACKHOLE if blackhole else 0)
        self._ioctl(K.SIOCADDRT, self._rtreq(dst, gateway, interface, flags))

    def route_delete(self, dst: str, gateway: str | None = None) -> None:
        self._ioctl(K.SIOCDELRT, self._rtreq(dst, gateway, None, 0))

    def route_get(self, dst: str) -> dict[str, Any]:
        out = self._ioctl(K.SIOCGETRT, self._rtreq(dst, None, None, K.RTF_HOST))
        d, gw, mask, ifname, flags, use = S.RTREQ.unpack(out)
        plen = bin(int.from_bytes(mask[4:8], "big")).count("1")
        dotted = ".".join(map(str, d[4:8]))
        return {"dst": dotted, "plen": plen, "gateway": ".".join(map(str, gw[4:8]))
                if flags & K.RTF_GATEWAY else None,
                "interface": S.ifname_of(ifname).decode(), "flags": flags, "use": use}

    def arp_set(self, ip: str, mac: str, interface: str | None = None,
                permanent: bool = True) -> None:
        self._ioctl(K.SIOCSARP, S.ARPREQ.pack(_sin(_ip4(ip)), _mac(mac),
                                              (interface or "").encode().ljust(16, b"\0"),
                                              K.ATF_PERM if permanent else 0))

    def arp_delete(self, ip: str, interface: str | None = None) -> None:
        self._ioctl(K.SIOCDARP, S.ARPREQ.pack(_sin(_ip4(ip)), bytes(6),
                                              (interface or "").encode().ljust(16, b"\0"), 0))

    # ---- tables ----------------------------------------------------------------------------------
    def interfaces(self) -> list[dict[str, Any]]:
        return self.info("interfaces")

    def routes(self) -> list[dict[str, Any]]:
        return self.info("routes")

    def arp(self) -> list[dict[str, Any]]:
        return self.info("arp")

    def sockets(self) -> list[dict[str, Any]]:
        return self.info("sockets")

    def stats(self) -> dict[str, dict[str, int]]:
        return self.info("stats")
