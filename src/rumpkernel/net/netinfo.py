"""What netstat, ifconfig, route and arp show: the stack's tables as JSON-ready data (the
``netinfo`` system call).

Interface:
    netinfo(ns, topic) -> object     topics: "interfaces", "routes", "arp", "sockets",
                                     "stats", and with IPv6 "routes6", "nd6" (the neighbour
                                     caches), "rdnss" (DNS servers from router
                                     advertisements); ENOENT for others
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import AF_INET, AF_INET6, AF_LOCAL
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.wire.base import ip4str

TOPICS = ("interfaces", "routes", "arp", "sockets", "stats", "routes6", "nd6", "rdnss")


def netinfo(ns: Any, topic: str) -> Any:
    with ns.lock:
        if topic == "interfaces":
            return [ifp.info() for ifp in sorted(ns.interfaces.values(), key=lambda i: i.index)]
        if topic == "routes":
            return [{"dst": ip4str(r.dst), "plen": r.plen,
                     "gateway": ip4str(r.gateway) if r.gateway else None,
                     "interface": r.ifp.name, "ifindex": r.ifp.index, "flags": r.flags,
                     "use": r.use,
                     "src": ip4str(r.src) if r.src else None} for r in ns.routes.routes()]
        if topic == "arp":
            from rumpkernel.net.if_ether import arp_entries

            return arp_entries(ns) if ns.inet is not None else []
        if topic == "sockets":
            return [_socket(so) for so in ns.sockets.values()]
        if topic == "stats":
            return {p: dict(sorted(c.items())) for p, c in sorted(ns.stats.items())}
        if topic in ("routes6", "nd6", "rdnss"):
            if ns.inet6 is None:
                return []
            from rumpkernel.net.inet6 import info6

            return info6.topic(ns, topic)
    raise KernelError(Errno.ENOENT, f"netinfo topic {topic!r} (one of {', '.join(TOPICS)})")


def fmt_addr(addr: tuple | None) -> str | None:
    if addr is None:
        return None
    if addr[0] == AF_INET:
        return f"{ip4str(addr[1])}:{addr[2]}"
    if addr[0] == AF_LOCAL:
        return addr[1].decode("utf-8", "replace")
    if addr[0] == AF_INET6:
        from rumpkernel.net.wire.ipv6 import ip6str

        zone = f"%{addr[4]}" if len(addr) > 4 and addr[4] else ""
        return f"[{ip6str(addr[1])}{zone}]:{addr[2]}"
    return repr(addr)


def _socket(so: Any) -> dict[str, Any]:
    pr = so.proto
    try:
        local = fmt_addr(pr.sockaddr(so))
    except KernelError:
        local = None
    try:
        remote = fmt_addr(pr.peeraddr(so)) if so.connected else None
    except KernelError:
        remote = None
    d = {"id": so.id, "family": so.domain, "type": so.type, "protocol": so.protocol,
         "proto": pr.name, "local": local, "remote": remote, "state": so.state,
         "listening": so.listening, "rcv": so.rcv.cc, "snd": so.snd.cc,
         "qlen": len(so.q), "qlimit": so.qlimit}
    d.update(pr.info(so))
    return d
