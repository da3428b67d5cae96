"""A block device that fails on request: for "the Nth I/O of this operation fails" tests.

Wraps any ``BlockDevice`` (``vfs.bio`` protocol: ``pread``, ``pwrite``, ``flush``, ``size``,
``sector_size``, ``readonly``, ``name``) and counts its device calls.  Armed, it makes the
``fail_at``-th counted call (1-based, counting from ``arm``) raise ``KernelError(EIO)`` without
touching the device -- a read returns nothing, a write writes nothing.

Interface:
    FaultDevice(dev)                        same protocol as ``dev``; passes everything through
    fd.arm(fail_at, kinds="rw", sticky=False)
        count reads ("r"), writes ("w") or both from now on; fail the ``fail_at``-th.  With
        ``sticky`` every counted call from that one on fails too (a device that died).
    fd.disarm() -> int                      stop failing; the number of calls counted
    fd.count                                calls counted since ``arm``
    fd.tripped                              True once a call was failed
    fd.reads / fd.writes                    all calls ever made, by kind

A run of blocks (one ``pread``/``pwrite``) is one call.  ``flush`` is never failed.  Typical
use: run an operation once armed with ``fail_at=10**9`` to learn how many calls it makes (``n =
disarm()``), then once per ``fail_at`` in ``1..n`` on a fresh copy of the image.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.errno import Errno, KernelError


class FaultDevice:
    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.name = f"fault:{dev.name}"
        self.size = dev.size
        self.sector_size = dev.sector_size
        self.readonly = dev.readonly
        self.reads = self.writes = 0
        self.count = 0
        self.tripped = False
        self._fail_at = 0
        self._kinds = ""
        self._sticky = False

    def arm(self, fail_at: int, kinds: str = "rw", sticky: bool = False) -> None:
        if fail_at < 1 or not kinds or set(kinds) - {"r", "w"}:
            raise ValueError("fail_at >= 1 and kinds from 'r', 'w'")
        self._fail_at, self._kinds, self._sticky = fail_at, kinds, sticky
        self.count = 0
        self.tripped = False

    def disarm(self) -> int:
        self._kinds = ""
        return self.count

    def _check(self, kind: str, offset: int) -> None:
        if kind not in self._kinds:
            return
        self.count += 1
        if self.count == self._fail_at or (self._sticky and self.count > self._fail_at):
            self.tripped = True
            what = "read" if kind == "r" else "write"
            raise KernelError(Errno.EIO, f"{self.name}: injected {what} error at {offset}")

    def pread(self, offset: int, length: int) -> bytes:
        self.reads += 1
        self._check("r", offset)
        return self.dev.pread(offset, length)

    def pwrite(self, offset: int, data: bytes) -> None:
        self.writes += 1
        self._check("w", offset)
        self.dev.pwrite(offset, data)

    def flush(self) -> None:
        self.dev.flush()
