"""IPv6 configuration ioctls (``rump.ifconfig IF inet6 ...``, ``rump.route -inet6 ...``), on any
socket, as the IPv4 ones in net/ifconfig.py.

Interface:
    CMDS                                  the ioctl numbers handled here
    ifioctl6(ns, l, cmd, data) -> bytes | None
        SIOCAIFADDR_IN6 (structs.IN6_ALIASREQ)   a static address; the prefix length from
                                                 ``prefixmask`` (none: 64); brings the
                                                 interface up; EINVAL, EEXIST
        SIOCDIFADDR_IN6 (structs.IN6_IFREQ)      EADDRNOTAVAIL
        SIOCADDRT6 / SIOCDELRT6 / SIOCGETRT6 (structs.RTREQ6)
                                                 ESRCH, EEXIST, ENETUNREACH (gateway not on a
                                                 connected network), EINVAL (a link-local
                                                 gateway without an interface)
    Changes need root (EPERM, checked by the caller); EAFNOSUPPORT without IPv6 or for a
    sockaddr that is not AF_INET6.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import (
    AF_INET6,
    RTF_BLACKHOLE,
    RTF_DYNAMIC,
    RTF_GATEWAY,
    RTF_REJECT,
    RTF_STATIC,
    RTF_UP,
    SIOCADDRT6,
    SIOCAIFADDR_IN6,
    SIOCDELRT6,
    SIOCDIFADDR_IN6,
    SIOCGETRT6,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.syscall import structs as S
from rumpkernel.net.route import Route
from rumpkernel.net.wire.ipv6 import UNSPECIFIED, is_linklocal, prefix_of

CMDS = (SIOCAIFADDR_IN6, SIOCDIFADDR_IN6, SIOCADDRT6, SIOCDELRT6, SIOCGETRT6)


def _sin6(raw: bytes, what: str, required: bool = True) -> tuple[bytes, int] | None:
    """(address, scope id) of a sockaddr_in6 field; None for an empty optional one."""
    if raw[1] == AF_INET6:
        a = S.unpack_sockaddr(raw)
        return a[1], a[4]
    if required:
        raise KernelError(Errno.EAFNOSUPPORT, f"{what}: not an AF_INET6 address")
    return None


def mask_plen(mask: bytes) -> int:
    v = int.from_bytes(mask, "big")
    n = bin(v).count("1")
    if v != ((1 << 128) - 1) ^ ((1 << (128 - n)) - 1):
        raise KernelError(Errno.EINVAL, "prefix mask is not contiguous")
    return n


def ifioctl6(ns: Any, l: Any, cmd: int, data: bytes) -> bytes | None:
    inet6 = ns.inet6
    if inet6 is None:
        raise KernelError(Errno.EAFNOSUPPORT, "the inet6 domain is not in this kernel")
    if cmd in (SIOCADDRT6, SIOCDELRT6, SIOCGETRT6):
        if len(data) < S.RTREQ6.size:
            raise KernelError(Errno.EINVAL, f"rtreq6 of {len(data)} bytes")
        return _route6(ns, inet6, cmd, data[: S.RTREQ6.size])
    if cmd == SIOCAIFADDR_IN6:
        if len(data) < S.IN6_ALIASREQ.size:
            raise KernelError(Errno.EINVAL, f"in6_aliasreq of {len(data)} bytes")
        name, addr, _dst, mask, _flags, _vl, _pl = S.IN6_ALIASREQ.unpack(
            data[: S.IN6_ALIASREQ.size])
        a = _sin6(addr, "address")
        m = _sin6(mask, "prefixmask", required=False)
        plen = mask_plen(m[0]) if m is not None else 64
        with ns.lock:
            inet6.add_address(ns.ifunit(S.ifname_of(name)), a[0], plen)
        return None
    if len(data) < S.IN6_IFREQ.size:
        raise KernelError(Errno.EINVAL, f"in6_ifreq of {len(data)} bytes")
    name, addr = S.IN6_IFREQ.unpack(data[: S.IN6_IFREQ.size])
    a = _sin6(addr, "address")
    with ns.lock:
        inet6.delete_address(ns.ifunit(S.ifname_of(name)), a[0])
    return None


def _route6(ns: Any, inet6: Any, cmd: int, data: bytes) -> bytes | None:
    dst_raw, gw_raw, plen, ifname, flags, _metric = S.RTREQ6.unpack(data)
    dst = _sin6(dst_raw, "destination")[0]
    if not 0 <= plen <= 128:
        raise KernelError(Errno.EINVAL, f"prefix length {plen}")
    with ns.lock:
        if cmd == SIOCGETRT6:
            return _get(inet6, dst)
        gw = _sin6(gw_raw, "gateway", required=False) if flags & RTF_GATEWAY else None
        if cmd == SIOCDELRT6:
            r = inet6.routes.get(dst, plen)
            if r is None or (gw is not None and r.gateway not in (gw[0], None)):
                raise KernelError(Errno.ESRCH, "no such route")
            inet6.routes.delete(dst, plen)
            if plen == 0:
                inet6.routers_changed()
            return None
        name = S.ifname_of(ifname).decode("ascii", "replace")
        ifp = _route_ifp(ns, inet6, name, gw, flags)
        old = inet6.routes.get(dst, plen)
        if old is not None and old.flags & RTF_DYNAMIC:
            inet6.routes.delete(dst, plen)              # a static route replaces a learned one
        keep = RTF_REJECT | RTF_BLACKHOLE
        inet6.routes.add(Route(prefix_of(dst, plen), plen, gw[0] if gw else None, ifp,
                               RTF_UP | RTF_STATIC | (flags & keep)))
    return None


def _route_ifp(ns: Any, inet6: Any, name: str, gw: tuple[bytes, int] | None,
               flags: int) -> Any:
    if name:
        return ns.ifunit(name)
    if gw is not None:
        if is_linklocal(gw[0]):
            if not gw[1]:
                raise KernelError(Errno.EINVAL, "a link-local gateway needs an interface")
            return inet6.zone_ifp(gw[1])
        r = inet6.routes.lookup(gw[0])
        if r is None or r.flags & RTF_GATEWAY:
            raise KernelError(Errno.ENETUNREACH, "gateway is not on a connected network")
        return r.ifp
    if flags & (RTF_REJECT | RTF_BLACKHOLE):
        return inet6.loopback_ifp() or next(iter(ns.interfaces.values()))
    raise KernelError(Errno.EINVAL, "route needs a gateway or an interface")


def _get(inet6: Any, dst: bytes) -> bytes:
    r = inet6.routes.lookup(dst)
    if r is None:
        raise KernelError(Errno.ESRCH, "no route to that destination")
    gw = r.gateway or UNSPECIFIED
    scope = r.ifp.index if is_linklocal(gw) else 0
    return S.RTREQ6.pack(S.pack_sockaddr_in6(r.dst, 0), S.pack_sockaddr_in6(gw, 0, 0, scope),
                         r.plen, r.ifp.name.encode(), r.flags, r.use)
