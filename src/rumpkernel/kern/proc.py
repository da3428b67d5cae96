"""Processes and lightweight processes (lwps): the soft context of a thread in the kernel.

A host thread supplies the hard context (it runs the code); the kernel supplies the soft one: the
process (pid, credentials, file descriptors, cwd, umask) and the lwp.  ``proc0`` (pid 0) owns
kernel threads; ``proc1`` (pid 1) is where implicit threads run.

Interface:
    Proc, Lwp               the records
    ProcTable(k)            pid allocation and lookup; ``fork(parent, fdmode)``; ``exit(p)``
    Lwproc(k)               rump_lwproc(3): rfork(flags) / newlwp(pid) / switch(l) / release() /
                            curlwp() / curproc() / credcache()
    CredContexts            per-request credentials: ``with creds.use(uid, gid, groups): ...``
    RFFDG / RFCFDG / RFSHARE   fd table is copied / clean / shared with the parent

Implicit threads: a host thread that enters without a bound lwp gets one attached to proc1; it is
cached in the thread's lwp slot (marked ``implicit``) and counted as live only while in the
kernel.  Binding a real lwp with ``switch`` replaces it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.cred import Cred
from rumpkernel.kern.errno import Errno, KernelError

if TYPE_CHECKING:
    from rumpkernel.kern.file import FdTable
    from rumpkernel.kern.kernel import Kernel

RFSHARE = 0        # share the parent's descriptor table
RFFDG = 1 << 2     # copy it (NetBSD value)
RFCFDG = 1 << 12   # start with a clean one (NetBSD value)

PID_MAX = 30000


class Proc:
    __slots__ = ("cred", "cwd", "exiting", "fd", "lwps", "name", "parent", "pid", "root",
                 "umask", "vm", "children", "emul")

    def __init__(self, pid: int, parent: Proc | None, cred: Cred, fd: FdTable, vm: Any) -> None:
        self.pid = pid
        self.parent = parent
        self.cred = cred
        self.fd = fd
        self.vm = vm
        self.cwd: Any = None
        self.root: Any = None
        self.umask = 0o022
        self.lwps: set[Lwp] = set()
        self.children: set[Proc] = set()
        self.exiting = False
        self.name = "rump"
        self.emul: Any = None

    def __repr__(self) -> str:
        return f"<Proc {self.pid} uid={self.cred.uid}>"


class Lwp:
    __slots__ = ("cpu", "implicit", "inkernel", "kernel", "killed", "lid", "name", "pollwaiter",
                 "proc", "wchan", "__weakref__")

    def __init__(self, k: Kernel, proc: Proc, lid: int, *, implicit: bool = False,
                 name: str = "") -> None:
        self.kernel = k
        self.proc = proc
        self.lid = lid
        self.implicit = implicit
        self.cpu: Any = None
        self.inkernel = 0
        self.killed = False
        self.wchan: Any = None
        self.name = name
        self.pollwaiter: Any = None

    def kill(self) -> None:
        """Make the lwp leave any interruptible wait with EINTR (see kern.sync)."""
        self.killed = True
        wchan = self.wchan
        if wchan is not None:
            cv, mtx = wchan
            mtx.enter()
            cv.broadcast()
            mtx.exit()

    def __repr__(self) -> str:
        return f"<Lwp {self.proc.pid}.{self.lid}{' implicit' if self.implicit else ''}>"


class ProcTable:
    """All processes of one kernel."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.procs: dict[int, Proc] = {}
        self._next_pid = 2
        self._next_lid = 1
        self.nlwp = 0  # lwps that exist and count as live (bound, kernel threads, in-kernel)

    def new_lid(self) -> int:
        self._next_lid += 1
        return self._next_lid

    def alloc_pid(self) -> int:
        for _ in range(PID_MAX):
            pid = self._next_pid
            self._next_pid = pid + 1 if pid + 1 < PID_MAX else 2
            if pid not in self.procs:
                return pid
        raise KernelError(Errno.EAGAIN, "out of process ids")

    def create(self, pid: int, parent: Proc | None, cred: Cred, fd: FdTable) -> Proc:
        p = Proc(pid, parent, cred, fd, self.k.local_vm)
        if parent is not None:
            parent.children.add(p)
            p.umask = parent.umask
            p.emul = parent.emul
        self.procs[pid] = p
        return p

    def fork(self, parent: Proc, fdmode: int) -> Proc:
        if fdmode == RFSHARE:
            fd = parent.fd.share()
        elif fdmode == RFFDG:
            fd = parent.fd.copy()
        elif fdmode == RFCFDG:
            fd = self.k.new_fdtable()
        else:
            raise KernelError(Errno.EINVAL, f"rfork flags 0x{fdmode:x}")
        p = self.create(self.alloc_pid(), parent, parent.cred, fd)
        self.k.hooks.run("proc_fork", parent, p)
        return p

    def exit(self, p: Proc) -> None:
        """Tear a process down: close its descriptors, drop its cwd, reparent its children."""
        if p.pid <= 1 or p.exiting:
            return
        p.exiting = True
        for l in list(p.lwps):
            l.kill()
        p.fd.release(self.k)
        self.k.hooks.run("proc_exit", p)
        init = self.procs[1]
        for c in p.children:
            c.parent = init
            init.children.add(c)
        p.children.clear()
        if p.parent is not None:
            p.parent.children.discard(p)
        self.procs.pop(p.pid, None)

    def lookup(self, pid: int) -> Proc:
        p = self.procs.get(pid)
        if p is None or p.exiting:
            raise KernelError(Errno.ESRCH, f"no process {pid}")
        return p


