"""Host companions: the host sides of virtual devices and services (NetBSD's rumpcomp_user files).

A driver that needs host help (virtif's TAP device, shmif's bus file, sockin's host sockets)
gets it through ``host.companion(name, version)``, never by importing host modules.  Each
companion is a module here named in ``COMPANIONS``; it declares

    VERSION: int                     the interface version it implements
    HOSTS: tuple[str, ...]           host names it runs on ("posix"; "sim" for simulated ones)
    def companion(host) -> object    the object the driver talks to (interface in its docstring)

A driver asks for the version it was written against; a mismatch is ``HostError("EPROTO")``, a
host without the companion ``HostError("ENODEV")``.

Interface: lookup(host, name, version) -> object
"""

from __future__ import annotations

import importlib
from typing import Any

from rumpkernel.hypercall.interface import HostError

# name -> module; each module documents its own interface.
COMPANIONS: dict[str, str] = {
    "wire": "rumpkernel.hypercall.dev.wire",
    "shmif": "rumpkernel.hypercall.dev.shmif",
    "tap": "rumpkernel.hypercall.dev.tap",
    "pcap": "rumpkernel.hypercall.dev.pcap",
    "hostsock": "rumpkernel.hypercall.dev.hostsock",
}


def lookup(host: Any, name: str, version: int) -> Any:
    modname = COMPANIONS.get(name)
    if modname is None:
        raise HostError("ENODEV", f"no host companion {name!r}")
    mod = importlib.import_module(modname)
    if host.name not in mod.HOSTS:
        raise HostError("ENODEV", f"host companion {name!r} does not run on a {host.name} host")
    if version != mod.VERSION:
        raise HostError("EPROTO", f"host companion {name!r} is version {mod.VERSION}, "
                        f"the driver wants {version}")
    return mod.companion(host)
