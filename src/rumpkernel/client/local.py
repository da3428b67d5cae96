"""Local clients: a program calling a kernel in its own process (``k.sys``).

``attach(k)`` gives the kernel its ``sys`` facade whose ``_call`` enters the kernel directly on
the caller's thread and turns ``KernelError`` into the host's ``OSError``, and binds the file
API (``k.open``, ``k.listdir``, ``k.path`` ... see ``client.files``) to it.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.client.abi import oserror
from rumpkernel.client.files import bind as bind_files
from rumpkernel.client.sys import Sys
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


def attach(k: Kernel) -> Sys:
    def after_reboot(howto: int) -> None:
        k.halt(sync=not howto & RB_NOSYNC)

    k.sys = Sys(local_call(k), after_reboot)
    bind_files(k, k.sys)
    return k.sys
