"""The FUSE mode of the file-system-independent suite: the ``k.sys`` calls the suite makes, done
by the host (``os``) on a FUSE mount of the kernel's ``/mnt``.

The kernel's name space is mirrored under a host directory ``root``: ``root/mnt`` is the FUSE
mount point, so kernel path ``/mnt/t/x`` is host path ``root/mnt/t/x`` and ``..``, ``getcwd`` and
relative paths behave alike.  What cannot go through FUSE skips (mounting and unmounting inside
the kernel) or is translated and said so:

* an absolute symlink target names the kernel's name space; it is stored with ``root`` in front
  so the host resolves it to the same file (``readlink`` takes it off again);
* a relative target climbing above the kernel root would resolve in the host: skipped;
* a case-only rename between two names of one file (FAT) never reaches a FUSE server: the host
  VFS treats it as a rename of a file onto itself (xfail).

``user(uid, gid, groups)`` switches the host thread's effective ids (seteuid/setegid/setgroups,
restored afterwards) and the process umask; the mount has ``allow_other,default_permissions``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from collections.abc import Iterator
from typing import Any

import pytest

SYS_getdents64 = 217          # x86-64
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
_libc = ctypes.CDLL(None, use_errno=True)


def _utimensat(path: str, ns: tuple[int, int]) -> None:
    ts = (ctypes.c_long * 4)()
    for i, t in enumerate(ns):
        ts[2 * i], ts[2 * i + 1] = (0, t) if t in (UTIME_NOW, UTIME_OMIT) else divmod(t, 10**9)
    if _libc.utimensat(-100, os.fsencode(path), ts, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


class HostSys:
    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.fds: set[int] = set()          # closed at teardown if a test left them open

    def close_all(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()

    # ---- paths ----------------------------------------------------------------------------------
    def h(self, path: Any) -> Any:
        if isinstance(path, int):
            return path
        p = os.fsdecode(path)
        if p.startswith("/"):
            return self.root + p if p != "/" else self.root
        return p

    def k(self, host: str) -> str:
        """A host path back in the kernel's name space (skip when it is outside)."""
        host = os.path.realpath(host)
        if host == self.root:
            return "/"
        if not host.startswith(self.root + "/"):
            pytest.skip(f"{host} is outside the mirrored kernel name space")
        return host[len(self.root):]

    # ---- files ----------------------------------------------------------------------------------
    def open(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        fd = os.open(self.h(path), flags, mode, dir_fd=dir_fd)
        self.fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        os.close(fd)
        self.fds.discard(fd)

    def read(self, fd: int, n: int) -> bytes:
        return os.read(fd, n)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def pread(self, fd: int, n: int, off: int) -> bytes:
        return os.pread(fd, n, off)

    def pwrite(self, fd: int, data: bytes, off: int) -> int:
        return os.pwrite(fd, data, off)

    def lseek(self, fd: int, off: int, whence: int) -> int:
        return os.lseek(fd, off, whence)

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def stat(self, path: Any, *, dir_fd: int | None = None,
             follow_symlinks: bool = True) -> os.stat_result:
        return os.stat(self.h(path), dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def lstat(self, path: Any, *, dir_fd: int | None = None) -> os.stat_result:
        return os.lstat(self.h(path), dir_fd=dir_fd)

    def access(self, path: Any, mode: int, **kw: Any) -> bool:
        kw.setdefault("effective_ids", True)     # user() changes only the effective ids
        return os.access(self.h(path), mode, **kw)

    def truncate(self, path: Any, n: int) -> None:
        os.truncate(self.h(path), n)

    def ftruncate(self, fd: int, n: int) -> None:
        os.ftruncate(fd, n)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def sync(self) -> None:
        os.sync()

    # ---- names ----------------------------------------------------------------------------------
    def mkdir(self, path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        os.mkdir(self.h(path), mode, dir_fd=dir_fd)

    def rmdir(self, path: Any, *, dir_fd: int | None = None) -> None:
        os.rmdir(self.h(path), dir_fd=dir_fd)

    def unlink(self, path: Any, *, dir_fd: int | None = None) -> None:
        os.unlink(self.h(path), dir_fd=dir_fd)

    remove = unlink

    def rename(self, src: Any, dst: Any, *, src_dir_fd: int | None = None,
               dst_dir_fd: int | None = None) -> None:
        hs, hd = self.h(src), self.h(dst)
        with contextlib.suppress(OSError):
            a = os.lstat(hs, dir_fd=src_dir_fd)
            b = os.lstat(hd, dir_fd=dst_dir_fd)
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and \
                    os.path.basename(hs) != os.path.basename(hd) and a.st_nlink == 1:
                pytest.xfail("the host VFS never passes a rename between two names of one "
                             "file to FUSE (case-only rename on a case-insensitive FS)")
        os.rename(hs, hd, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    replace = rename

    def link(self, src: Any, dst: Any, **kw: Any) -> None:
        os.link(self.h(src), self.h(dst), **kw)

    def symlink(self, target: Any, path: Any, *, dir_fd: int | None = None) -> None:
        t = os.fsdecode(target)
        if t.startswith("/"):
            t = self.root + t
        else:
            depth = len([c for c in self.k(os.path.dirname(os.path.abspath(self.h(path))))
                         .split("/") if c])
            ups = 0
            for c in t.split("/"):
                ups = ups + 1 if c == ".." else max(0, ups - 1) if c not in ("", ".") else ups
                if ups > depth:
                    pytest.skip("a relative symlink climbing above the kernel root resolves "
                                "in the host's name space")
        os.symlink(t, self.h(path), dir_fd=dir_fd)

    def readlink(self, path: Any, *, dir_fd: int | None = None) -> str:
        t = os.readlink(self.h(path), dir_fd=dir_fd)
        return t[len(self.root):] if t.startswith(self.root + "/") else t

    def listdir(self, path: Any = ".") -> list[Any]:
        return os.listdir(self.h(path))

    def getdents(self, fd: int, bufsize: int = 65536) -> list[tuple[bytes, int, int, int]]:
        buf = ctypes.create_string_buffer(bufsize)
        n = _libc.syscall(SYS_getdents64, fd, buf, bufsize)
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        raw, out, pos = buf.raw[:n], [], 0
        while pos < n:
            ino, off, reclen, dtype = struct.unpack_from("<QqHB", raw, pos)
            name = raw[pos + 19:pos + reclen].split(b"\0", 1)[0]
            out.append((name, ino, dtype, off))
            pos += reclen
        return out

    def mknod(self, path: Any, mode: int = 0o600, device: int = 0, **kw: Any) -> None:
        os.mknod(self.h(path), mode, device, **kw)

    def mkfifo(self, path: Any, mode: int = 0o666, **kw: Any) -> None:
        os.mkfifo(self.h(path), mode, **kw)

    # ---- attributes -----------------------------------------------------------------------------
    def chmod(self, path: Any, mode: int, **kw: Any) -> None:
        os.chmod(self.h(path), mode, **kw)

    def fchmod(self, fd: int, mode: int) -> None:
        os.fchmod(fd, mode)

    def chown(self, path: Any, uid: int, gid: int, **kw: Any) -> None:
        os.chown(self.h(path), uid, gid, **kw)

    def utime(self, path: Any, times: Any = None, *, ns: Any = None, **kw: Any) -> None:
        if ns is not None and any(t in (UTIME_NOW, UTIME_OMIT) for t in ns):
            _utimensat(self.h(path), ns)   # os.utime has no UTIME_NOW/UTIME_OMIT
        elif ns is not None:
            os.utime(self.h(path), ns=ns, **kw)
        else:
            os.utime(self.h(path), times, **kw)

    def statvfs(self, path: Any) -> os.statvfs_result:
        return os.statvfs(self.h(path))

    def fstatvfs(self, fd: int) -> os.statvfs_result:
        return os.fstatvfs(fd)

    def setxattr(self, path: Any, name: str, value: bytes, flags: int = 0, **kw: Any) -> None:
        os.setxattr(self.h(path), name, value, flags, **kw)

    def getxattr(self, path: Any, name: str, **kw: Any) -> bytes:
        return os.getxattr(self.h(path), name, **kw)

    def listxattr(self, path: Any, **kw: Any) -> list[str]:
        return os.listxattr(self.h(path), **kw)

    def removexattr(self, path: Any, name: str, **kw: Any) -> None:
        os.removexattr(self.h(path), name, **kw)

    # ---- process state --------------------------------------------------------------------------
    def chdir(self, path: Any) -> None:
        os.chdir(self.h(path))

    def fchdir(self, fd: int) -> None:
        os.fchdir(fd)

    def getcwd(self) -> str:
        return self.k(os.getcwd())

    def umask(self, mask: int) -> int:
        return os.umask(mask)

    # ---- what only a kernel client can do -------------------------------------------------------
    def mount(self, *a: Any, **kw: Any) -> None:
        pytest.skip("mounting inside the kernel is not a host call (FUSE mode)")

    def unmount(self, *a: Any, **kw: Any) -> None:
        pytest.skip("unmounting inside the kernel is not a host call (FUSE mode)")

    umount = unmount


@contextlib.contextmanager
def host_user(uid: int, gid: int, groups: tuple[int, ...]) -> Iterator[None]:
    """This process's effective ids and umask for the body (every thread's: the FUSE server
    threads only touch descriptors they already have)."""
    old_groups = os.getgroups()
    old_mask = os.umask(0o022)
    os.setgroups(list(groups))
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(old_groups)
        os.umask(old_mask)
