"""How the FUSE server reaches its kernel: a local kernel in this process, or a remote one.

The server speaks to the kernel only through system calls (the raw ``sys_*`` stubs of a ``Sys``),
so the same code serves a kernel it booted and a ``rump_server`` it connected to.  What differs
is who the calls run as:

* ``LocalKernel(k, root)``: a server process (pid ``pid``, clean descriptor table, umask 0,
  RLIMIT_NOFILE raised to 65,536) holds the handle of every served file.  Each worker thread
  binds an lwp in it and keeps its own ``credcache``, so every request runs with its caller's
  uid, gid and groups and the kernel makes every permission decision, as for a local program.
* ``RemoteKernel(conn, root)``: one sysproxy connection is one kernel process with root
  credentials; requests run as root, the host kernel checks permissions (``default_permissions``
  is forced on) and the server gives new files their caller as owner.

Interface (both):
    .pid / .root_fd / .remote
    .worker() -> Worker            call on the thread that will use it
    .close()                       close the server's descriptors (the served file system stays)
Worker:
    .sys                           the raw system call stubs
    .caller(uid, gid, groups)      a context running calls as that caller (``None``: as root)
    .close()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rumpkernel.kern.abi import O_CLOEXEC, O_DIRECTORY, O_PATH, RLIMIT_NOFILE
from rumpkernel.kern.proc import RFCFDG
from rumpkernel.kern.syscall.structs import RLIMIT

NOFILE = 65536


class Worker:
    """What every worker has: the system call stubs and a reply buffer it reuses (a reply is
    sent before the worker handles its next request)."""

    __slots__ = ("_rbuf", "sys")

    def __init__(self, sys: Any) -> None:
        self.sys = sys
        self._rbuf = bytearray(0)

    def reply_buffer(self, n: int) -> bytearray:
        if len(self._rbuf) < n:
            self._rbuf = bytearray(max(n, 65536 + 16))
        return self._rbuf


class LocalWorker(Worker):
    __slots__ = ("_creds", "_k", "_lwp")

    def __init__(self, k: Any, pid: int) -> None:
        super().__init__(k.sys)
        self._k = k
        self._lwp = k.lwproc.newlwp(pid)
        self._creds = k.lwproc.credcache()

    def caller(self, uid: int, gid: int, groups: tuple[int, ...]) -> Any:
        if uid == 0 and gid == 0:
            return contextlib.nullcontext()
        return self._creds.use(uid, gid, groups)

    def close(self) -> None:
        self._creds.close()
        if not self._k.dead:
            self._k.lwproc.release()


class LocalKernel:
    """A kernel in this process.  ``root`` is the kernel path served as the mount's root."""

    remote = False

    def __init__(self, k: Any, root: str) -> None:
        self.k = k
        prev = k.lwproc.curlwp()
        self.pid = k.lwproc.rfork(RFCFDG)
        self._lwp = k.lwproc.curlwp()   # kept (unbound) until close: it keeps the process
        try:
            s = k.sys
            s.umask(0)                  # the host applied the caller's umask already
            s.sys_setrlimit(RLIMIT_NOFILE, RLIMIT.pack(NOFILE, NOFILE))
            self.root_fd = s.sys_openat(-100, root.encode(), O_PATH | O_DIRECTORY | O_CLOEXEC, 0)
        except BaseException:
            k.lwproc.release()
            k.lwproc.switch(prev)
            raise
        k.lwproc.switch(prev)

    def worker(self) -> LocalWorker:
        return LocalWorker(self.k, self.pid)

    @contextlib.contextmanager
    def bound(self) -> Iterator[None]:
        """Run the body in the server process (setup and teardown calls; one thread at a
        time)."""
        prev = self.k.lwproc.curlwp()
        self.k.lwproc.switch(self._lwp)
        try:
            yield
        finally:
            self.k.lwproc.switch(prev)

    def close(self) -> None:
        """Free the server process's own lwp: once the workers have gone too, the process
        ends, its descriptors close and the vnodes they held are released."""
        lwp, self._lwp = self._lwp, None
        if lwp is None or self.k.dead:
            return
        with self.k.entered():
            self.k.lwproc.free(lwp)


class RemoteWorker(Worker):
    __slots__ = ()

    def caller(self, uid: int, gid: int, groups: tuple[int, ...]) -> Any:
        return contextlib.nullcontext()

    def close(self) -> None:
        return None


class RemoteKernel:
    """A kernel behind a sysproxy connection (``rumpkernel.connect(url)``)."""

    remote = True

    def __init__(self, conn: Any, root: str) -> None:
        self.conn = conn
        self.pid = conn.pid
        s = conn.sys
        s.umask(0)
        try:
            s.sys_setrlimit(RLIMIT_NOFILE, RLIMIT.pack(NOFILE, NOFILE))
        except OSError:
            pass                        # an older server: stay within its default
        self.root_fd = s.sys_openat(-100, root.encode(), O_PATH | O_DIRECTORY | O_CLOEXEC, 0)

    def worker(self) -> RemoteWorker:
        return RemoteWorker(self.conn.sys)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
