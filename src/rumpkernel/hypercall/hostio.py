"""What client libraries need from the host's ``io`` stack and file system (a client companion).

The client layer may not import host modules (DESIGN rule 1).  Two client features need the
host all the same: the kernel file API wraps kernel descriptors in the host's standard ``io``
classes (so ``tarfile``, ``zipfile``, ``shutil.copyfileobj`` take them), and ``copy_in`` /
``copy_out`` read and write host files.  This module is the narrow, versioned door for both.

Interface (VERSION 1):
    RawIOBase, BufferedReader, BufferedWriter, BufferedRandom, TextIOWrapper,
    UnsupportedOperation, DEFAULT_BUFFER_SIZE, text_encoding      -- from ``io``
    new_lock()                                                    -- a host lock
    halt_at_exit(kernel)          halt the kernel (flushing its file systems) when the
                                  interpreter exits, unless the program already did
    HOST                                                          -- a ``HostFiles``
    HostFiles methods: lstat, stat, scandir (sorted list of os.DirEntry), readlink,
        open_read (unbuffered binary file), open_write (new file, O_EXCL, unbuffered),
        mkdir, makedirs, symlink, link, mknod, chmod, chown, utime (ns), replace, unlink, rmdir,
        exists, isdir, abspath, getuid
Errors are the host's ``OSError`` subclasses, unchanged.
"""

from __future__ import annotations

import atexit
import io
import os
import threading
import weakref
from typing import Any

VERSION = 1

RawIOBase = io.RawIOBase
BufferedReader = io.BufferedReader
BufferedWriter = io.BufferedWriter
BufferedRandom = io.BufferedRandom
TextIOWrapper = io.TextIOWrapper
UnsupportedOperation = io.UnsupportedOperation
DEFAULT_BUFFER_SIZE = io.DEFAULT_BUFFER_SIZE
text_encoding = io.text_encoding
new_lock = threading.Lock  # for client-side tables shared by threads (fsspec instances)


class HostFiles:
    """Host file system calls used by copy_in/copy_out (paths are str or bytes)."""

    def lstat(self, path: Any) -> os.stat_result:
        return os.lstat(path)

    def stat(self, path: Any) -> os.stat_result:
        return os.stat(path)

    def scandir(self, path: Any) -> list[os.DirEntry]:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: os.fsencode(e.name))

    def readlink(self, path: Any) -> Any:
        return os.readlink(path)

    def open_read(self, path: Any) -> Any:
        return open(path, "rb", buffering=0)

    def open_write(self, path: Any, mode: int = 0o600) -> Any:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     mode)
        return open(fd, "wb", buffering=0)

    def mkdir(self, path: Any, mode: int = 0o777) -> None:
        os.mkdir(path, mode)

    def makedirs(self, path: Any, mode: int = 0o777, exist_ok: bool = False) -> None:
        os.makedirs(path, mode, exist_ok=exist_ok)

    def symlink(self, target: Any, path: Any) -> None:
        os.symlink(target, path)

    def link(self, src: Any, dst: Any) -> None:
        os.link(src, dst, follow_symlinks=False)

    def mknod(self, path: Any, mode: int, device: int = 0) -> None:
        os.mknod(path, mode, device)

    def chmod(self, path: Any, mode: int, follow_symlinks: bool = True) -> None:
        if not follow_symlinks and os.chmod not in os.supports_follow_symlinks:
            return
        os.chmod(path, mode, follow_symlinks=follow_symlinks)

    def chown(self, path: Any, uid: int, gid: int, follow_symlinks: bool = True) -> None:
        os.chown(path, uid, gid, follow_symlinks=follow_symlinks)

    def utime(self, path: Any, ns: tuple[int, int], follow_symlinks: bool = True) -> None:
        os.utime(path, ns=ns, follow_symlinks=follow_symlinks)

    def replace(self, src: Any, dst: Any) -> None:
        os.replace(src, dst)

    def unlink(self, path: Any) -> None:
        os.unlink(path)

    def rmdir(self, path: Any) -> None:
        os.rmdir(path)

    def exists(self, path: Any) -> bool:
        return os.path.lexists(path)

    def isdir(self, path: Any) -> bool:
        return os.path.isdir(path)

    def abspath(self, path: Any) -> Any:
        return os.path.abspath(path)

    def getuid(self) -> int:
        return os.getuid() if hasattr(os, "getuid") else 0


HOST = HostFiles()


_LIVE_KERNELS: weakref.WeakSet[Any] = weakref.WeakSet()


def _halt_live_kernels() -> None:
    for k in list(_LIVE_KERNELS):
        if not k.dead:
            try:
                k.halt()
            except Exception as e:
                k.host.console_write(f"[{k.hostname}] halt at exit failed: {e}\n")


def halt_at_exit(kernel: Any) -> None:
    """Forgetting ``k.halt()`` must not lose writes: kernels still running when the
    interpreter exits are halted (synced and unmounted) by one exit hook.  Only a weak
    reference is kept, so the kernel can still be collected."""
    if not _LIVE_KERNELS:
        atexit.register(_halt_live_kernels)
    _LIVE_KERNELS.add(kernel)

