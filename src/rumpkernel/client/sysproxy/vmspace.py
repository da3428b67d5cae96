"""The vmspace of a remote client process: copyin/copyout/copyinstr as round trips.

A pointer argument of a remote system call reaches the kernel as a ``RemotePtr``: the handle the
client gave its buffer, the buffer's size and writability (the client's "memory map", so range
and permission faults are found without a round trip, exactly as the local vmspace finds them),
optional piggy-backed content, and the request ``slot`` whose connection leads back to the
client.  ``REMOTE_VM`` implements the contract of ``kern.vm`` on top:

    copyin(p, n, off)   cached content if piggy-backed, else COPYIN round trips of at most
                        COPY_CHUNK bytes each                         EFAULT, EINTR
    copyout(data, p, off)   COPYOUT frames (no reply, as in the dissertation's Table 3.6)
    raise_signal(l, signo)  a RAISE frame: the client process gets a host signal
    copyinstr(p, maxlen)    one COPYINSTR round trip                  EFAULT, ENAMETOOLONG
    vec(v)              the iovec list decoded from the request       EFAULT, EINVAL

A round trip releases the virtual CPU while it waits and is interruptible: when the client goes
away its lwps are killed and a waiting copy fails with EINTR.
"""

from __future__ import annotations

from typing import Any, Protocol

from rumpkernel.client.sysproxy.messages import CopyData, Copyin, Copyinstr, Copyout
from rumpkernel.client.sysproxy.wire import COPY_CHUNK, PTR_BAD, PTR_WRITABLE
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.vm import PATH_MAX


class Slot(Protocol):
    """What a RemotePtr needs from the request it belongs to (see session.SpSlot)."""

    def roundtrip(self, msg: Copyin | Copyinstr) -> CopyData: ...

    def oneway(self, msg: Copyout) -> None: ...


class RemotePtr:
    __slots__ = ("data", "flags", "handle", "size", "slot")

    def __init__(self, handle: int, size: int, flags: int, data: bytes | None, slot: Slot) -> None:
        self.handle = handle
        self.size = size
        self.flags = flags
        self.data = data
        self.slot = slot

    def __repr__(self) -> str:
        return f"<RemotePtr #{self.handle} {self.size}B flags={self.flags:#x}>"


def _ptr(uaddr: Any, what: str) -> RemotePtr:
    if type(uaddr) is not RemotePtr or uaddr.flags & PTR_BAD:
        raise KernelError(Errno.EFAULT, f"{what}: not a client buffer")
    return uaddr


def _fetch(p: RemotePtr, msg: Copyin | Copyinstr) -> bytes:
    rep = p.slot.roundtrip(msg)
    if rep.errno:
        try:
            err = Errno(rep.errno)
        except ValueError:
            err = Errno.EFAULT
        raise KernelError(err, "client refused the copy")
    return rep.data


class RemoteVmspace:
    """One per remote process; ``session`` is the connection serving it (None between a
    PREFORK and the child's handshake)."""

    __slots__ = ("session",)
    remote = True

    def __init__(self, session: Any = None) -> None:
        self.session = session

    def raise_signal(self, l: Any, signo: int) -> None:
        """Deliver host signal ``signo`` to the client process (Table 3.6 ``raise``); ``l`` must
        be running a call of that client.  ESRCH otherwise."""
        if self.session is None:
            raise KernelError(Errno.ESRCH, "raise: process has no client")
        self.session.raise_signal(l, signo)

    def copyin(self, uaddr: Any, n: int, off: int = 0) -> bytes:
        p = _ptr(uaddr, "copyin")
        if off < 0 or n < 0 or off + n > p.size:
            raise KernelError(Errno.EFAULT, f"copyin: {n} bytes at {off} outside buffer")
        data = p.data
        if data is not None and off + n <= len(data):
            return data if off == 0 and n == len(data) else data[off : off + n]
        if n == 0:
            return b""
        parts = []
        pos, end = off, off + n
        while pos < end:
            m = min(COPY_CHUNK, end - pos)
            got = _fetch(p, Copyin(p.handle, pos, m))
            if len(got) != m:
                raise KernelError(Errno.EFAULT, f"copyin: client sent {len(got)} of {m} bytes")
            parts.append(got)
            pos += m
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def copyout(self, data: bytes, uaddr: Any, off: int = 0) -> None:
        p = _ptr(uaddr, "copyout")
        n = len(data)
        if not p.flags & PTR_WRITABLE or off < 0 or off + n > p.size:
            raise KernelError(Errno.EFAULT, f"copyout: {n} bytes at {off} do not fit")
        if n == 0:
            return
        mv = memoryview(data)
        for pos in range(0, n, COPY_CHUNK):
            p.slot.oneway(Copyout(p.handle, off + pos, bytes(mv[pos : pos + COPY_CHUNK])))

    def copyinstr(self, uaddr: Any, maxlen: int = PATH_MAX) -> bytes:
        p = _ptr(uaddr, "copyinstr")
        s = p.data
        if s is None:
            s = _fetch(p, Copyinstr(p.handle, maxlen))
            if len(s) > maxlen:
                raise KernelError(Errno.EFAULT, "copyinstr: client sent more than asked")
        nul = s.find(b"\0")
        if nul >= 0:
            s = s[:nul]
        if len(s) >= maxlen:
            raise KernelError(Errno.ENAMETOOLONG, f"string longer than {maxlen - 1} bytes")
        return s

    def vec(self, uvec: Any) -> list[tuple[Any, int]]:
        if type(uvec) is not list:
            raise KernelError(Errno.EFAULT, "bad iovec")
        if len(uvec) > 1024:
            raise KernelError(Errno.EINVAL, "too many iovecs")
        return uvec

