"""The Kernel object: one rump kernel instance, passed explicitly everywhere (DESIGN rule 2).

Interface:
    Kernel(host, ncpu=1, memlimit=None, hostname=None)   use ``rumpkernel.boot`` instead
    k.syscall(num, args)        system call entry for local clients (raw arguments)
    k.entered()                 context manager: run kernel code from a client thread
    k.unscheduled()             context manager: give the vCPU up around a blocking host call
    k.hostcall(fn, *args)       run a blocking hypercall: vCPU given up, HostError -> KernelError
    k.kthread_create(fn, name) / k.kthread_join(t)
    k.halt(sync=True)           stop kernel threads, flush and unmount, free everything
    k.statistics()              lwps, processes, open files, vnodes, memory ...
    k.panic(msg, exc)           stop this kernel, dump every kernel thread's stack
    k.lwproc                    rump_lwproc(3)
    k.time_ns() / k.monotonic_ns() / k.log(msg) / k.random_bytes(n)

Faction slots: the kernel declares what its factions and clients add; a faction's boot component
fills its slot, an absent faction leaves it None (and its system calls answer ENOSYS):
    k.vfs     the VFS faction (mounts, vnodes, namei; ``k.vfs.api`` is its kernel-object API)
    k.dev     the dev faction's device drivers, by name (bypassing /dev)
    k.net     the net faction (interfaces, routes, protocols)
    k.sys     the local client's libc-shaped facade (``client/local.py``)
    k.files   the client file API (``k.open``, ``k.path``, ``k.listdir`` ... delegate to it)
    k.errtrans  the client layer's KernelError -> OSError translation for the kernel-object API
    k.lazy    attributes a client adds on first use (``k.socket``: the stdlib-shaped socket module)
``k.etfs_register / etfs_remove / mount_image / newfs`` are the VFS faction's API offered on the
kernel object: EOPNOTSUPP without the faction; failures arrive as the client's OSError.

Entry: a client's call runs on its own host thread.  It finds (or makes) the thread's lwp, takes a
vCPU, runs the handler, gives the vCPU back.  ``KernelError`` passes to the caller; any other
exception is a kernel bug: the kernel panics, the caller gets ``KernelPanic``, and the host
process and every other kernel keep running.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from rumpkernel.hypercall.interface import VERSION, HostError, Hypercalls
from rumpkernel.kern.callout import Callouts, Softints
from rumpkernel.kern.cred import ROOT
from rumpkernel.kern.errno import Errno, KernelError, KernelPanic, from_host
from rumpkernel.kern.file import FdTable
from rumpkernel.kern.kmem import KMem
from rumpkernel.kern.proc import Lwp, Lwproc, ProcTable
from rumpkernel.kern.sched import Scheduler
from rumpkernel.kern.syscall.sysent import SYSENT
from rumpkernel.kern.sysctl import INT, STR, Sysctl
from rumpkernel.kern.vm import LocalVmspace

OSTYPE = "RumpKernel"
OSRELEASE = "0.1.0"


class Hooks:
    """Named lists of callbacks factions attach to (proc_fork, proc_exit, halt, ...)."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[Callable[..., None]]] = {}

    def add(self, name: str, fn: Callable[..., None]) -> None:
        self._hooks.setdefault(name, []).append(fn)

    def run(self, name: str, *args: Any) -> None:
        for fn in self._hooks.get(name, ()):
            fn(*args)

    def run_reversed(self, name: str, *args: Any) -> None:
        for fn in reversed(self._hooks.get(name, ())):
            fn(*args)


def _nosys(name: str) -> Callable[..., Any]:
    def nosys(l: Lwp, *args: Any) -> Any:
        raise KernelError(Errno.ENOSYS, f"{name}: faction not in this kernel")
    nosys.__name__ = f"nosys_{name}"
    return nosys


def _badsys(l: Lwp, *args: Any) -> Any:
    raise KernelError(Errno.ENOSYS, "no such system call")


