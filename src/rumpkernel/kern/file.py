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
Descriptor numbers are the lowest free; at most ``limit`` per table (EMFILE), the process's
soft RLIMIT_NOFILE: ``NOFILE_DEFAULT`` (4,096), raisable with setrlimit up to ``NOFILE_MAX``.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import O_ACCMODE, O_RDONLY, O_RDWR, O_WRONLY
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.sync import KMutex

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel

NOFILE_DEFAULT = 4096    # soft RLIMIT_NOFILE of a new process
NOFILE_MAX = 65536       # hard limit: the most any process may raise it to


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

    #: the object's poll wait channel (kern.select.SelInfo); None: readiness never changes
    selinfo: Any = None

    def poll(self, l: Any, events: int) -> int:
        """Ready events among ``events``.  The base class knows nothing, so claims nothing;
        files that are always ready (regular files, /dev/null) say so in their own poll."""
        return 0

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
    """A descriptor table.  ``limit`` is the soft RLIMIT_NOFILE of the processes using it
    (``NOFILE_DEFAULT``, raisable to ``NOFILE_MAX``).  The lowest free descriptor comes off a
    min-heap of freed slots (entries may be stale: a slot refilled by ``install`` is skipped), so
    allocation costs O(log n) however many descriptors are open.  ``gen`` changes whenever a
    descriptor changes what it refers to (poll's cached registrations check it)."""

    __slots__ = ("cloexec", "files", "free", "gen", "hard", "k", "limit", "mtx", "nopen",
                 "refs")

    def __init__(self, k: Kernel, limit: int = NOFILE_DEFAULT, hard: int = NOFILE_MAX) -> None:
        self.k = k
        self.files: list[File | None] = []
        self.cloexec: list[bool] = []
        self.free: list[int] = []      # heap of indices < len(files) that were freed
        self.limit = limit
        self.hard = hard
        self.nopen = 0
        self.gen = 0
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

    def _lowest_free(self, minfd: int) -> int:
        files, free = self.files, self.free
        if minfd == 0:
            while free:
                fd = heapq.heappop(free)
                if fd < len(files) and files[fd] is None:
                    return fd
            return len(files)
        for fd in range(minfd, len(files)):      # F_DUPFD with a floor: rare, scan
            if files[fd] is None:
                return fd
        return max(minfd, len(files))

    def alloc(self, fp: File, minfd: int = 0, cloexec: bool = False) -> int:
        with self.mtx:
            if self.nopen >= self.limit or minfd >= self.limit:
                raise KernelError(Errno.EMFILE, f"too many open files (limit {self.limit})")
            fd = self._lowest_free(minfd)
            if fd >= self.limit:
                raise KernelError(Errno.EMFILE, f"too many open files (limit {self.limit})")
            self._grow(fd)
            self.files[fd] = fp
            self.cloexec[fd] = cloexec
            self.nopen += 1
            self.gen += 1
            return fd

    def _grow(self, fd: int) -> None:
        n = len(self.files)
        if fd >= n:
            self.files.extend([None] * (fd + 1 - n))
            self.cloexec.extend([False] * (fd + 1 - n))
            for i in range(n, fd):               # the gap below fd is free
                heapq.heappush(self.free, i)

    def install(self, l: Any, fd: int, fp: File, cloexec: bool) -> None:
        """Put ``fp`` at ``fd`` (dup2), closing what was there."""
        if not 0 <= fd < self.limit:
            raise KernelError(Errno.EBADF, f"fd {fd} (limit {self.limit})")
        with self.mtx:
            self._grow(fd)
            old = self.files[fd]
            self.files[fd] = fp
            self.cloexec[fd] = cloexec
            self.gen += 1
            if old is None:
                self.nopen += 1
        if old is not None:
            old.drop(l)

    def close(self, l: Any, fd: int) -> None:
        with self.mtx:
            fp = self.get(fd)
            self.files[fd] = None
            self.nopen -= 1
            self.gen += 1
            heapq.heappush(self.free, fd)
        fp.drop(l)

    def count(self) -> int:
        return self.nopen

    def share(self) -> FdTable:
        self.refs += 1
        return self

    def copy(self) -> FdTable:
        new = FdTable(self.k, self.limit, self.hard)
        with self.mtx:
            new.files = [f.hold() if f is not None else None for f in self.files]
            new.cloexec = list(self.cloexec)
            new.free = [i for i, f in enumerate(new.files) if f is None]
            new.nopen = self.nopen
        return new

    def set_limit(self, soft: int, hard: int, privileged: bool) -> None:
        """Change the limits: EINVAL unless 1 <= soft <= hard <= NOFILE_MAX, EPERM to raise
        the hard limit without privilege.  Descriptors open above a lowered limit stay open,
        as on Unix."""
        if not 1 <= soft <= hard <= NOFILE_MAX:
            raise KernelError(Errno.EINVAL, f"descriptor limits {soft}/{hard}: need "
                              f"1 <= soft <= hard <= {NOFILE_MAX}")
        if hard > self.hard and not privileged:
            raise KernelError(Errno.EPERM, "raising the hard descriptor limit needs root")
        self.limit, self.hard = soft, hard

    def release(self, k: Kernel, l: Any = None) -> None:
        self.refs -= 1
        if self.refs > 0:
            return
        with self.mtx:
            files, self.files, self.cloexec, self.free = self.files, [], [], []
            self.nopen = 0
            self.gen += 1
        for fp in files:
            if fp is not None:
                fp.drop(l)
