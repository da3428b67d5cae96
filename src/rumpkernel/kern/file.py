"""Open files and per-process descriptor tables.

Interface:
    File           base class of every open file (vnode files, pipes, devices, sockets later).
                   Subclasses override ``read(l, n, offset)``, ``write(l, data, offset)``,
                   ``stat(l)`` (a tuple in ``structs.STAT`` field order), ``poll(l, events)``,
                   ``seek(l, offset, whence)``, ``close(l)``.  ``offset=None`` means "use and
                   advance the file's own offset".
    FdTable        ``get(fd)``, ``alloc(fp, minfd, cloexec)``, ``install(fd, fp, cloexec)``,
                   ``close(l, fd)``, ``share()``, ``copy()``, ``release(k)``.

Rules: a File is reference counted (descriptors and duplicates); the last ``drop`` closes it.
Descriptor numbers are the lowest free; at most ``MAXFD`` per table (EMFILE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import O_ACCMODE, O_RDONLY, O_RDWR, O_WRONLY, POLLIN, POLLOUT, POLLRDNORM
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.sync import KMutex

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel

MAXFD = 1024


class File:
    __slots__ = ("flags", "k", "offset", "refcnt")
    kind = "file"

    def __init__(self, k: Kernel, flags: int) -> None:
        self.k = k
        self.flags = flags
        self.offset = 0
        self.refcnt = 1
        k.nfiles += 1

    @property
    def readable(self) -> bool:
        return self.flags & O_ACCMODE in (O_RDONLY, O_RDWR)

    @property
    def writable(self) -> bool:
        return self.flags & O_ACCMODE in (O_WRONLY, O_RDWR)

    def read(self, l: Any, n: int, offset: int | None) -> bytes:
        raise KernelError(Errno.EINVAL)

    def write(self, l: Any, data: bytes, offset: int | None) -> int:
        raise KernelError(Errno.EINVAL)

    def stat(self, l: Any) -> tuple[int, ...]:
        raise KernelError(Errno.EOPNOTSUPP)

    def poll(self, l: Any, events: int) -> int:
        return events & (POLLIN | POLLOUT | POLLRDNORM)

    def seek(self, l: Any, offset: int, whence: int) -> int:
        raise KernelError(Errno.ESPIPE)

    def close(self, l: Any) -> None:
        return None

    def hold(self) -> File:
        self.refcnt += 1
        return self

    def drop(self, l: Any) -> None:
        self.refcnt -= 1
        if self.refcnt == 0:
            self.k.nfiles -= 1
            self.close(l)


class FdTable:
    __slots__ = ("cloexec", "files", "k", "mtx", "refs")

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.files: list[File | None] = []
        self.cloexec: list[bool] = []
        self.refs = 1
        self.mtx = KMutex(k)

    def get(self, fd: int) -> File:
        try:
            fp = self.files[fd] if fd >= 0 else None
        except (IndexError, TypeError):
            fp = None
        if fp is None:
            raise KernelError(Errno.EBADF, f"fd {fd}")
        return fp

    def alloc(self, fp: File, minfd: int = 0, cloexec: bool = False) -> int:
        with self.mtx:
            files = self.files
            for fd in range(minfd, len(files)):
                if files[fd] is None:
                    files[fd] = fp
                    self.cloexec[fd] = cloexec
                    return fd
            fd = max(minfd, len(files))
            if fd >= MAXFD:
                raise KernelError(Errno.EMFILE, "too many open files")
            self._grow(fd)
            files[fd] = fp
            self.cloexec[fd] = cloexec
            return fd

    def _grow(self, fd: int) -> None:
        while len(self.files) <= fd:
            self.files.append(None)
            self.cloexec.append(False)

    def install(self, l: Any, fd: int, fp: File, cloexec: bool) -> None:
        """Put ``fp`` at ``fd`` (dup2), closing what was there."""
        if not 0 <= fd < MAXFD:
            raise KernelError(Errno.EBADF, f"fd {fd}")
        with self.mtx:
            self._grow(fd)
            old = self.files[fd]
            self.files[fd] = fp
            self.cloexec[fd] = cloexec
        if old is not None:
            old.drop(l)

    def close(self, l: Any, fd: int) -> None:
        with self.mtx:
            fp = self.get(fd)
            self.files[fd] = None
        fp.drop(l)

    def count(self) -> int:
        return sum(1 for f in self.files if f is not None)

    def share(self) -> FdTable:
        self.refs += 1
        return self

    def copy(self) -> FdTable:
        new = FdTable(self.k)
        with self.mtx:
            new.files = [f.hold() if f is not None else None for f in self.files]
            new.cloexec = list(self.cloexec)
        return new

    def release(self, k: Kernel, l: Any = None) -> None:
        self.refs -= 1
        if self.refs > 0:
            return
        with self.mtx:
            files, self.files, self.cloexec = self.files, [], []
        for fp in files:
            if fp is not None:
                fp.drop(l)
