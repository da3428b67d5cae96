"""rumpkernel: a rump kernel in Python.

    import rumpkernel
    k = rumpkernel.boot()                  # a kernel with every available component
    fd = k.sys.open("/tmp/x", os.O_CREAT | os.O_RDWR, 0o644)
    k.sys.write(fd, b"hello"); k.sys.close(fd)
    k.halt()

``boot`` takes the host (``PosixHost()`` by default, ``SimHost(seed)`` for deterministic tests),
the components to include (``None``: all; ``()``: the base kernel alone), the number of virtual
CPUs, a memory limit in bytes and a host name.

    conn = rumpkernel.connect("unix:///tmp/sock")   # a kernel in a rump_server process
    conn.sys.open(...)                              # the same facade, as remote system calls
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from rumpkernel.hypercall import Hypercalls, PosixHost
from rumpkernel.kern.errno import Errno, KernelError, KernelPanic
from rumpkernel.kern.kernel import Kernel

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("SimHost", "SimWorld"):
        from rumpkernel.hypercall import sim

        return getattr(sim, name)
    raise AttributeError(name)
__all__ = ["Errno", "Kernel", "KernelError", "KernelPanic", "PosixHost", "SimHost", "SimWorld",
           "boot", "connect"]


def boot(host: Hypercalls | None = None, *, components: Iterable[str] | None = None,
         ncpu: int = 1, memlimit: int | None = None, hostname: str | None = None,
         verbose: bool = False) -> Kernel:
    """Boot a kernel and return it, ready for ``k.sys`` calls.  Raises KernelError for an
    unknown component or an incompatible host."""
    from rumpkernel.client.local import attach
    from rumpkernel.kern.component import resolve

    comps = resolve(components)
    k = Kernel(host or PosixHost(), ncpu=ncpu, memlimit=memlimit, hostname=hostname)
    k.verbose = verbose
    import rumpkernel.kern.kern_syscalls as kern_syscalls

    try:
        with k.entered():
            k.install_syscalls("kern", kern_syscalls)
            for c in comps:
                c.init(k)
                k.components.append(c.name)
                k.factions.add(c.faction)
            k.finish_sysent()
            k.init_stat_sysctl()
    except BaseException:
        with contextlib.suppress(Exception):       # a component refused: stop what did start
            k.halt()
        raise
    attach(k)
    return k


def connect(url: str | None = None, **kw: Any) -> Any:
    """Connect to a ``rump_server`` at ``url`` (default ``$RUMP_SERVER``) and return the
    connection; ``conn.sys`` is the same facade as ``k.sys``.  Options as
    ``rumpkernel.client.remote.RemoteClient`` (retry=, piggyback=, autofork=, secret=)."""
    from rumpkernel.client.remote import connect as _connect

    return _connect(url, **kw)
