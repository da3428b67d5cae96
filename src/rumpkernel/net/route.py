"""Routing tables: longest-prefix match over host, network and default routes.  The same
code serves IPv4 (``ns.routes``, 4-byte addresses) and IPv6 (``ns.inet6.routes``, 16 bytes).

Interface:
    Route(dst, plen, gateway, ifp, flags, src=None)     dst/gateway/src as 4 (or 16) bytes
    RouteTable(width=32): add(route) (EEXIST) / delete(dst, plen, gateway=None) -> Route
                  (ESRCH) / lookup(dst) -> Route | None / get(dst, plen) / delete_if(ifp) /
                  delete_where(pred) / routes()
    len(table)

One route per (destination, prefix length).  ``lookup`` tries prefix lengths from the longest
present downwards, one dictionary probe each (at most width + 1).  Routes count their use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from rumpkernel.kern.abi import RTF_GATEWAY, RTF_HOST
from rumpkernel.kern.errno import Errno, KernelError


class Route:
    __slots__ = ("dst", "flags", "gateway", "ifp", "plen", "src", "use")

    def __init__(self, dst: bytes, plen: int, gateway: bytes | None, ifp: Any, flags: int,
                 src: bytes | None = None) -> None:
        self.dst = dst
        self.plen = plen
        self.gateway = gateway
        self.ifp = ifp
        self.flags = flags | (RTF_GATEWAY if gateway else 0) | (
            RTF_HOST if plen == len(dst) * 8 else 0)
        self.src = src
        self.use = 0

    def nexthop(self, dst: bytes) -> bytes:
        return self.gateway if self.gateway is not None else dst

    def __repr__(self) -> str:
        from rumpkernel.net.wire.base import ip4str

        def text(a: bytes) -> str:
            return ip4str(a) if len(a) == 4 else a.hex()

        gw = text(self.gateway) if self.gateway else "link"
        return f"<Route {text(self.dst)}/{self.plen} via {gw} on {self.ifp.name}>"


class RouteTable:
    __slots__ = ("_by_len", "_lens", "_masks", "width")

    def __init__(self, width: int = 32) -> None:
        self.width = width
        full = (1 << width) - 1
        self._masks = [(full << (width - n)) & full for n in range(width + 1)]
        self._by_len: dict[int, dict[int, Route]] = {}
        self._lens: list[int] = []

    def _key(self, dst: bytes, plen: int) -> int:
        if len(dst) * 8 != self.width:
            raise KernelError(Errno.EAFNOSUPPORT, f"a {len(dst)}-byte address in a "
                              f"{self.width}-bit routing table")
        return int.from_bytes(dst, "big") & self._masks[plen]

    def __len__(self) -> int:
        return sum(len(d) for d in self._by_len.values())

    def add(self, r: Route) -> Route:
        if not 0 <= r.plen <= self.width:
            raise KernelError(Errno.EINVAL, f"prefix length {r.plen}")
        d = self._by_len.get(r.plen)
        if d is None:
            d = self._by_len[r.plen] = {}
            self._lens = sorted(self._by_len, reverse=True)
        k = self._key(r.dst, r.plen)
        if k in d:
            raise KernelError(Errno.EEXIST, f"route to {r!r} exists")
        r.dst = k.to_bytes(self.width // 8, "big")
        d[k] = r
        return r

    def delete(self, dst: bytes, plen: int, gateway: bytes | None = None) -> Route:
        if not 0 <= plen <= self.width:
            raise KernelError(Errno.ESRCH, "no such route")
        d = self._by_len.get(plen, {})
        k = self._key(dst, plen)
        r = d.get(k)
        if r is None or (gateway is not None and r.gateway not in (gateway, None)):
            raise KernelError(Errno.ESRCH, "no such route")
        del d[k]
        if not d:
            del self._by_len[plen]
            self._lens = sorted(self._by_len, reverse=True)
        return r

    def get(self, dst: bytes, plen: int) -> Route | None:
        if not 0 <= plen <= self.width:
            return None
        return self._by_len.get(plen, {}).get(self._key(dst, plen))

    def lookup(self, dst: bytes) -> Route | None:
        a = int.from_bytes(dst, "big")
        by_len = self._by_len
        masks = self._masks
        for plen in self._lens:
            r = by_len[plen].get(a & masks[plen])
            if r is not None:
                r.use += 1
                return r
        return None

    def delete_where(self, pred: Callable[[Route], bool]) -> list[Route]:
        gone = [r for r in self.routes() if pred(r)]
        for r in gone:
            self.delete(r.dst, r.plen)
        return gone

    def delete_if(self, ifp: Any) -> list[Route]:
        return self.delete_where(lambda r: r.ifp is ifp)

    def routes(self) -> Iterator[Route]:
        for plen in list(self._lens):
            yield from sorted(self._by_len.get(plen, {}).values(), key=lambda r: r.dst)
