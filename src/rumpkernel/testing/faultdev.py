"""A fault-injecting block device for tests: make the Nth read or write fail with EIO.

Interface:
    FaultDevice(dev)                 -- wraps any ``vfs.bio.BlockDevice`` (same attributes)
        .arm(n, kinds=("read", "write"), sticky=False)
                                     -- count I/O calls of ``kinds`` from now on; call number
                                        ``n`` (0-based) raises KernelError(EIO) and, when
                                        ``sticky``, so does every later call of any kind (a
                                        device that died)
        .disarm()                    -- stop failing (a transient fault is over)
        .count                       -- calls of the armed kinds seen since ``arm``
        .fired                       -- whether the fault has happened
        .reads / .writes / .flushes  -- totals, never reset

Rules: a failing ``pwrite`` writes nothing (the whole request fails); ``flush`` counts as a
write.  Counting is per device call, which is what a driver's "Nth block I/O" means once its
buffer cache has merged or absorbed requests.  To enumerate every fault point of an operation,
run it once with ``arm(10**9)`` and read ``count``.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.errno import Errno, KernelError


class FaultDevice:
    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.name = dev.name
        self.size = dev.size
        self.sector_size = dev.sector_size
        self.readonly = dev.readonly
        self.reads = self.writes = self.flushes = 0
        self.count = 0
        self.fired = False
        self._at: int | None = None
        self._kinds: tuple[str, ...] = ()
        self._sticky = False
        self._dead = False

    def arm(self, n: int, kinds: tuple[str, ...] = ("read", "write"),
            sticky: bool = False) -> None:
        self._at, self._kinds, self._sticky = n, tuple(kinds), sticky
        self.count = 0
        self.fired = self._dead = False

    def disarm(self) -> None:
        self._at = None
        self._dead = False

    def _io(self, kind: str) -> None:
        if self._dead:
            raise KernelError(Errno.EIO, f"{self.name}: device failed (injected)")
        if self._at is None or kind not in self._kinds:
            return
        n = self.count
        self.count += 1
        if n == self._at:
            self.fired = True
            self._dead = self._sticky
            raise KernelError(Errno.EIO, f"{self.name}: injected {kind} error at I/O {n}")

    def pread(self, offset: int, length: int) -> bytes:
        self._io("read")
        self.reads += 1
        return self.dev.pread(offset, length)

    def pwrite(self, offset: int, data: bytes) -> None:
        self._io("write")
        self.writes += 1
        self.dev.pwrite(offset, data)

    def flush(self) -> None:
        self._io("write")
        self.flushes += 1
        self.dev.flush()
