"""Callouts (timers) and softints (deferred work), each served by a kernel thread.

Both threads are created on first use, so a kernel that never needs them never pays for them.
Handlers run on the serving kernel thread holding a vCPU; they must not block for long.

Interface:
    Callouts(k): c = callout(fn, *args); schedule(c, delay_ns); stop(c) -> bool (was pending);
                 shutdown()
    Softints(k): s = establish(fn); schedule(s); shutdown()
A handler that raises anything but KernelError panics the kernel, like any kernel bug.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.errno import KernelError
from rumpkernel.kern.sync import KCondVar, KMutex

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel


class Callout:
    __slots__ = ("args", "fn", "pending", "when")

    def __init__(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.when = 0
        self.pending = False


class _Server:
    """A kernel thread serving queued work, started lazily, stopped by ``shutdown``."""

    def __init__(self, k: Kernel, name: str) -> None:
        self.k = k
        self.name = name
        self.mtx = KMutex(k)
        self.cv = KCondVar(k)
        self.thread: Any = None
        self.stopping = False

    def _ensure_thread(self) -> None:
        if self.thread is None and not self.stopping:
            self.thread = self.k.kthread_create(self._loop, self.name)

    def _loop(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        with self.mtx:
            self.stopping = True
            self.cv.broadcast()
        if self.thread is not None:
            self.k.kthread_join(self.thread)
            self.thread = None

    def _run(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except KernelError as e:
            self.k.log(f"{self.name}: handler {fn.__qualname__} failed: {e}")


class Callouts(_Server):
    def __init__(self, k: Kernel) -> None:
        super().__init__(k, "callout")
        self.heap: list[tuple[int, int, Callout]] = []
        self.seq = 0
        self.fired = 0

    def callout(self, fn: Callable[..., None], *args: Any) -> Callout:
        return Callout(fn, args)

    def schedule(self, c: Callout, delay_ns: int) -> None:
        with self.mtx:
            c.when = self.k.monotonic_ns() + max(0, delay_ns)
            c.pending = True
            self.seq += 1
            heapq.heappush(self.heap, (c.when, self.seq, c))
            self._ensure_thread()
            self.cv.signal()

    def stop(self, c: Callout) -> bool:
        with self.mtx:
            was = c.pending
            c.pending = False
            return was

    def _loop(self) -> None:
        k = self.k
        self.mtx.enter()
        try:
            while not self.stopping:
                heap = self.heap
                while heap and (not heap[0][2].pending or heap[0][2].when != heap[0][0]):
                    heapq.heappop(heap)
                if not heap:
                    self.cv.wait(self.mtx, interruptible=False)
                    continue
                now = k.monotonic_ns()
                when, _, c = heap[0]
                if when > now:
                    self.cv.wait(self.mtx, when - now, interruptible=False)
                    continue
                heapq.heappop(heap)
                c.pending = False
                self.fired += 1
                self.mtx.exit()
                try:
                    self._run(c.fn, c.args)
                finally:
                    self.mtx.enter()
        finally:
            self.mtx.exit()


class SoftInt:
    __slots__ = ("fn", "pending")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.pending = False


class Softints(_Server):
    def __init__(self, k: Kernel) -> None:
        super().__init__(k, "softint")
        self.queue: deque[SoftInt] = deque()

    def establish(self, fn: Callable[[], None]) -> SoftInt:
        return SoftInt(fn)

    def schedule(self, s: SoftInt) -> None:
        with self.mtx:
            if not s.pending:
                s.pending = True
                self.queue.append(s)
                self._ensure_thread()
                self.cv.signal()

    def _loop(self) -> None:
        self.mtx.enter()
        try:
            while not self.stopping:
                if not self.queue:
                    self.cv.wait(self.mtx, interruptible=False)
                    continue
                s = self.queue.popleft()
                s.pending = False
                self.mtx.exit()
                try:
                    self._run(s.fn, ())
                finally:
                    self.mtx.enter()
        finally:
            self.mtx.exit()
