"""Host files seen from inside the kernel: byte files for etfs and block devices (rumpblk).

Interface:
    HostFile(k, path, writable, create=False)   pread / pwrite / size / truncate / fsync /
                                                close, all through hypercalls
    HostBlockDevice(k, hostfile, offset, size, name, readonly)
                                                a BlockDevice (vfs.bio) over a window of a host
                                                file: sector-aligned, bounds-checked
    RawBlockAccess(dev)                         what an open block-device node reads and writes

Every host I/O gives the calling lwp's vCPU back for its duration (a blocking hypercall), so
other threads keep running kernel code while the host does I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.errno import Errno, KernelError

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel

SECTOR = 512


class HostFile:
    __slots__ = ("h", "host", "k", "path", "writable")

    def __init__(self, k: Kernel, path: str, writable: bool, create: bool = False) -> None:
        self.k = k
        self.host = k.host
        self.path = path
        self.writable = writable
        self.h = self._blocking(self.host.file_open, path, writable, create)

    def _blocking(self, fn: Any, *args: Any) -> Any:
        return self.k.hostcall(fn, *args)

    def pread(self, offset: int, length: int) -> bytes:
        return self._blocking(self.host.file_pread, self.h, offset, length)

    def pwrite(self, offset: int, data: bytes) -> None:
        if not self.writable:
            raise KernelError(Errno.EROFS, f"{self.path} is open read-only")
        self._blocking(self.host.file_pwrite, self.h, offset, data)

    def size(self) -> int:
        return self._blocking(self.host.file_size, self.h)

    def truncate(self, size: int) -> None:
        if not self.writable:
            raise KernelError(Errno.EROFS, f"{self.path} is open read-only")
        self._blocking(self.host.file_truncate, self.h, size)

    def fsync(self) -> None:
        if self.writable:
            self._blocking(self.host.file_fsync, self.h)

    def close(self) -> None:
        if self.h is not None:
            h, self.h = self.h, None
            self._blocking(self.host.file_close, h)


class HostBlockDevice:
    """A block device over bytes [offset, offset+size) of a host file."""

    def __init__(self, k: Kernel, hostfile: HostFile, offset: int = 0, size: int | None = None,
                 name: str = "", readonly: bool = False, sector_size: int = SECTOR) -> None:
        total = hostfile.size()
        if offset < 0 or offset > total:
            raise KernelError(Errno.EINVAL, f"offset {offset} outside {hostfile.path} "
                              f"({total} bytes)")
        if size is None:
            size = total - offset
        if size < 0 or offset + size > total:
            raise KernelError(Errno.EINVAL, f"{hostfile.path}: window {offset}+{size} beyond "
                              f"its {total} bytes")
        self.file = hostfile
        self.offset = offset
        self.size = size - size % sector_size
        self.sector_size = sector_size
        self.readonly = readonly or not hostfile.writable
        self.name = name or hostfile.path
        self.reads = 0
        self.writes = 0

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise KernelError(Errno.EIO, f"{self.name}: read of {length} at {offset} past end "
                              f"({self.size})")
        self.reads += 1
        data = self.file.pread(self.offset + offset, length)
        if len(data) != length:
            raise KernelError(Errno.EIO, f"{self.name}: short read from host")
        return data

    def pwrite(self, offset: int, data: bytes) -> None:
        if self.readonly:
            raise KernelError(Errno.EROFS, f"{self.name} is read-only")
        if offset < 0 or offset + len(data) > self.size:
            raise KernelError(Errno.ENOSPC, f"{self.name}: write past end of device")
        self.writes += 1
        self.file.pwrite(self.offset + offset, data)

    def flush(self) -> None:
        if not self.readonly:
            self.file.fsync()


class RawBlockAccess:
    """Byte access to a whole block device through an open device node."""

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.size = dev.size

    def read(self, l: Any, n: int, offset: int) -> bytes:
        if offset >= self.size:
            return b""
        n = min(n, self.size - offset)
        ss = self.dev.sector_size
        start = offset - offset % ss
        end = -(-(offset + n) // ss) * ss
        data = self.dev.pread(start, min(end, self.size) - start)
        return data[offset - start : offset - start + n]

    def write(self, l: Any, data: bytes, offset: int) -> int:
        if offset + len(data) > self.size:
            raise KernelError(Errno.ENOSPC, "write past end of device")
        ss = self.dev.sector_size
        start = offset - offset % ss
        end = -(-(offset + len(data)) // ss) * ss
        buf = bytearray(self.dev.pread(start, end - start))
        buf[offset - start : offset - start + len(data)] = data
        self.dev.pwrite(start, bytes(buf))
        return len(data)
