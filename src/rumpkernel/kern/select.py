"""Waiting for file events (poll): a wait channel per pollable object (NetBSD's selinfo).

Every object whose readiness can change (a pipe, a socket, a device with a queue) owns a
``SelInfo`` and calls ``notify()`` after a change; ``File.selinfo`` exposes it (None for files
whose readiness never changes, such as regular files, which are always ready).  A poll registers
its lwp's ``PollWaiter`` with the SelInfo of every descriptor *before* it checks readiness, so a
change between the check and the wait is never lost; a notify wakes only the pollers registered
on that object, and tells them which of their descriptors fired, so a woken poll re-checks those
alone.  1,000 idle descriptors and one busy one cost a poller one check per event, not 1,001.

Interface:
    SelInfo()                 record(waiter, index) / forget(waiter) / notify()
    PollWaiter(k)             per lwp (``waiter_of(l)``): fire(index); wait(timeout_ns) -> fired
                              indices (empty on timeout); ``wakeups`` counts fires it received
    waiter_of(l) -> PollWaiter

Rules: notify may be called from any thread with or without the object's own lock held (it takes
only the waiters' locks, which nothing holds while taking an object lock).  Registration lists
rely on the interpreter's atomic list operations, as the scheduler's freelist does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.sync import KCondVar, KMutex

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel


class PollWaiter:
    __slots__ = ("cv", "fired", "mtx", "wakeups")

    def __init__(self, k: Kernel) -> None:
        self.mtx = KMutex(k)
        self.cv = KCondVar(k)
        self.fired: list[int] = []
        self.wakeups = 0

    def fire(self, index: int) -> None:
        with self.mtx:
            self.fired.append(index)
            self.wakeups += 1
            self.cv.signal()

    def reset(self) -> None:
        with self.mtx:
            self.fired.clear()

    def wait(self, timeout_ns: int | None) -> list[int]:
        """Wait until some registered object fires; its descriptors' indices (deduplicated),
        or [] when ``timeout_ns`` passed first.  EINTR if the lwp is killed."""
        with self.mtx:
            if not self.fired and not self.cv.wait(self.mtx, timeout_ns) and not self.fired:
                return []
            fired = sorted(set(self.fired))
            self.fired.clear()
            return fired


class SelInfo:
    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: list[tuple[PollWaiter, int]] = []

    def record(self, w: PollWaiter, index: int) -> None:
        self.records.append((w, index))

    def forget(self, w: PollWaiter) -> None:
        if self.records:
            self.records = [r for r in self.records if r[0] is not w]

    def notify(self) -> None:
        for w, index in tuple(self.records):
            w.fire(index)


def waiter_of(l: Any) -> PollWaiter:
    w = l.pollwaiter
    if w is None:
        w = l.pollwaiter = PollWaiter(l.kernel)
    return w
