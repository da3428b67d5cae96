"""Pipes (and the buffer behind FIFOs).

Interface:  Pipe(k) -- the shared buffer; PipeFile(k, pipe, flags, reader) -- one end.
Semantics: reads block while the pipe is empty and a writer exists (EOF when none); writes block
while it is full, EPIPE when no reader; O_NONBLOCK gives EAGAIN; poll reports POLLIN/POLLOUT/
POLLHUP.  Each pipe's buffer capacity counts against kernel memory (tag "pipe").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import (
    O_NONBLOCK,
    O_RDONLY,
    O_WRONLY,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLRDNORM,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.file import File
from rumpkernel.kern.select import SelInfo
from rumpkernel.kern.sync import KCondVar, KMutex

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel

PIPE_CAPACITY = 65536
S_IFIFO = 0o010000


class Pipe:
    __slots__ = ("buf", "cv", "ino", "k", "mtx", "readers", "sel", "writers")

    def __init__(self, k: Kernel, ino: int = 0) -> None:
        k.kmem.alloc(PIPE_CAPACITY, "pipe")
        self.k = k
        self.buf = bytearray()
        self.mtx = KMutex(k)
        self.cv = KCondVar(k)
        self.readers = 0
        self.writers = 0
        self.ino = ino
        self.sel = SelInfo()

    def free(self) -> None:
        """The last end closed: give the buffer back (a FIFO's data goes with it)."""
        if self.mtx is not None:
            self.k.kmem.free(PIPE_CAPACITY, "pipe")
            self.buf = bytearray()
            self.mtx = None  # type: ignore[assignment]

    def wait_for_peer(self, reader: bool, nonblock: bool) -> None:
        """FIFO open semantics: a reader waits for a writer and vice versa (not with
        O_NONBLOCK: a non-blocking writer with no reader gets ENXIO)."""
        with self.mtx:
            self.cv.broadcast()
            if nonblock:
                if not reader and self.readers == 0:
                    raise KernelError(Errno.ENXIO, "fifo has no reader")
                return
            while (self.writers if reader else self.readers) == 0:
                self.cv.wait(self.mtx)


class PipeFile(File):
    __slots__ = ("pipe", "reader")
    kind = "pipe"

    def __init__(self, k: Kernel, pipe: Pipe, flags: int, reader: bool) -> None:
        super().__init__(k, (O_RDONLY if reader else O_WRONLY) | (flags & O_NONBLOCK))
        self.pipe = pipe
        self.reader = reader
        with pipe.mtx:
            if reader:
                pipe.readers += 1
            else:
                pipe.writers += 1

    def read(self, l: Any, n: int, offset: int | None) -> bytes:
        if offset is not None:
            raise KernelError(Errno.ESPIPE)
        p = self.pipe
        with p.mtx:
            while not p.buf:
                if p.writers == 0 or n == 0:
                    return b""
                if self.flags & O_NONBLOCK:
                    raise KernelError(Errno.EAGAIN)
                p.cv.wait(p.mtx)
            data = bytes(p.buf[:n])
            del p.buf[:n]
            p.cv.broadcast()
        p.sel.notify()
        return data

    def write(self, l: Any, data: bytes, offset: int | None) -> int:
        if offset is not None:
            raise KernelError(Errno.ESPIPE)
        p = self.pipe
        done = 0
        with p.mtx:
            while done < len(data):
                if p.readers == 0:
                    if done:
                        break
                    raise KernelError(Errno.EPIPE)
                room = PIPE_CAPACITY - len(p.buf)
                if room <= 0:
                    if self.flags & O_NONBLOCK:
                        if done:
                            break
                        raise KernelError(Errno.EAGAIN)
                    p.cv.wait(p.mtx)
                    continue
                chunk = data[done : done + room]
                p.buf += chunk
                done += len(chunk)
                p.cv.broadcast()
                self.pipe.sel.notify()
        return done

    @property
    def selinfo(self) -> SelInfo:
        return self.pipe.sel

    def poll(self, l: Any, events: int) -> int:
        p = self.pipe
        rev = 0
        if self.reader:
            if p.buf:
                rev |= events & (POLLIN | POLLRDNORM)
            if p.writers == 0:
                rev |= POLLHUP
        else:
            if p.readers == 0:
                rev |= POLLERR
            elif len(p.buf) < PIPE_CAPACITY:
                rev |= events & POLLOUT
        return rev

    def stat(self, l: Any) -> tuple[int, ...]:
        cred = l.proc.cred
        now = self.k.time_ns()
        return (0, self.pipe.ino, S_IFIFO | 0o600, 1, cred.euid, cred.egid, 0,
                len(self.pipe.buf), now, now, now, now, PIPE_CAPACITY, 0, 0, 0)

    def close(self, l: Any) -> None:
        p = self.pipe
        with p.mtx:
            if self.reader:
                p.readers -= 1
            else:
                p.writers -= 1
            p.cv.broadcast()
            last = p.readers == 0 and p.writers == 0
        self.pipe.sel.notify()
        if last:
            p.free()