class Kernel:
    def __init__(self, host: Hypercalls, *, ncpu: int = 1, memlimit: int | None = None,
                 hostname: str | None = None) -> None:
        if getattr(host, "version", None) != VERSION:
            raise KernelError(Errno.EINVAL, f"hypercall version {host.version} != {VERSION}")
        if getattr(host, "_kernel", None) is not None:
            raise KernelError(Errno.EBUSY, "this host object already runs a kernel")
        host._kernel = self  # type: ignore[attr-defined]
        self.host = host
        self._curlwp_get = host.curlwp_get
        self._hooks_needed = host.needs_sched_hooks
        self.dead = False
        self.panicked: KernelPanic | None = None
        self.halted = False
        self.ncpu = ncpu
        self.sched = Scheduler(host, ncpu)
        self.kmem = KMem(memlimit)
        self.hooks = Hooks()
        self.components: list[str] = []
        self.factions: set[str] = {"kern"}
        self.nfiles = 0
        self.msgbuf: list[str] = []
        self.verbose = False
        self.boot_wall_ns = host.clock_wall_ns()
        self.boot_mono_ns = host.clock_monotonic_ns()
        self.hostname = hostname or self._default_hostname()
        self.local_vm = LocalVmspace()
        self.sysctl = Sysctl()
        self.procs = ProcTable(self)
        self.lwproc = Lwproc(self)
        self.proc0 = self.procs.create(0, None, ROOT, FdTable(self))
        self.proc1 = self.procs.create(1, self.proc0, ROOT, FdTable(self))
        self.proc0.name, self.proc1.name = "kernel", "init"
        self.callouts = Callouts(self)
        self.softints = Softints(self)
        self.kthreads: dict[Any, Lwp] = {}
        self.implicit_lwps: weakref.WeakSet[Lwp] = weakref.WeakSet()
        self._sysent: dict[int, Callable[..., Any]] = {}
        # faction slots (see the module docstring)
        self.vfs: Any = None
        self.dev: dict[str, Any] | None = None
        self.net: Any = None
        self.sys: Any = None
        self.files: Any = None
        self.lazy: dict[str, Callable[[], Any]] = {}     # client attributes made on first use
        self.errtrans: Callable[[KernelError], Exception] = lambda e: e
        self.reboot_requested: int | None = None
        self._init_sysctl()

    def _default_hostname(self) -> str:
        n = int.from_bytes(self.host.random_bytes(2), "little") % 100000
        return f"rump-{n:05d}.localhost.rumpdomain"

    def _init_sysctl(self) -> None:
        sc = self.sysctl
        sc.add("kern.hostname", STR, getter=lambda: self.hostname,
               setter=lambda v: setattr(self, "hostname", v), writable=True, desc="host name")
        sc.add("kern.ostype", STR, OSTYPE)
        sc.add("kern.osrelease", STR, OSRELEASE)
        sc.add("kern.version", STR, f"{OSTYPE} {OSRELEASE} ({self.host.name} host)")
        sc.add("kern.boottime", INT, self.boot_wall_ns // 10**9)
        sc.add("kern.maxfiles", INT, 1024)
        sc.add("hw.ncpu", INT, self.ncpu)
        sc.add("hw.physmem", INT, getter=lambda: self.kmem.limit or 0)
        sc.add("hw.usermem", INT, getter=lambda: self.kmem.in_use)

    def init_stat_sysctl(self) -> None:
        """``kern.stat.<name>`` nodes for the integer counters of ``statistics()`` (so remote
        clients can see them); called once the components are in."""
        for key, value in self.statistics().items():
            if type(value) is int and f"kern.stat.{key}" not in self.sysctl.nodes:
                self.sysctl.add(f"kern.stat.{key}", INT,
                                getter=lambda key=key: self.statistics().get(key, 0))
        self.sysctl.add("kern.stat.memory_in_use", INT, getter=lambda: self.kmem.in_use)

    # ---- system call table ------------------------------------------------------------------
    def install_syscalls(self, faction: str, module: Any) -> None:
        """Point the dispatch entries of ``faction`` at the handlers in ``module``."""
        for num, (_name, fac, handler, _nargs) in SYSENT.items():
            if fac == faction:
                self._sysent[num] = getattr(module, handler)

    def finish_sysent(self) -> None:
        for num, (name, fac, _handler, _nargs) in SYSENT.items():
            if fac not in self.factions:
                self._sysent[num] = _nosys(name)

    def install_syscall(self, num: int, handler: Callable[..., Any]) -> None:
        """Load a system call at run time (what a kernel module does); for tests and tools."""
        if num < 0:
            raise KernelError(Errno.EINVAL, "negative system call number")
        self._sysent[num] = handler

    # ---- entry ----------------------------------------------------------------------------
    def syscall(self, num: int, args: tuple[Any, ...]) -> Any:
        """Run system call ``num`` for the calling host thread.  Raises KernelError or
        KernelPanic."""
        l = self._curlwp_get()
        if l is None or l.inkernel or self._hooks_needed or self.dead:
            return self._syscall_slow(num, args)
        l.inkernel = 1
        sched = self.sched
        sched.schedule(l)
        try:
            return self._sysent[num](l, *args)
        except KernelError:
            raise
        except KeyError as e:
            if num not in self._sysent:
                raise KernelError(Errno.ENOSYS, f"no system call {num}") from None
            raise self._bug(num, e) from None
        except Exception as e:
            raise self._bug(num, e) from None
        finally:
            sched.unschedule(l)
            l.inkernel = 0

    def _syscall_slow(self, num: int, args: tuple[Any, ...]) -> Any:
        with self.entered() as l:
            return self._sysent.get(num, _badsys)(l, *args)

    def _bug(self, what: object, exc: BaseException) -> KernelPanic:
        if isinstance(exc, KernelPanic):
            return exc
        return self.panic(f"unexpected {type(exc).__name__} in {what}: {exc}", exc)

    @contextlib.contextmanager
    def entered(self) -> Iterator[Lwp]:
        """Run the body as kernel code on this host thread (lwp bound, vCPU held)."""
        l = self._enter()
        try:
            yield l
        except (KernelError, KernelPanic, GeneratorExit):
            raise
        except Exception as e:
            raise self._bug("kernel entry", e) from None
        finally:
            self._leave(l)

    @contextlib.contextmanager
    def unscheduled(self) -> Iterator[None]:
        """Give this thread's vCPU back for the body (a blocking host call: I/O, a host lock, a
        join) and take one again afterwards.  A no-op for a thread that holds no vCPU."""
        l = self._curlwp_get()
        if l is None or l.cpu is None:
            yield
            return
        sched = self.sched
        sched.unschedule(l)
        try:
            yield
        finally:
            sched.schedule(l)

    def hostcall(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call hypercall ``fn(*args)`` from kernel code: the vCPU is given back while the host
        works, and a ``HostError`` becomes the kernel's ``KernelError`` (the one point where
        host failures are translated)."""
        try:
            with self.unscheduled():
                return fn(*args)
        except HostError as e:
            raise from_host(e) from None

    def _enter(self) -> Lwp:
        if self.dead:
            if self.panicked is not None:
                raise KernelPanic(self.panicked.message, self.panicked.stacks)
            raise KernelError(Errno.ENXIO, "kernel has halted")
        if self._hooks_needed:
            self.host.sched_enter()
        l = self._curlwp_get()
        if l is None:
            l = Lwp(self, self.proc1, 1, implicit=True)
            self.implicit_lwps.add(l)
            self.host.curlwp_set(l)
        if l.inkernel == 0:
            if l.proc.exiting:
                if self._hooks_needed:
                    self.host.sched_leave()
                raise KernelError(Errno.ESRCH, "process has exited")
            self.sched.schedule(l)
        l.inkernel += 1
        return l

    def _leave(self, l: Lwp) -> None:
        l.inkernel -= 1
        if l.inkernel == 0:
            self.sched.unschedule(l)
            if self._hooks_needed:
                self.host.sched_leave()

    def new_fdtable(self) -> FdTable:
        return FdTable(self)

    # ---- kernel threads ---------------------------------------------------------------------
    def kthread_create(self, fn: Callable[[], None], name: str) -> Any:
        l = self.lwproc.newlwp_in(self.proc0, name=name)

        def bouncer() -> None:
            self.host.curlwp_set(l)
            l.inkernel = 1
            self.sched.schedule(l)
            try:
                fn()
            except KernelError as e:
                if e.errno != Errno.EINTR:
                    self.log(f"kthread {name}: {e}")
            except Exception as e:
                self.panic(f"kernel thread {name}: {type(e).__name__}: {e}", e)
            finally:
                self.sched.unschedule(l)
                l.inkernel = 0
                self.lwproc.free(l)
                self.host.curlwp_set(None)

        handle = self.host.thread_create(bouncer, f"{self.hostname[:10]}/{name}")
        self.kthreads[handle] = l
        return handle

    def kthread_join(self, handle: Any) -> None:
        """Wait for a kernel thread to finish (vCPU released while waiting)."""
        with self.unscheduled():
            self.host.thread_join(handle)
        self.kthreads.pop(handle, None)

    # ---- time, log, randomness ------------------------------------------------------------------
    def time_ns(self) -> int:
        return self.host.clock_wall_ns()

    def monotonic_ns(self) -> int:
        return self.host.clock_monotonic_ns()

    def random_bytes(self, n: int) -> bytes:
        return self.host.random_bytes(n)

    def log(self, msg: str) -> None:
        self.msgbuf.append(msg)
        if len(self.msgbuf) > 1000:
            del self.msgbuf[:500]
        if self.verbose:
            self.host.console_write(f"[{self.hostname}] {msg}\n")

    # ---- panic and halt -----------------------------------------------------------------------
    def panic(self, msg: str, exc: BaseException | None = None) -> KernelPanic:
        """Stop this kernel because of a bug; returns the KernelPanic for the caller to raise."""
        if self.panicked is not None:
            return self.panicked
        parts = [f"panic: {msg}\n"]
        if exc is not None:
            import traceback  # only a panicking kernel pays for it

            parts.append("".join(traceback.format_exception(exc)))
        parts.append(self.host.thread_stacks())
        stacks = "".join(parts)
        self.host.console_write(f"[{self.hostname}] {stacks}\n")
        self.panicked = KernelPanic(msg, stacks)
        self.dead = True
        self.kill_all_lwps()
        return self.panicked

    def all_lwps(self) -> list[Lwp]:
        out = [l for p in list(self.procs.procs.values()) for l in list(p.lwps)]
        return out + list(self.implicit_lwps)

    def kill_all_lwps(self) -> None:
        """Make every lwp leave its interruptible waits with EINTR (halt, panic)."""
        lwps = self.all_lwps()
        for l in lwps:
            l.killed = True
        for l in lwps:
            with contextlib.suppress(Exception):
                l.kill()

    def halt(self, sync: bool = True) -> None:
        """Shut the kernel down: flush and unmount file systems (unless ``sync`` is False), stop
        kernel threads, end every process.  Later calls raise ENXIO.  Idempotent."""
        if self.dead:
            return
        with self.entered() as me:
            others = [l for l in self.all_lwps() if l is not me and l.proc is not self.proc0]
            for l in others:
                l.killed = True
            for l in others:
                with contextlib.suppress(KernelError):
                    l.kill()
            self.hooks.run_reversed("halt", sync)
            for p in sorted(self.procs.procs.values(), key=lambda p: -p.pid):
                if p.pid > 1:
                    self.procs.exit(p)
            self.callouts.shutdown()
            self.softints.shutdown()
            for handle in list(self.kthreads):
                self.kthread_join(handle)
            self.proc1.fd.release(self)
            self.hooks.run_reversed("halt_final")
            self.dead = True
            self.halted = True
        self.host.curlwp_set(None)

    def __del__(self) -> None:
        """A kernel collected while running: say so, and write its data back if the host can
        do that from here (a deterministic host cannot run outside its baton)."""
        if getattr(self, "dead", True):
            return
        warnings.warn(f"kernel {self.hostname} was collected without halt(); halting it now",
                      ResourceWarning, stacklevel=1)
        if not self.host.deterministic:
            with contextlib.suppress(Exception):
                self.halt()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt()

    # ---- the VFS faction's API on the kernel object -------------------------------------------
    def _faction_call(self, faction: str, method: str, *args: Any, **kw: Any) -> Any:
        """Run a faction's kernel-object API method in the kernel; errors come back through
        the client layer's translation (OSError for local clients)."""
        slot = getattr(self, faction)
        try:
            if slot is None:
                raise KernelError(Errno.EOPNOTSUPP, f"the {faction} faction is not in this kernel")
            with self.entered() as l:
                return getattr(slot.api, method)(l, *args, **kw)
        except KernelError as e:
            raise self.errtrans(e) from None

    def etfs_register(self, key: str, host_path: str, kind: str, *, offset: int = 0,
                      size: int | None = None, readonly: bool = False) -> None:
        """Map a host file or directory into the kernel at ``key`` (rump_etfs(3)).  ``kind``:
        "reg", "blk", "chr", "dir" or "dir_subdirs".  ENOENT, EEXIST, EINVAL."""
        self._faction_call("vfs", "etfs_register", key, host_path, kind, offset, size, readonly)

    def etfs_remove(self, key: str) -> None:
        self._faction_call("vfs", "etfs_remove", key)

    def mount_image(self, host_path: str, target: str, *, fstype: str | None = None,
                    readonly: bool = False, partition: int | None = None, offset: int = 0,
                    options: dict[str, Any] | str | None = None) -> str:
        """Register ``host_path`` as a block device, detect its file system unless ``fstype``
        is given, create ``target`` if missing and mount it there.  Returns the type mounted.
        EINVAL naming every type tried (and the partitions, on a partitioned disk) when none
        recognises the image."""
        return self._faction_call("vfs", "mount_image", host_path, target, fstype, readonly,
                                  partition, offset, options)

    def newfs(self, fstype: str, host_path: str, *, partition: int | None = None,
              offset: int = 0, **options: Any) -> None:
        """Create an empty ``fstype`` file system on a host file (the kernel's newfs)."""
        self._faction_call("vfs", "newfs", fstype, host_path, partition, offset, options)

    def put_file(self, dirfd: int, name: bytes, mode: int, uid: int, gid: int, data: bytes,
                 size: int, atime_ns: int, mtime_ns: int) -> None:
        """One new regular file, whole, in one kernel entry (see ``vfs.component.VfsApi``):
        what an image builder does per file without four system calls."""
        self._faction_call("vfs", "put_file", dirfd, name, mode, uid, gid, data, size,
                           atime_ns, mtime_ns)

    # ---- the client file API (k.open, k.path, ...) -----------------------------------------------
    def __getattr__(self, name: str) -> Any:
        files = self.__dict__.get("files")
        if files is not None and name in files.names:
            return getattr(files, name)
        make = self.__dict__.get("lazy", {}).pop(name, None)
        if make is not None:            # e.g. k.socket: its imports cost a file-only program
            value = make()
            setattr(self, name, value)
            return value
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ---- introspection ------------------------------------------------------------------------
    def statistics(self) -> dict[str, Any]:
        """Counts of what the kernel holds: lwps (bound and kernel threads), processes, open
        files, memory (bytes in use, by tag), scheduler counters, plus faction statistics."""
        stats: dict[str, Any] = {
            "lwps": self.procs.nlwp,
            "kthreads": len(self.kthreads),
            "processes": len(self.procs.procs),
            "open_files": self.nfiles,
            "memory": self.kmem.stats(),
            "sched": self.sched.stats(),
            "components": list(self.components),
            "dead": self.dead,
        }
        self.hooks.run("statistics", stats)
        return stats
