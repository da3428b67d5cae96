"""sockin as a component (net/sockin.py): the kernel's AF_INET/AF_INET6 sockets served by the
host's sockets.  It replaces the kernel's own inet stack, so it conflicts with ``net_inet`` (and
so with lo0 and the NICs, which need inet) and is not part of "every component": ask for it,
e.g. ``rumpkernel.boot(components=["all", "net_sockin"])`` or ``rump_server -l all -l
rumpnet_sockin``."""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.component import Phase, component


@component("net_sockin", phase=Phase.NET, faction="net", requires=("net",),
           conflicts=("net_inet", "net_inet6"), default=False,
           desc="sockin: AF_INET/AF_INET6 sockets served by the host's network")
def sockin_init(k: Any) -> None:
    from rumpkernel.net.sockin import attach_sockin

    attach_sockin(k)
