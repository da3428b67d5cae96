"""Waiting for file events (poll): one kernel-wide wait channel with a generation counter.

A file whose readiness may have changed calls ``k.sel.notify()``; ``poll`` re-scans its
descriptors whenever the generation moves.  Notification is free when nobody polls.

Interface:  SelWait(k): notify(); wait(gen, timeout_ns) -> bool; begin() -> gen; end()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rumpkernel.kern.sync import KCondVar, KMutex

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel


class SelWait:
    __slots__ = ("cv", "gen", "mtx", "waiters")

    def __init__(self, k: Kernel) -> None:
        self.mtx = KMutex(k)
        self.cv = KCondVar(k)
        self.gen = 0
        self.waiters = 0

    def notify(self) -> None:
        if self.waiters:
            with self.mtx:
                self.gen += 1
                self.cv.broadcast()

    def begin(self) -> int:
        with self.mtx:
            self.waiters += 1
            return self.gen

    def end(self) -> None:
        with self.mtx:
            self.waiters -= 1

    def wait(self, gen: int, timeout_ns: int | None) -> bool:
        """Wait until the generation differs from ``gen``; False on timeout."""
        with self.mtx:
            while self.gen == gen:
                if not self.cv.wait(self.mtx, timeout_ns):
                    return False
            return True
