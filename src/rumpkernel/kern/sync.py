"""Kernel synchronisation: mutexes, readers-writer locks, condition variables.

All are built on host primitives from the hypercall layer with the dissertation's
"try, then unschedule and block" rule: the uncontended path never gives up the vCPU; a thread that
must wait releases its vCPU first and takes one again after the wait.

Interface:
    KMutex(k, recursive=False)  enter() / tryenter() / exit() ; usable as ``with m:``
    KRWLock(k)     enter(write) / exit() ; reader() / writer() context managers
    KCondVar(k)    wait(mtx, timeout_ns=None, interruptible=True) -> bool (False on timeout)
                   signal() / broadcast()

Interruptible waits make a killed lwp (its process is exiting, or the kernel is halting) leave
with ``KernelError(EINTR)``: the waiter publishes its wait channel before checking ``killed``
and the killer sets ``killed`` before reading the channel, so no kill is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rumpkernel.kern.errno import Errno, KernelError

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel


class KMutex:
    """A kernel mutex (``recursive=True``: its owner may enter again, as the VFS does with a
    mount's lock).  The uncontended enter is one host call; a contended one gives the vCPU
    back while it blocks."""

    __slots__ = ("_block", "_curlwp", "_exit", "_sched", "_try", "hmtx")

    def __init__(self, k: Kernel, recursive: bool = False) -> None:
        h = self.hmtx = k.host.mutex_create(recursive)
        self._try = h.tryenter
        self._block = h.enter
        self._exit = h.exit
        self._sched = k.sched
        self._curlwp = k.host.curlwp_get

    def enter(self) -> None:
        if not self._try():
            self._enter_slow()

    def _enter_slow(self) -> None:
        l = self._curlwp()
        if l is not None and l.cpu is not None:
            sched = self._sched
            sched.unschedule(l)
            try:
                self._block()
            finally:
                sched.schedule(l)
        else:
            self._block()

    def tryenter(self) -> bool:
        return self._try()

    def exit(self) -> None:
        self._exit()

    def __enter__(self) -> None:
        if not self._try():
            self._enter_slow()

    def __exit__(self, *exc: object) -> None:
        self._exit()


class KRWLock:
    __slots__ = ("_curlwp", "_sched", "hrw")

    def __init__(self, k: Kernel) -> None:
        self.hrw = k.host.rw_create()
        self._sched = k.sched
        self._curlwp = k.host.curlwp_get

    def enter(self, write: bool) -> None:
        if self.hrw.tryenter(write):
            return
        l = self._curlwp()
        if l is not None and l.cpu is not None:
            self._sched.unschedule(l)
            try:
                self.hrw.enter(write)
            finally:
                self._sched.schedule(l)
        else:
            self.hrw.enter(write)

    def exit(self) -> None:
        self.hrw.exit()


# Waits longer than this are waits without a timeout (no host can time 100 years, and some
# overflow trying: every timeout from a system call argument passes through KCondVar.wait).
MAX_WAIT_NS = 100 * 365 * 86400 * 10**9


class KCondVar:
    __slots__ = ("_curlwp", "_sched", "hcv")

    def __init__(self, k: Kernel) -> None:
        self.hcv = k.host.cv_create()
        self._sched = k.sched
        self._curlwp = k.host.curlwp_get

    def wait(self, mtx: KMutex, timeout_ns: int | None = None, interruptible: bool = True) -> bool:
        """Wait for a signal with ``mtx`` held (it is released while waiting and held again on
        return).  Returns False if ``timeout_ns`` elapsed first.  EINTR if the lwp is killed."""
        l = self._curlwp()
        if l is not None and interruptible:
            l.wchan = (self, mtx)
            if l.killed:
                l.wchan = None
                raise KernelError(Errno.EINTR, "lwp killed")
        if timeout_ns is not None and timeout_ns > MAX_WAIT_NS:
            timeout_ns = None
        resched = l is not None and l.cpu is not None
        if resched:
            self._sched.unschedule(l)
        try:
            ok = self.hcv.wait(mtx.hmtx, timeout_ns)
        finally:
            if resched:
                self._sched.schedule(l)
            if l is not None:
                l.wchan = None
        if l is not None and interruptible and l.killed:
            raise KernelError(Errno.EINTR, "lwp killed")
        return ok

    def signal(self) -> None:
        self.hcv.signal()

    def broadcast(self) -> None:
        self.hcv.broadcast()
