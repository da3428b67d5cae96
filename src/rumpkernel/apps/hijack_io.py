"""File objects and directory entries over kernel descriptors, for the hijack (apps/hijack.py).

``RumpFileIO`` is a raw file (``io.RawIOBase``) whose reads and writes are kernel system calls;
``open_kernel_file`` builds the same buffered/text stack ``io.open`` builds over it.
``RumpDirEntry`` / ``RumpScandir`` are what ``os.scandir`` returns for kernel directories.
Descriptors seen by the program are kernel descriptors plus the hijack's offset.
"""

from __future__ import annotations

import io
import os
import stat as st
from typing import Any

READ_CHUNK = 1 << 20
BUFSIZE = 1 << 16


def mode_flags(mode: str) -> tuple[int, bool, bool]:
    """``open()`` mode -> (os.O_* flags, readable, writable); ValueError as io.open."""
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    modes = set(mode)
    if modes - set("axrwb+t") or len(mode) > len(modes):
        raise ValueError(f"invalid mode: '{mode}'")
    kinds = sum(c in modes for c in "rwax")
    if kinds != 1 or ("t" in modes and "b" in modes) or mode.count("+") > 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    plus = "+" in modes
    if "r" in modes:
        flags = os.O_RDWR if plus else os.O_RDONLY
    else:
        flags = (os.O_RDWR if plus else os.O_WRONLY) | os.O_CREAT
        flags |= {"w": os.O_TRUNC, "x": os.O_EXCL, "a": os.O_APPEND}[
            next(c for c in "wxa" if c in modes)]
    readable = "r" in modes or plus
    writable = "r" not in modes or plus
    return flags | getattr(os, "O_CLOEXEC", 0), readable, writable


class RumpFileIO(io.RawIOBase):
    """A raw file over kernel descriptor ``kfd`` (visible to the program as ``fd``)."""

    def __init__(self, sys: Any, kfd: int, fd: int, name: Any, mode: str, readable: bool,
                 writable: bool, closefd: bool = True) -> None:
        super().__init__()
        self._sys = sys
        self._kfd = kfd
        self._fd = fd
        self.name = name
        self.mode = mode
        self._readable = readable
        self._writable = writable
        self._closefd = closefd

    def fileno(self) -> int:
        return self._fd

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        try:
            self._sys.lseek(self._kfd, 0, os.SEEK_CUR)
        except OSError:
            return False
        return True

    def isatty(self) -> bool:
        return False

    def readinto(self, b: Any) -> int:
        self._checkClosed()
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        return self._sys.readinto(self._kfd, b)

    def readall(self) -> bytes:
        parts = []
        while True:
            data = self._sys.read(self._kfd, READ_CHUNK)
            if not data:
                return b"".join(parts)
            parts.append(data)

    def write(self, b: Any) -> int:
        self._checkClosed()
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        return self._sys.write(self._kfd, b)

    def seek(self, pos: int, whence: int = 0) -> int:
        self._checkClosed()
        return self._sys.lseek(self._kfd, pos, whence)

    def tell(self) -> int:
        return self.seek(0, os.SEEK_CUR)

    def truncate(self, size: int | None = None) -> int:
        if size is None:
            size = self.tell()
        self._sys.ftruncate(self._kfd, size)
        return size

    def close(self) -> None:
        if not self.closed:
            try:
                super().close()
            finally:
                if self._closefd:
                    self._sys.close(self._kfd)

    def __repr__(self) -> str:
        return f"<RumpFileIO name={self.name!r} mode={self.mode!r} fd={self._fd}>"


