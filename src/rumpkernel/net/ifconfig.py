"""Interface, route and ARP configuration: the ioctls of ``rump.ifconfig``, ``rump.route`` and
``rump.arp`` (on any socket, as on NetBSD).

Interface:
    ifioctl(ns, l, cmd, data) -> bytes | None
        SIOCIFCREATE / SIOCIFDESTROY (ifreq)           EINVAL (unknown type), EEXIST, ENXIO,
                                                       EPERM (lo0)
        SIOCGIFFLAGS / SIOCSIFFLAGS (ifreq int)        IFF_UP, IFF_DEBUG, IFF_PROMISC,
                                                       IFF_NOARP, IFF_ALLMULTI are settable
        SIOCGIFMTU / SIOCSIFMTU / SIOCGIFINDEX         EINVAL for an MTU outside 68..max
        SIOCAIFADDR (ifaliasreq) / SIOCDIFADDR (ifreq sockaddr)
        SIOCSLINKSTR (name[16] + text)                 the host side: bus file, TAP, wire name
        SIOCSIFPCAP (name[16] + host path; empty: stop)
        SIOCADDRT / SIOCDELRT / SIOCGETRT (rtreq)      ESRCH, EEXIST, ENETUNREACH
        SIOCSARP / SIOCDARP (arpreq)
        SIOCAIFADDR_IN6, SIOCDIFADDR_IN6, SIOCADDRT6, SIOCDELRT6, SIOCGETRT6   IPv6
                                                       (net/inet6/ifconfig6.py)
    Every change needs root (EPERM); ENXIO names a missing interface.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import (
    AF_INET,
    ATF_PERM,
    IFF_ALLMULTI,
    IFF_DEBUG,
    IFF_LOOPBACK,
    IFF_NOARP,
    IFF_PROMISC,
    IFF_UP,
    RTF_BLACKHOLE,
    RTF_GATEWAY,
    RTF_HOST,
    RTF_REJECT,
    RTF_STATIC,
    RTF_UP,
    SIOCADDRT,
    SIOCADDRT6,
    SIOCAIFADDR,
    SIOCAIFADDR_IN6,
    SIOCDARP,
    SIOCDELRT,
    SIOCDELRT6,
    SIOCDIFADDR,
    SIOCDIFADDR_IN6,
    SIOCGETRT,
    SIOCGETRT6,
    SIOCGIFFLAGS,
    SIOCGIFINDEX,
    SIOCGIFMTU,
    SIOCIFCREATE,
    SIOCIFDESTROY,
    SIOCSARP,
    SIOCSIFFLAGS,
    SIOCSIFMTU,
    SIOCSIFPCAP,
    SIOCSLINKSTR,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.syscall import structs as S
from rumpkernel.net.route import Route
from rumpkernel.net.wire.base import mask_len

SETTABLE = IFF_UP | IFF_DEBUG | IFF_PROMISC | IFF_NOARP | IFF_ALLMULTI
MIN_MTU = 68
GETTERS = (SIOCGIFFLAGS, SIOCGIFMTU, SIOCGIFINDEX, SIOCGETRT, SIOCGETRT6)
IN6_CMDS = (SIOCAIFADDR_IN6, SIOCDIFADDR_IN6, SIOCADDRT6, SIOCDELRT6, SIOCGETRT6)


def _need(data: bytes, size: int) -> bytes:
    if len(data) < size:
        raise KernelError(Errno.EINVAL, f"ioctl data of {len(data)} bytes, {size} needed")
    return data


def _inaddr(raw: bytes, what: str, required: bool = True) -> bytes | None:
    if raw[1] == AF_INET or (not required and raw[1] == 0 and any(raw[4:8])):
        return bytes(raw[4:8])
    if required:
        raise KernelError(Errno.EAFNOSUPPORT, f"{what}: not an AF_INET address")
    return None


def _inet(ns: Any) -> Any:
    if ns.inet is None:
        raise KernelError(Errno.EAFNOSUPPORT, "the inet domain is not in this kernel")
    return ns.inet


def ifioctl(ns: Any, l: Any, cmd: int, data: bytes) -> bytes | None:
    if cmd not in GETTERS and not l.proc.cred.is_root:
        raise KernelError(Errno.EPERM, "interface configuration needs root")
    if cmd in IN6_CMDS:
        from rumpkernel.net.inet6.ifconfig6 import ifioctl6

        return ifioctl6(ns, l, cmd, data)
    if cmd in (SIOCADDRT, SIOCDELRT, SIOCGETRT):
        return _route(ns, cmd, _need(data, S.RTREQ.size))
    if cmd in (SIOCSARP, SIOCDARP):
        return _arp(ns, cmd, _need(data, S.ARPREQ.size))
    name = S.ifname_of(_need(data, 16)[:16]).decode("ascii", "replace")
    if cmd == SIOCIFCREATE:
        with ns.lock:
            ns.clone_create(name)
        return None
    if cmd == SIOCIFDESTROY:
        return _destroy(ns, name)
    if cmd == SIOCSLINKSTR:
        text = data[16:].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        with ns.lock:
            ifp = ns.ifunit(name)
        ifp.driver.set_linkstr(ifp, text)      # host work, outside the stack lock
        return None
    if cmd == SIOCSIFPCAP:
        path = data[16:].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        with ns.lock:
            ifp = ns.ifunit(name)
            if path:
                ifp.start_pcap(path)
            else:
                ifp.stop_pcap()
        return None
    with ns.lock:
        ifp = ns.ifunit(name)
        return _ifreq(ns, ifp, cmd, data)


def _destroy(ns: Any, name: str) -> None:
    with ns.lock:
        ifp = ns.ifunit(name)
        if ifp.flags & IFF_LOOPBACK and name == "lo0":
            raise KernelError(Errno.EPERM, "lo0 cannot be destroyed")
    ifp.stop_driver()                # joins the receive thread: not under the lock
    with ns.lock:
        if ns.interfaces.get(name) is ifp:
            ns.detach_if(ifp)


def _ifreq(ns: Any, ifp: Any, cmd: int, data: bytes) -> bytes | None:
    head = data[:16]
    if cmd == SIOCGIFFLAGS:
        return head + S.IFINT.pack(ifp.flags)
    if cmd == SIOCGIFMTU:
        return head + S.IFINT.pack(ifp.mtu)
    if cmd == SIOCGIFINDEX:
        return head + S.IFINT.pack(ifp.index)
    if cmd == SIOCSIFFLAGS:
        (flags,) = S.IFINT.unpack_from(_need(data, 32), 16)
        was_up = ifp.flags & IFF_UP
        ifp.flags = (ifp.flags & ~SETTABLE) | (flags & SETTABLE & ~IFF_UP) | was_up
        ns.set_up(ifp, bool(flags & IFF_UP))
        if ifp.flags & IFF_UP and not was_up and ns.inet is not None:
            announce = ns.link_announce.get(ifp.kind)
            for ia in ifp.addrs if announce is not None else ():
                announce(ifp, ia.addr)
        return None
    if cmd == SIOCSIFMTU:
        (mtu,) = S.IFINT.unpack_from(_need(data, 32), 16)
        if not MIN_MTU <= mtu <= ifp.max_mtu:
            raise KernelError(Errno.EINVAL, f"MTU {mtu} (range {MIN_MTU}..{ifp.max_mtu})")
        ifp.mtu = mtu
        return None
    if cmd == SIOCAIFADDR:
        _, addr, bcast, mask = S.IFALIASREQ.unpack(_need(data, S.IFALIASREQ.size))
        a = _inaddr(addr, "address")
        m = _inaddr(mask, "netmask", required=False)
        if m is None:
            m = b"\xff\xff\xff\x00" if a[0] >= 192 else (b"\xff\xff\0\0" if a[0] >= 128
                                                         else b"\xff\0\0\0")
        mask_len(m)
        _inet(ns).add_address(ifp, a, m, _inaddr(bcast, "broadcast", required=False))
        return None
    if cmd == SIOCDIFADDR:
        _inet(ns).delete_address(ifp, _inaddr(_need(data, 32)[16:32], "address"))
        return None
    raise KernelError(Errno.ENOTTY, f"ioctl 0x{cmd:08x}")


def _route(ns: Any, cmd: int, data: bytes) -> bytes | None:
    dst, gw, mask, ifname, flags, _metric = S.RTREQ.unpack(data)
    d = _inaddr(dst, "destination")
    plen = 32 if flags & RTF_HOST else mask_len(_inaddr(mask, "netmask", required=False)
                                                 or bytes(4))
    with ns.lock:
        if cmd == SIOCGETRT:
            r = ns.routes.lookup(d)
            if r is None:
                raise KernelError(Errno.ESRCH, "no route to that destination")
            return S.RTREQ.pack(S.pack_sockaddr_in(r.dst, 0),
                                S.pack_sockaddr_in(r.gateway or bytes(4), 0),
                                S.pack_sockaddr_in(_mask(r.plen), 0),
                                r.ifp.name.encode(), r.flags, r.use)
        if cmd == SIOCDELRT:
            ns.routes.delete(d, plen, _inaddr(gw, "gateway", required=False)
                             if flags & RTF_GATEWAY else None)
            return None
        g = _inaddr(gw, "gateway", required=False) if flags & RTF_GATEWAY else None
        name = S.ifname_of(ifname).decode("ascii", "replace")
        if name:
            ifp = ns.ifunit(name)
        elif g is not None:
            r = ns.routes.lookup(g)
            if r is None or r.flags & RTF_GATEWAY:
                raise KernelError(Errno.ENETUNREACH, "gateway is not on a connected network")
            ifp = r.ifp
        elif flags & (RTF_REJECT | RTF_BLACKHOLE):
            ifp = _inet(ns).loopback_ifp() or next(iter(ns.interfaces.values()))
        else:
            raise KernelError(Errno.EINVAL, "route needs a gateway or an interface")
        keep = RTF_REJECT | RTF_BLACKHOLE
        ns.routes.add(Route(d, plen, g, ifp, RTF_UP | RTF_STATIC | (flags & keep)))
    return None


def _mask(plen: int) -> bytes:
    return ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF).to_bytes(4, "big")


def _arp(ns: Any, cmd: int, data: bytes) -> None:
    from rumpkernel.net.if_ether import arp_add, arp_delete

    addr, lladdr, ifname, flags = S.ARPREQ.unpack(data)
    ip = _inaddr(addr, "address")
    name = S.ifname_of(ifname).decode("ascii", "replace")
    with ns.lock:
        if name:
            ifp = ns.ifunit(name)
        else:
            r = ns.routes.lookup(ip)
            if r is None or r.ifp.kind != "ether":
                raise KernelError(Errno.ENETUNREACH, "address is not on an Ethernet")
            ifp = r.ifp
        if ifp.kind != "ether":
            raise KernelError(Errno.EINVAL, f"{ifp.name} has no ARP")
        if cmd == SIOCSARP:
            arp_add(ifp, ip, lladdr, bool(flags & ATF_PERM))
        else:
            arp_delete(ifp, ip)
