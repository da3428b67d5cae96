"""What ifconfig, route, ndp and the resolver see of IPv6: the inet6 tables as JSON-ready data
(topics of the ``netinfo`` system call, net/netinfo.py).

Interface (stack lock held):
    if_addrs6(ifp) -> [{"addr", "plen", "state", "origin", "scope", "valid_s", "preferred_s"}]
                     "scope": the interface name for link-local addresses, else None;
                     lifetimes in seconds (None: infinite)
    topic(ns, name) -> list    "routes6" (the table, then one fe80::/64 route per interface
                     with IPv6), "nd6" (neighbour caches, default routers, prefixes, link
                     parameters per interface), "rdnss" (DNS servers per interface)
"""

from __future__ import annotations

from typing import Any

from rumpkernel.net.wire.ipv6 import ip6str, is_linklocal


def _secs(until: int | None, now: int) -> int | None:
    return None if until is None else max(0, (until - now) // 10**9)


def if_addrs6(ifp: Any) -> list[dict[str, Any]]:
    in6 = getattr(ifp, "in6", None)
    if in6 is None:
        return []
    now = ifp.ns.k.monotonic_ns()
    return [{"addr": ip6str(a.addr), "plen": a.plen, "state": a.state, "origin": a.origin,
             "scope": ifp.name if is_linklocal(a.addr) else None,
             "valid_s": _secs(a.valid_until, now), "preferred_s": _secs(a.preferred_until, now)}
            for a in in6.ac.addresses()]


def topic(ns: Any, name: str) -> list[dict[str, Any]]:
    if name == "routes6":
        return _routes(ns)
    if name == "nd6":
        from rumpkernel.net.inet6.nd6 import nd_entries

        return [{"neighbors": nd_entries(ns), "interfaces": _ifaces(ns)}]
    return [{"interface": ifp.name, "servers": [ip6str(s) for s in ifp.in6.dns]}
            for ifp in ns.inet6.up_interfaces() if ifp.in6.dns]


def _routes(ns: Any) -> list[dict[str, Any]]:
    out = [{"dst": ip6str(r.dst), "plen": r.plen,
            "gateway": ip6str(r.gateway) if r.gateway else None,
            "gateway_scope": r.ifp.name if r.gateway and is_linklocal(r.gateway) else None,
            "interface": r.ifp.name, "ifindex": r.ifp.index, "flags": r.flags, "use": r.use,
            "src": ip6str(r.src) if r.src else None} for r in ns.inet6.routes.routes()]
    from rumpkernel.kern.abi import RTF_CONNECTED, RTF_UP

    for ifp in ns.inet6.up_interfaces():
        out.append({"dst": "fe80::", "plen": 64, "gateway": None, "gateway_scope": None,
                    "interface": ifp.name, "ifindex": ifp.index,
                    "flags": RTF_UP | RTF_CONNECTED, "use": 0, "src": None, "scope": ifp.name})
    return out


def _ifaces(ns: Any) -> list[dict[str, Any]]:
    now = ns.k.monotonic_ns()
    out = []
    for ifp in ns.inet6.up_interfaces():
        in6 = ifp.in6
        out.append({"interface": ifp.name, "mtu": in6.mtu,
                    "hop_limit": in6.hop_limit or ns.inet6.hlim,
                    "reachable_ms": in6.nc.reachable_ns // 10**6 if in6.nc else None,
                    "routers": [{"addr": ip6str(r), "expires_in": _secs(t, now)}
                                for r, t in in6.ac.routers()],
                    "prefixes": [{"prefix": ip6str(p), "plen": n, "expires_in": _secs(t, now)}
                                 for p, n, t in in6.ac.prefixes()],
                    "groups": sorted(ip6str(g) for g in in6.groups)})
    return out
