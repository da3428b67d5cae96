"""Sockets as open files: read/write/poll/fstat/close/ioctl on a socket descriptor.

Interface:
    SocketFile(k, so, nonblock)     File subclass; ``so`` the Socket
    sock_of(l, fd) -> SocketFile    ENOTSOCK for other files (EBADF for no file)
Rules: O_NONBLOCK lives in the file's flags (fcntl F_SETFL and FIONBIO change it); the stack
lock is taken here, around each socket-layer call.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import FIONBIO, FIONREAD, O_NONBLOCK, O_RDWR, S_IFSOCK
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.file import File
from rumpkernel.net.socket import PR_ATOMIC, Socket, opt_int, soclose, sopoll, soreceive, sosend


class SocketFile(File):
    __slots__ = ("so",)
    kind = "socket"

    def __init__(self, k: Any, so: Socket, nonblock: bool) -> None:
        super().__init__(k, O_RDWR | (O_NONBLOCK if nonblock else 0))
        self.so = so

    @property
    def nonblock(self) -> bool:
        return bool(self.flags & O_NONBLOCK)

    def read(self, l: Any, n: int, offset: int | None) -> bytes:
        if offset is not None:
            raise KernelError(Errno.ESPIPE, "sockets have no offsets")
        so = self.so
        with so.ns.lock:
            data, _addr, control, _f, _n = soreceive(so, n, 0, self.nonblock)
            if control:
                so.ns.dispose_control(control)
        return data

    def write(self, l: Any, data: bytes, offset: int | None) -> int:
        if offset is not None:
            raise KernelError(Errno.ESPIPE, "sockets have no offsets")
        so = self.so
        with so.ns.lock:
            return sosend(so, data, None, None, 0, self.nonblock)

    @property
    def selinfo(self) -> Any:
        return self.so.sel

    def poll(self, l: Any, events: int) -> int:
        so = self.so
        with so.ns.lock:
            return sopoll(so, events)

    def stat(self, l: Any) -> tuple[int, ...]:
        so = self.so
        cred = l.proc.cred
        now = self.k.time_ns()
        return (0, so.id, S_IFSOCK | 0o777, 1, cred.euid, cred.egid, 0, so.rcv.cc, now, now,
                now, now, so.snd.hiwat or 4096, 0, 0, 0)

    def close(self, l: Any) -> None:
        so = self.so
        with so.ns.lock:
            soclose(so)

    def ioctl(self, l: Any, cmd: int, data: bytes) -> bytes | None:
        so = self.so
        if cmd == FIONBIO:
            if opt_int(data):
                self.flags |= O_NONBLOCK
            else:
                self.flags &= ~O_NONBLOCK
            return None
        if cmd == FIONREAD:
            with so.ns.lock:
                if so.proto.flags & PR_ATOMIC:
                    n = len(so.rcv.q[0].data) if so.rcv.q else 0
                else:
                    n = so.rcv.cc
            return n.to_bytes(4, "little", signed=True)
        if (cmd >> 8) & 0xFF in (ord("i"), ord("r")):
            from rumpkernel.net.ifconfig import ifioctl

            return ifioctl(so.ns, l, cmd, data)
        with so.ns.lock:
            return so.proto.control(so, cmd, data, l)


def sock_of(l: Any, fd: int) -> SocketFile:
    fp = l.proc.fd.get(fd)
    if not isinstance(fp, SocketFile):
        raise KernelError(Errno.ENOTSOCK, f"fd {fd} is not a socket")
    return fp