class Lwproc:
    """rump_lwproc(3) for local clients: process and thread contexts on host threads."""

    def __init__(self, k: Kernel) -> None:
        self.k = k

    def _bound(self) -> Lwp | None:
        l = self.k.host.curlwp_get()
        return None if l is None or l.implicit else l

    def curlwp(self) -> Lwp | None:
        """The lwp bound to this host thread, or None for an implicit context."""
        return self._bound()

    def curproc(self) -> Proc:
        l = self._bound()
        return l.proc if l is not None else self.k.proc1

    def newlwp_in(self, p: Proc, name: str = "") -> Lwp:
        l = Lwp(self.k, p, self.k.procs.new_lid(), name=name)
        p.lwps.add(l)
        self.k.procs.nlwp += 1
        return l

    def rfork(self, flags: int = RFFDG) -> int:
        """Create a child of the current process (descriptor table per ``flags``) and bind a new
        lwp in it to this host thread.  Returns the child's pid."""
        with self.k.entered():
            parent = self.curproc()
            child = self.k.procs.fork(parent, flags)
            l = self.newlwp_in(child)
        self.switch(l)
        return child.pid

    def newlwp(self, pid: int) -> Lwp:
        """Create a new lwp in process ``pid`` and bind it to this host thread."""
        with self.k.entered():
            l = self.newlwp_in(self.k.procs.lookup(pid))
        self.switch(l)
        return l

    def switch(self, l: Lwp | None) -> None:
        """Bind ``l`` to this host thread (None: unbind; calls become implicit again)."""
        if l is not None and l.kernel is not self.k:
            raise KernelError(Errno.EINVAL, "lwp belongs to another kernel")
        self.k.host.curlwp_set(l)

    def release(self) -> None:
        """Release the lwp bound to this host thread; the last lwp of a process ends it."""
        l = self._bound()
        if l is None:
            raise KernelError(Errno.EINVAL, "no lwp bound to this thread")
        self.k.host.curlwp_set(None)
        with self.k.entered():
            self.free(l)

    def credcache(self, limit: int = 256) -> CredContexts:
        """Contexts that run calls with a given uid/gid/groups and this thread's process's
        descriptor table (see ``CredContexts``)."""
        return CredContexts(self.k, self.curproc(), limit)

    def free(self, l: Lwp) -> None:
        if l.pollwaiter is not None:
            l.pollwaiter.release()
        p = l.proc
        if l in p.lwps:
            p.lwps.discard(l)
            self.k.procs.nlwp -= 1
        if not p.lwps and p.pid > 1:
            self.k.procs.exit(p)


class CredContexts:
    """Run single system calls with a given credential: one process per credential, all sharing
    the base process's descriptor table (and starting from its cwd and root), with a pool of
    lwps each, created on first use and cached.  For servers that act for many callers -- the
    FUSE server runs every request with its caller's uid, gid and groups.

        creds = k.lwproc.credcache()
        with creds.use(1000, 1000, (1000, 24)):
            k.sys.open(...)          # permission checks see uid 1000
        creds.close()                # frees the processes (also done by halt)

    At most ``limit`` credentials are cached; the least recently used idle one is released
    when a new one would exceed it.
    """

    def __init__(self, k: Kernel, base: Proc, limit: int = 256) -> None:
        self.k = k
        self.base = base
        self.limit = limit
        self.procs: dict[tuple[int, int, tuple[int, ...]], Proc] = {}
        self.idle: dict[tuple[int, int, tuple[int, ...]], list[Lwp]] = {}
        self.busy: dict[tuple[int, int, tuple[int, ...]], int] = {}
        self.closed = False

    def _proc(self, key: tuple[int, int, tuple[int, ...]]) -> Proc:
        p = self.procs.pop(key, None)
        if p is None or p.exiting:
            if len(self.procs) >= self.limit:
                self._evict()
            with self.k.entered():
                p = self.k.procs.fork(self.base, RFSHARE)
            uid, gid, groups = key
            p.cred = Cred(uid, gid, groups)
            p.name = f"{self.base.name}[{uid}:{gid}]"
            self.idle[key] = []
        self.procs[key] = p    # most recently used last
        return p

    def _evict(self) -> None:
        for key in list(self.procs):
            if not self.busy.get(key):
                self._release(key)
                return

    def _release(self, key: tuple[int, int, tuple[int, ...]]) -> None:
        self.procs.pop(key, None)
        with self.k.entered():
            for l in self.idle.pop(key, []):
                self.k.lwproc.free(l)

    @contextlib.contextmanager
    def use(self, uid: int, gid: int, groups: Iterable[int] = ()) -> Iterator[Lwp]:
        if self.closed:
            raise KernelError(Errno.EINVAL, "credential cache is closed")
        key = (uid, gid, tuple(groups))
        p = self._proc(key)
        pool = self.idle[key]
        if pool:
            l = pool.pop()
        else:
            with self.k.entered():
                l = self.k.lwproc.newlwp_in(p)
        self.busy[key] = self.busy.get(key, 0) + 1
        host = self.k.host
        prev = host.curlwp_get()
        host.curlwp_set(l)
        try:
            yield l
        finally:
            host.curlwp_set(prev)
            self.busy[key] -= 1
            if self.closed or p.exiting:
                with self.k.entered():
                    self.k.lwproc.free(l)
            else:
                pool.append(l)

    def close(self) -> None:
        """Free every cached process (calls in progress finish first on their own)."""
        self.closed = True
        if self.k.dead:
            return
        for key in list(self.procs):
            self._release(key)
