"""Waiting for file events (poll): a wait channel per pollable object (NetBSD's selinfo).

Every object whose readiness can change (a pipe, a socket, a device with a queue) owns a
``SelInfo`` and calls ``notify()`` after *every* change of its readiness; its File exposes it as
``File.selinfo`` (None for files whose readiness never changes, such as regular files, which are
always ready).  A poll registers its lwp's ``PollWaiter`` with the SelInfo of every descriptor
*before* it checks readiness, so a change between the check and the wait is never lost; a notify
wakes only the pollers registered on that object and tells them which of their descriptors
fired, so a woken poll re-checks those alone.

Registrations outlive the call: an event loop polls the same descriptors over and over, so when a
poll asks for exactly what the previous poll of that lwp asked for, and the descriptor table has
not changed since (``FdTable.gen``), the poll re-checks only the descriptors whose objects fired
in between.  1,000 idle descriptors and one busy one then cost a poll the copy of its arguments
and one check, not 1,001.  A different request, or a changed table, drops the registrations and
starts over.

Interface:
    SelInfo()                 record(waiter, index) / forget(waiter) / notify()
    PollWaiter(k)             per lwp: fire(index); wait(timeout_ns) -> fired indices; release()
                              (forget every registration); ``wakeups`` counts fires it received
    waiter_of(l) -> PollWaiter

Rules: notify may be called from any thread with or without the object's own lock held (it takes
only the waiters' locks, which nothing holds while taking an object lock).  Registration tables
rely on the interpreter's atomic dict operations, as the scheduler's freelist does.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.sync import KCondVar, KMutex

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel


class PollWaiter:
    """One lwp's poll state: the fired indices, and the registrations of its last request."""

    __slots__ = ("cv", "fired", "key", "mtx", "out", "ready", "sels", "table", "tgen",
                 "wakeups", "__weakref__")

    def __init__(self, k: Kernel) -> None:
        self.mtx = KMutex(k)
        self.cv = KCondVar(k)
        self.fired: list[int] = []
        self.wakeups = 0
        self.key: bytes | None = None      # the last request's raw pollfd array
        self.table: Any = None             # ... the descriptor table it was made against
        self.tgen = -1                     # ... and that table's generation
        self.out = bytearray()             # the pollfd array with the current revents
        self.ready: set[int] = set()       # indices whose revents are non-zero
        self.sels: list[SelInfo] = []      # where this waiter is registered

    def fire(self, index: int) -> None:
        with self.mtx:
            self.fired.append(index)
            self.wakeups += 1
            self.cv.signal()

    def take_fired(self) -> list[int]:
        with self.mtx:
            fired = self.fired
            self.fired = []
        return fired

    def wait(self, timeout_ns: int | None) -> list[int]:
        """Wait until some registered object fires; the fired indices, or [] when
        ``timeout_ns`` passed (or on a spurious wake-up).  EINTR if the lwp is killed."""
        with self.mtx:
            if not self.fired:
                self.cv.wait(self.mtx, timeout_ns)
            fired = self.fired
            self.fired = []
        return fired

    def release(self) -> None:
        """Forget every registration (a new request, or the lwp is gone).  Takes no lock, so
        it may run from a finalizer; a fire racing with it only leaves a stale index, which the
        next request's reset drops."""
        for sel in self.sels:
            sel.forget(self)
        self.sels = []
        self.key = None
        self.ready = set()
        self.fired = []


class SelInfo:
    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: dict[PollWaiter, int | list[int]] = {}

    def record(self, w: PollWaiter, index: int) -> None:
        old = self.records.get(w)
        if old is None:
            self.records[w] = index
        elif isinstance(old, list):
            old.append(index)
        else:
            self.records[w] = [old, index]      # one object polled through two descriptors

    def forget(self, w: PollWaiter) -> None:
        self.records.pop(w, None)

    def notify(self) -> None:
        if not self.records:
            return
        for w, index in tuple(self.records.items()):
            if isinstance(index, list):
                for i in index:
                    w.fire(i)
            else:
                w.fire(index)


def waiter_of(l: Any) -> PollWaiter:
    w = l.pollwaiter
    if w is None:
        w = l.pollwaiter = PollWaiter(l.kernel)
        weakref.finalize(l, w.release)       # an lwp that goes away takes its registrations
    return w
