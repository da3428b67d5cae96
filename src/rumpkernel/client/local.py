"""Local clients: a program calling a kernel in its own process (``k.sys``).

``attach(k)`` gives the kernel its ``sys`` facade whose ``_call`` enters the kernel directly on
the caller's thread and turns ``KernelError`` into the host's ``OSError``, and binds the file
API (``k.open``, ``k.listdir``, ``k.path`` ... see ``client.files``) and the socket module
(``k.socket``, see ``client.socket``) to it.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.client.abi import oserror
from rumpkernel.client.files import FileAPI
from rumpkernel.client.sys import Sys
from rumpkernel.hypercall.hostio import halt_at_exit
from rumpkernel.kern.abi import RB_NOSYNC
from rumpkernel.kern.errno import KernelError
from rumpkernel.kern.kernel import Kernel


def local_call(k: Kernel) -> Any:
    syscall = k.syscall

    def _call(num: int, args: tuple[Any, ...]) -> Any:
        try:
            return syscall(num, args)
        except KernelError as e:
            raise oserror(e.errno, e.detail) from None

    return _call


def _socket_module(sys: Sys) -> Any:
    from rumpkernel.client.socket import SocketModule  # imported on first use of k.socket

    return SocketModule(sys)


def attach(k: Kernel) -> Sys:
    """Fill the kernel's client slots: ``k.sys``, ``k.files`` (whose methods ``k.open`` ...
    delegate to) and ``k.errtrans`` (the kernel-object API raises OSError), and make sure a
    kernel the program forgets to halt still writes its data back (see ``hostio.halt_at_exit``).
    """
    def after_reboot(howto: int) -> None:
        k.halt(sync=not howto & RB_NOSYNC)

    k.sys = Sys(local_call(k), after_reboot)
    k.files = FileAPI(k.sys)
    k.lazy["socket"] = lambda: _socket_module(k.sys)
    k.errtrans = lambda e: oserror(e.errno, e.detail)
    if not k.host.deterministic:
        halt_at_exit(k)
    return k.sys