def wrap(raw: RumpFileIO, mode: str, buffering: int, encoding: str | None, errors: str | None,
         newline: str | None) -> Any:
    """The buffered (and text) layers ``io.open`` would put over ``raw``."""
    binary = "b" in mode
    if binary and encoding is not None:
        raise ValueError("binary mode doesn't take an encoding argument")
    line_buffering = False
    if buffering == 1:
        buffering, line_buffering = -1, True
    if buffering < 0:
        buffering = BUFSIZE
    if buffering == 0:
        if binary:
            return raw
        raise ValueError("can't have unbuffered text I/O")
    buf: Any
    if "+" in mode:
        buf = io.BufferedRandom(raw, buffering)
    elif raw.writable():
        buf = io.BufferedWriter(raw, buffering)
    else:
        buf = io.BufferedReader(raw, buffering)
    if binary:
        return buf
    text = io.TextIOWrapper(buf, io.text_encoding(encoding), errors, newline, line_buffering)
    text.mode = mode  # type: ignore[misc]
    return text


class RumpDirEntry:
    """``os.DirEntry`` for a kernel directory entry."""

    __slots__ = ("_dir_fd", "_kpath", "_lstat", "_stat", "_sys", "_type", "inode_", "name",
                 "path")

    def __init__(self, sys: Any, parent: Any, name: Any, ino: int, dtype: int,
                 dir_kfd: int | None) -> None:
        self._sys = sys
        self.name = name
        if dir_kfd is None:
            sep = b"/" if isinstance(parent, bytes) else "/"
            self.path = parent + name if parent.endswith(sep) else parent + sep + name
        else:
            self.path = name
        self._dir_fd = dir_kfd
        self.inode_ = ino
        self._type = dtype
        self._stat: Any = None
        self._lstat: Any = None
        self._kpath: Any = None

    def inode(self) -> int:
        return self.inode_

    def _kstat(self, follow: bool) -> Any:
        return self._sys.stat(self.name if self._dir_fd is not None else self._kpath,
                              dir_fd=self._dir_fd, follow_symlinks=follow)

    def stat(self, *, follow_symlinks: bool = True) -> Any:
        if follow_symlinks:
            if self._stat is None:
                self._stat = self._kstat(True) if self.is_symlink() else self.stat(
                    follow_symlinks=False)
            return self._stat
        if self._lstat is None:
            self._lstat = self._kstat(False)
        return self._lstat

    def _mode(self, follow: bool) -> int:
        if self._type and not (follow and self._type == 10):
            return self._type << 12
        try:
            return self.stat(follow_symlinks=follow).st_mode
        except FileNotFoundError:
            return 0

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return st.S_ISDIR(self._mode(follow_symlinks))

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return st.S_ISREG(self._mode(follow_symlinks))

    def is_symlink(self) -> bool:
        return st.S_ISLNK(self._mode(False))

    def is_junction(self) -> bool:
        return False

    def __fspath__(self) -> Any:
        return self.path

    def __repr__(self) -> str:
        return f"<RumpDirEntry {self.name!r}>"


class RumpScandir:
    """The iterator ``os.scandir`` returns, over a kernel directory."""

    def __init__(self, sys: Any, kfd: int, shown: Any, kparent: Any, by_fd: bool) -> None:
        self._sys = sys
        self._kfd = kfd
        self._shown = shown
        self._kparent = kparent
        self._by_fd = by_fd
        self._batch: list[Any] = []
        self._closed = False
        if by_fd:
            sys.lseek(kfd, 0, os.SEEK_SET)

    def __iter__(self) -> RumpScandir:
        return self

    def __next__(self) -> RumpDirEntry:
        while not self._batch:
            if self._closed:
                raise StopIteration
            self._batch = self._sys.getdents(self._kfd)
            if not self._batch:
                self.close()
                raise StopIteration
            self._batch.reverse()
        while self._batch:
            name, ino, dtype, _off = self._batch.pop()
            if name in (b".", b".."):
                continue
            shown = name if isinstance(self._shown, bytes) else os.fsdecode(name)
            e = RumpDirEntry(self._sys, self._shown, shown, ino, dtype,
                             self._kfd if self._by_fd else None)
            if not self._by_fd:
                sep = b"/" if isinstance(self._kparent, bytes) else "/"
                kp = self._kparent
                e._kpath = (kp if kp.endswith(sep) else kp + sep) + shown
            return e
        return self.__next__()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._by_fd:
                self._sys.close(self._kfd)

    def __enter__(self) -> RumpScandir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
