"""A block device over a host file, for tests that drive a file system driver directly
(without booting a kernel).  The kernel's own host-file devices go through hypercalls
(``rumpkernel.vfs.blkdev``); this one is for driver unit tests only."""

from __future__ import annotations

import os

from rumpkernel.kern.errno import Errno, KernelError


class HostFileDevice:
    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False,
                 sector_size: int = 512) -> None:
        self.name = os.fspath(path)
        self.readonly = readonly
        self.sector_size = sector_size
        self.fd = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
        self.size = os.fstat(self.fd).st_size

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self.size:
            raise KernelError(Errno.EIO, f"{self.name}: read past end of device")
        return os.pread(self.fd, length, offset)

    def pwrite(self, offset: int, data: bytes) -> None:
        if self.readonly:
            raise KernelError(Errno.EROFS, f"{self.name}: read-only")
        if offset < 0 or offset + len(data) > self.size:
            raise KernelError(Errno.ENOSPC, f"{self.name}: write past end of device")
        os.pwrite(self.fd, data, offset)

    def flush(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> HostFileDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
