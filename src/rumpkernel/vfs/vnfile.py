"""Open files backed by vnodes: regular files and directories, FIFOs, devices.

Interface:
    VnodeFile(k, vp, flags)      read/write/seek/stat through the driver, under the mount lock
    FifoFile(k, vp, pipe, ...)   a pipe end whose buffer belongs to a FIFO vnode
    DevFile(k, vp, flags, dev)   a character device (``dev`` has read/write/poll)
    PathFile(k, vp, flags)       an O_PATH handle: names a file (holds its vnode) for the *at
                                 calls, fstat, fchdir, fstatvfs and reopen; read/write are EBADF
    stat_tuple(vp, attr)         the kernel stat record of a vnode
    kill_privs(fs, node)         clear set-user-id / set-group-id after a non-root write
The file holds one reference on its vnode, released at close.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import O_APPEND, POLLIN, POLLOUT, POLLRDNORM
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.file import File
from rumpkernel.kern.pipe import Pipe, PipeFile
from rumpkernel.vfs.vattr import S_IFMT, S_IFREG, S_ISGID, S_ISUID, SetAttr, VAttr
from rumpkernel.vfs.vnode import Vnode

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel

SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4


def stat_tuple(vp: Vnode, a: VAttr) -> tuple[int, ...]:
    return (vp.mount.id, a.ino, a.mode, a.nlink, a.uid, a.gid, a.rdev, a.size, a.atime_ns,
            a.mtime_ns, a.ctime_ns, a.birthtime_ns, a.blksize, a.flags, a.blocks, a.gen)


S_IXGRP = 0o010


def kill_privs(fs: Any, node: Any) -> None:
    """A regular file written or truncated by someone other than root loses its set-user-id bit,
    and its set-group-id bit when it is group-executable (Linux's should_remove_suid; a set-gid
    bit without group execute marks mandatory locking and stays).  Call under the mount lock."""
    mode = fs.getattr(node).mode
    if mode & S_IFMT != S_IFREG:
        return
    kill = (mode & S_ISUID) | (S_ISGID if mode & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP else 0)
    if kill:
        fs.setattr(node, SetAttr(mode=mode & 0o7777 & ~kill))


class VnodeFile(File):
    __slots__ = ("vp",)
    kind = "vnode"

    def __init__(self, k: Kernel, vp: Vnode, flags: int) -> None:
        super().__init__(k, flags)
        self.vp = vp

    def _live(self) -> Any:
        mp = self.vp.mount
        if mp.dead:
            raise KernelError(Errno.EIO, "file system was unmounted")
        return mp

    def read(self, l: Any, n: int, offset: int | None) -> bytes:
        vp = self.vp
        if vp.isdir:
            raise KernelError(Errno.EISDIR)
        mp = self._live()
        with mp.lock:
            off = self.offset if offset is None else offset
            data = mp.fs.read(vp.node, off, n) if n else b""
            if offset is None:
                self.offset = off + len(data)
        return data

    def write(self, l: Any, data: bytes, offset: int | None) -> int:
        vp = self.vp
        mp = self._live()
        if mp.readonly:
            raise KernelError(Errno.EROFS)
        with mp.lock:
            fs = mp.fs
            if offset is None:
                off = fs.getattr(vp.node).size if self.flags & O_APPEND else self.offset
            else:
                off = offset
            if data and l.proc.cred.euid != 0:
                kill_privs(fs, vp.node)
            n = fs.write(vp.node, off, data) if data else 0
            if offset is None:
                self.offset = off + n
        return n

    def seek(self, l: Any, offset: int, whence: int) -> int:
        vp = self.vp
        mp = self._live()
        with mp.lock:
            if whence == SEEK_SET:
                new = offset
            elif whence == SEEK_CUR:
                new = self.offset + offset
            elif whence == SEEK_END:
                new = mp.fs.getattr(vp.node).size + offset
            elif whence in (SEEK_DATA, SEEK_HOLE):
                if vp.isdir or offset < 0:
                    raise KernelError(Errno.EINVAL if offset < 0 else Errno.ENXIO)
                op = mp.fs.seek_data if whence == SEEK_DATA else mp.fs.seek_hole
                new = op(vp.node, offset)
            else:
                raise KernelError(Errno.EINVAL, f"whence {whence}")
            if new < 0:
                raise KernelError(Errno.EINVAL, "negative file offset")
            self.offset = new
        return new

    def stat(self, l: Any) -> tuple[int, ...]:
        mp = self._live()
        with mp.lock:
            return stat_tuple(self.vp, mp.fs.getattr(self.vp.node))

    def poll(self, l: Any, events: int) -> int:
        return events & (POLLIN | POLLOUT | POLLRDNORM)

    def close(self, l: Any) -> None:
        self.k.vfs.vcache.vrele(self.vp)


class PathFile(File):
    """An ``O_PATH`` descriptor: a vnode reference with no right to I/O (Linux's O_PATH).  It
    works as the ``dirfd`` of the *at calls (with ``AT_EMPTY_PATH``, on the file itself), for
    fstat, fchdir, fstatvfs and reopen; everything else is EBADF."""

    __slots__ = ("vp",)
    kind = "path"

    def __init__(self, k: Kernel, vp: Vnode, flags: int) -> None:
        super().__init__(k, flags)
        self.vp = vp

    def read(self, l: Any, n: int, offset: int | None) -> bytes:
        raise KernelError(Errno.EBADF, "O_PATH descriptor")

    def write(self, l: Any, data: bytes, offset: int | None) -> int:
        raise KernelError(Errno.EBADF, "O_PATH descriptor")

    def seek(self, l: Any, offset: int, whence: int) -> int:
        raise KernelError(Errno.EBADF, "O_PATH descriptor")

    def stat(self, l: Any) -> tuple[int, ...]:
        mp = self.vp.mount
        if mp.dead:
            raise KernelError(Errno.EIO, "file system was unmounted")
        with mp.lock:
            return stat_tuple(self.vp, mp.fs.getattr(self.vp.node))

    def poll(self, l: Any, events: int) -> int:
        return 0

    def close(self, l: Any) -> None:
        self.k.vfs.vcache.vrele(self.vp)


class FifoFile(PipeFile):
    __slots__ = ("vp",)

    def __init__(self, k: Kernel, vp: Vnode, pipe: Pipe, flags: int, reader: bool) -> None:
        super().__init__(k, pipe, flags, reader)
        self.vp = vp

    def stat(self, l: Any) -> tuple[int, ...]:
        mp = self.vp.mount
        with mp.lock:
            return stat_tuple(self.vp, mp.fs.getattr(self.vp.node))

    def close(self, l: Any) -> None:
        super().close(l)
        if self.pipe.mtx is None and self.vp.fifo is self.pipe:
            self.vp.fifo = None  # every end closed: the next open starts a new pipe
        self.k.vfs.vcache.vrele(self.vp)


class DevFile(File):
    __slots__ = ("dev", "vp")
    kind = "device"

    def __init__(self, k: Kernel, vp: Vnode, flags: int, dev: Any) -> None:
        super().__init__(k, flags)
        self.vp = vp
        self.dev = dev

    def read(self, l: Any, n: int, offset: int | None) -> bytes:
        data = self.dev.read(l, n, self.offset if offset is None else offset)
        if offset is None:
            self.offset += len(data)
        return data

    def write(self, l: Any, data: bytes, offset: int | None) -> int:
        n = self.dev.write(l, data, self.offset if offset is None else offset)
        if offset is None:
            self.offset += n
        return n

    def seek(self, l: Any, offset: int, whence: int) -> int:
        if whence == SEEK_SET:
            self.offset = max(0, offset)
        elif whence == SEEK_CUR:
            self.offset = max(0, self.offset + offset)
        elif whence == SEEK_END:
            self.offset = max(0, getattr(self.dev, "size", 0) + offset)
        else:
            raise KernelError(Errno.EINVAL, f"whence {whence}")
        return self.offset

    def stat(self, l: Any) -> tuple[int, ...]:
        mp = self.vp.mount
        with mp.lock:
            return stat_tuple(self.vp, mp.fs.getattr(self.vp.node))

    def poll(self, l: Any, events: int) -> int:
        return events & (POLLIN | POLLOUT | POLLRDNORM)

    def close(self, l: Any) -> None:
        close = getattr(self.dev, "close", None)
        if close is not None:
            close(l)
        self.k.vfs.vcache.vrele(self.vp)


def is_regular(a: VAttr) -> bool:
    return a.mode & 0o170000 == S_IFREG
