"""Caller memory: copyin, copyout, copyinstr (DESIGN rule 4).

The kernel never touches a caller's buffer directly.  Each process has a *vmspace*; a system call
that takes a pointer calls ``l.proc.vm.copyin(uaddr, n)`` and friends.  For a local client a user
pointer is a Python buffer object in the same process (bytes, bytearray, memoryview); for a remote
client it is a handle the server resolves with a round trip to the client (client/sysproxy).

Interface (every vmspace):
    copyin(uaddr, n, off=0) -> bytes          EFAULT on a bad pointer or range
    copyout(data, uaddr, off=0)               EFAULT (e.g. read-only buffer)
    copyinstr(uaddr, maxlen) -> bytes         ENAMETOOLONG past maxlen (NUL terminates)
    vec(uvec) -> list[(uaddr, length)]        validate a vector argument (readv/writev)
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import PATH_MAX
from rumpkernel.kern.errno import Errno, KernelError


class LocalVmspace:
    """User memory of local clients: pointers are Python buffers of the calling program."""

    __slots__ = ()
    remote = False

    def copyin(self, uaddr: Any, n: int, off: int = 0) -> bytes:
        if type(uaddr) is bytes and off == 0 and n == len(uaddr):
            return uaddr
        try:
            mv = memoryview(uaddr).cast("B")
        except TypeError:
            raise KernelError(Errno.EFAULT, "copyin: not a buffer") from None
        if off < 0 or n < 0 or off + n > mv.nbytes:
            raise KernelError(Errno.EFAULT, f"copyin: {n} bytes at {off} outside buffer")
        return mv[off : off + n].tobytes()

    def copyout(self, data: bytes, uaddr: Any, off: int = 0) -> None:
        try:
            mv = memoryview(uaddr).cast("B")
        except TypeError:
            raise KernelError(Errno.EFAULT, "copyout: not a buffer") from None
        n = len(data)
        if mv.readonly or off < 0 or off + n > mv.nbytes:
            raise KernelError(Errno.EFAULT, f"copyout: {n} bytes at {off} do not fit")
        mv[off : off + n] = data

    def copyinstr(self, uaddr: Any, maxlen: int = PATH_MAX) -> bytes:
        if type(uaddr) is not bytes:
            try:
                uaddr = bytes(memoryview(uaddr))
            except TypeError:
                raise KernelError(Errno.EFAULT, "copyinstr: not a buffer") from None
        nul = uaddr.find(b"\0")
        if nul >= 0:
            uaddr = uaddr[:nul]
        if len(uaddr) >= maxlen:
            raise KernelError(Errno.ENAMETOOLONG, f"string longer than {maxlen - 1} bytes")
        return uaddr

    def vec(self, uvec: Any) -> list[tuple[Any, int]]:
        try:
            out = [(u, int(n)) for u, n in uvec]
        except (TypeError, ValueError):
            raise KernelError(Errno.EFAULT, "bad iovec") from None
        if len(out) > 1024:
            raise KernelError(Errno.EINVAL, "too many iovecs")
        return out
