"""The dev faction: memory devices (null, zero, full) and the entropy devices (random,
urandom).  With the vfs faction present they appear as nodes under ``/dev``; without it the
drivers still exist in ``k.dev`` for direct use (the dissertation's "bypass the file system"
example)."""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import makedev
from rumpkernel.kern.component import Phase, component
from rumpkernel.kern.errno import Errno, KernelError

MAX_RANDOM = 1 << 20


class _Dev:
    name = ""

    def __init__(self, k: Any) -> None:
        self.k = k

    def open(self, l: Any, flags: int) -> _Dev:
        return self

    def read(self, l: Any, n: int, offset: int) -> bytes:
        return b""

    def write(self, l: Any, data: bytes, offset: int) -> int:
        return len(data)


class Null(_Dev):
    name = "null"


class Zero(_Dev):
    name = "zero"

    def read(self, l: Any, n: int, offset: int) -> bytes:
        return bytes(n)


class Full(Zero):
    name = "full"

    def write(self, l: Any, data: bytes, offset: int) -> int:
        raise KernelError(Errno.ENOSPC, "/dev/full")


class Random(_Dev):
    name = "random"

    def read(self, l: Any, n: int, offset: int) -> bytes:
        return self.k.random_bytes(min(n, MAX_RANDOM))


class URandom(Random):
    name = "urandom"


# Linux's numbers, so a listing looks familiar
DEVICES = ((Null, 1, 3, 0o666), (Zero, 1, 5, 0o666), (Full, 1, 7, 0o666),
           (Random, 1, 8, 0o666), (URandom, 1, 9, 0o666))


@component("dev", phase=Phase.DEV, faction="dev", desc="memory and entropy devices")
def dev_init(k: Any) -> None:
    k.dev = {}
    for cls, maj, mn, mode in DEVICES:
        drv = cls(k)
        k.dev[cls.name] = drv
        if k.vfs is not None:
            rdev = makedev(maj, mn)
            k.vfs.cdevs[rdev] = drv
            root = k.vfs.rootvp.mount
            with root.lock:
                fs = root.fs
                devdir = fs.vget(fs.lookup(fs.vget(fs.root_ino), b"dev"))
                fs.create(devdir, cls.name.encode(), 0o020000 | mode, 0, 0, rdev)
