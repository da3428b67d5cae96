"""Helpers for IPv6 tests on simulated kernels (run inside netkit.drive, so waits pass virtual
time): waiting for DAD, echo through ICMPv6 echo sockets, address lookups."""

from __future__ import annotations

import time
from typing import Any


def sleep(k: Any, seconds: float) -> None:
    """Let ``seconds`` of the kernel's time pass (a receive that times out)."""
    S = k.socket
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as s:
        s.settimeout(seconds)
        try:
            s.recvfrom(1)
        except TimeoutError:
            pass


def addrs6(k: Any, ifname: str) -> list[dict[str, Any]]:
    for i in k.socket.config.interfaces():
        if i["name"] == ifname:
            return list(i.get("addrs6", ()))
    raise KeyError(ifname)


def linklocal(k: Any, ifname: str) -> str:
    return next(a["addr"] for a in addrs6(k, ifname) if a["origin"] == "linklocal")


def settle(k: Any, ifname: str, limit: float = 10.0) -> list[dict[str, Any]]:
    """Wait until no address of ``ifname`` is tentative (DAD done); its addresses."""
    waited = 0.0
    while True:
        got = addrs6(k, ifname)
        if got and not any(a["state"] == "tentative" for a in got):
            return got
        if waited >= limit:
            raise AssertionError(f"{ifname}: DAD did not finish: {got}")
        sleep(k, 0.5)
        waited += 0.5


def ping6(k: Any, dst: tuple, count: int = 1, size: int = 56, timeout: float = 2.0,
          hops: int | None = None) -> list[tuple[float, tuple] | None]:
    """Echo requests through an ICMPv6 echo socket: [(rtt, source address) | None]."""
    S = k.socket
    clock = k.sys.clock_gettime
    out: list[tuple[float, tuple] | None] = []
    with S.socket(S.AF_INET6, S.SOCK_DGRAM, S.IPPROTO_ICMPV6) as s:
        if hops is not None:
            s.setsockopt(S.IPPROTO_IPV6, S.IPV6_UNICAST_HOPS, hops)
        s.settimeout(timeout)
        for seq in range(count):
            t0 = clock(time.CLOCK_MONOTONIC)
            s.sendto(bytes((128, 0, 0, 0, 0, 0, 0, seq)) + bytes(size), dst)
            got = None
            try:
                while got is None:
                    data, addr = s.recvfrom(70000)
                    if data[0] == 129 and data[7] == seq:
                        got = (clock(time.CLOCK_MONOTONIC) - t0, addr)
            except TimeoutError:
                pass
            out.append(got)
    return out
