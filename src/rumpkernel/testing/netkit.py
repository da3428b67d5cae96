"""Network testing kit: kernels wired together in one process, fault-injecting links, and a way
to run test code as a kernel thread so a simulated network replays exactly from its seed.

Interface:
    sim_kernels(seed, names) -> (world, [Kernel])     kernels on one SimWorld (all components)
    plug(k, ifname, hub, cidr)                        ``ifconfig ifname create linkstr hub inet
                                                      cidr up`` on the in-process wire
    faults(k, hub, **kw)                              configure a hub's faults (see
                                                      hypercall/dev/wire.Faults)
    hub(k, name)                                      the hub object (its counters)
    drive(k, fn) -> fn()'s value                      run ``fn`` as a thread of ``k``'s simulated
                                                      world and wait for it; exceptions come back.
                                                      Code that runs this way never leaves the
                                                      world, so virtual time passes only when
                                                      every thread waits -- exactly as on replay.
    ping(k, dst, count=1, ident=..., size=56, timeout=1.0) -> [rtt seconds | None]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import rumpkernel


def sim_kernels(seed: int, names: list[str], **boot: Any) -> tuple[Any, list[Any]]:
    world = rumpkernel.SimWorld(seed)
    return world, [rumpkernel.boot(world.host(n), hostname=n, **boot) for n in names]


def plug(k: Any, ifname: str, hub: str, cidr: str | None) -> None:
    k.socket.config.ifconfig(ifname, create=True, linkstr=hub, inet=cidr)


def _wire(k: Any) -> Any:
    return k.host.companion("wire", 1)


def faults(k: Any, hub_name: str, **kw: Any) -> None:
    _wire(k).configure(hub_name, **kw)


def hub(k: Any, name: str) -> Any:
    return _wire(k).hub(name)


def drive(k: Any, fn: Callable[[], Any], name: str = "driver") -> Any:
    """On the sim host: run ``fn`` as a thread of the kernels' world (not of any one kernel:
    it may call into all of them, each call taking that kernel's virtual CPU) and wait for it.
    On the posix host: just call it."""
    host = k.host
    if not getattr(host, "deterministic", False):
        return fn()
    world = host.world
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    world.sched_enter()
    try:
        world.thread_join(world.thread_create(body, name))
    finally:
        world.sched_leave()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def ping(k: Any, dst: str, count: int = 1, ident: int = 0x5A5A, size: int = 56,
         timeout: float = 1.0) -> list[float | None]:
    """Echo requests from kernel ``k`` (a raw ICMP socket); the round-trip times measured on
    the kernel's clock, None for a lost one."""
    from rumpkernel.net.wire import icmp

    S = k.socket
    clock = k.sys.clock_gettime
    mono = time.CLOCK_MONOTONIC
    out: list[float | None] = []
    with S.socket(S.AF_INET, S.SOCK_RAW, S.IPPROTO_ICMP) as s:
        for seq in range(count):
            t0 = clock(mono)
            s.sendto(icmp.echo(icmp.ECHO, ident, seq, bytes(size)).emit(), (dst, 0))
            s.settimeout(timeout)
            rtt = None
            try:
                while rtt is None:
                    data, _addr = s.recvfrom(65535)
                    hl = (data[0] & 0xF) * 4
                    m = icmp.parse(data[hl:])
                    if m.type == icmp.ECHO_REPLY and m.ident == ident and m.seq == seq:
                        rtt = clock(mono) - t0
            except TimeoutError:
                pass
            out.append(rtt)
    return out
