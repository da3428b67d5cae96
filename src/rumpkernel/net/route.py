"""The IPv4 routing table: longest-prefix match over host, network and default routes.

Interface:
    Route(dst, plen, gateway, ifp, flags, src=None)     dst/gateway/src as 4 bytes
    RouteTable(): add(route) (EEXIST) / delete(dst, plen, gateway=None) -> Route (ESRCH) /
                  lookup(dst) -> Route | None / delete_if(ifp) / delete_where(pred) / routes()
    len(table)

One route per (destination, prefix length).  ``lookup`` tries prefix lengths from the longest
present downwards, one dictionary probe each (at most 33).  Routes count their use.
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
        self.flags = flags | (RTF_GATEWAY if gateway else 0) | (RTF_HOST if plen == 32 else 0)
        self.src = src
        self.use = 0

    def nexthop(self, dst: bytes) -> bytes:
        return self.gateway if self.gateway is not None else dst

    def __repr__(self) -> str:
        from rumpkernel.net.wire.base import ip4str

        gw = ip4str(self.gateway) if self.gateway else "link"
        return f"<Route {ip4str(self.dst)}/{self.plen} via {gw} on {self.ifp.name}>"


def _key(dst: bytes, plen: int) -> int:
    return int.from_bytes(dst, "big") & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)


class RouteTable:
    __slots__ = ("_by_len", "_lens")

    def __init__(self) -> None:
        self._by_len: dict[int, dict[int, Route]] = {}
        self._lens: list[int] = []

    def __len__(self) -> int:
        return sum(len(d) for d in self._by_len.values())

    def add(self, r: Route) -> Route:
        if not 0 <= r.plen <= 32:
            raise KernelError(Errno.EINVAL, f"prefix length {r.plen}")
        d = self._by_len.get(r.plen)
        if d is None:
            d = self._by_len[r.plen] = {}
            self._lens = sorted(self._by_len, reverse=True)
        k = _key(r.dst, r.plen)
        if k in d:
            raise KernelError(Errno.EEXIST, f"route to {r!r} exists")
        r.dst = k.to_bytes(4, "big")
        d[k] = r
        return r

    def delete(self, dst: bytes, plen: int, gateway: bytes | None = None) -> Route:
        d = self._by_len.get(plen, {})
        k = _key(dst, plen)
        r = d.get(k)
        if r is None or (gateway is not None and r.gateway not in (gateway, None)):
            raise KernelError(Errno.ESRCH, "no such route")
        del d[k]
        if not d:
            del self._by_len[plen]
            self._lens = sorted(self._by_len, reverse=True)
        return r

    def get(self, dst: bytes, plen: int) -> Route | None:
        return self._by_len.get(plen, {}).get(_key(dst, plen))

    def lookup(self, dst: bytes) -> Route | None:
        a = int.from_bytes(dst, "big")
        by_len = self._by_len
        for plen in self._lens:
            r = by_len[plen].get(a & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF))
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
