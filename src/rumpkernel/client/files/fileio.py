"""Kernel files as standard Python ``io`` objects: ``open`` over a ``sys`` facade.

Interface:
    KernelFileIO(sys, file, mode="r", closefd=True, opener=None)
        an ``io.RawIOBase`` over a kernel descriptor, behaving like ``io.FileIO``: ``name``,
        ``mode``, ``closefd``, ``readinto``, ``readall``, ``write``, ``seek``, ``tell``,
        ``truncate``, ``readable``/``writable``/``seekable``, ``close``.  ``kernel_fd`` is the
        kernel descriptor; ``fileno()`` raises ``io.UnsupportedOperation`` because the number
        means nothing to the host (no host call may be made on it by accident).
    open_file(sys, file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
              closefd=True, opener=None)
        ``io.open`` for kernel paths: binary modes give ``BufferedReader`` / ``BufferedWriter``
        / ``BufferedRandom`` (or the raw object with ``buffering=0``), text modes a
        ``TextIOWrapper``.  ``file`` is a path (str, bytes, PathLike) or a kernel descriptor.

Rules: mode strings are checked exactly as ``io.open`` checks them (ValueError, TypeError);
kernel failures raise the host's ``OSError`` subclasses with the path in ``filename``
(``FileNotFoundError``, ``IsADirectoryError``, ``FileExistsError``, ``PermissionError``...).
The default buffer is 128 KiB (a kernel call costs more than a host one, so fewer, larger calls
pay).  A file left open is closed when collected; if its kernel has halted by then, the close
is skipped quietly.
"""

from __future__ import annotations

import errno
import stat as S
import warnings
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.hypercall import hostio
from rumpkernel.kern import abi as K

DEFAULT_BUFFER = 128 * 1024
_MODE_CHARS = frozenset("axrwb+tU")


class KernelFileIO(hostio.RawIOBase):
    _fd = -1

    def __init__(self, sys: Any, file: Any, mode: str = "r", closefd: bool = True,
                 opener: Any = None) -> None:
        self._sys = sys
        self._fd = -1
        if isinstance(file, float):
            raise TypeError("integer argument expected, got float")
        fd = file if isinstance(file, int) else -1
        if isinstance(file, int) and fd < 0:
            raise ValueError("negative file descriptor")
        self._parse_mode(mode)
        owned = None
        try:
            if fd < 0:
                if not closefd:
                    raise ValueError("Cannot use closefd=False with file name")
                fd = self._open(file, opener)
                owned = fd
            self._closefd = closefd
            st = sys.fstat(fd)
            if S.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "Is a directory", file)
            self._blksize = max(st.st_blksize, DEFAULT_BUFFER)
            self.name = file
            if self._appending:
                try:
                    sys.lseek(fd, 0, H.SEEK_END)
                except OSError as e:
                    if e.errno != errno.ESPIPE:
                        raise
        except BaseException:
            if owned is not None:
                sys.close(owned)
            raise
        self._fd = fd

    def _parse_mode(self, mode: Any) -> None:
        if not isinstance(mode, str):
            raise TypeError(f"invalid mode: {mode}")
        if not set(mode) <= set("xrwab+"):
            raise ValueError(f"invalid mode: {mode}")
        if sum(c in "rwax" for c in mode) != 1 or mode.count("+") > 1:
            raise ValueError("Must have exactly one of create/read/write/append mode and at "
                             "most one plus")
        self._created = "x" in mode
        self._appending = "a" in mode
        self._readable = "r" in mode or "+" in mode
        self._writable = "r" not in mode or "+" in mode
        kflags = 0
        if self._created:
            kflags = K.O_EXCL | K.O_CREAT
        elif "w" in mode:
            kflags = K.O_CREAT | K.O_TRUNC
        elif self._appending:
            kflags = K.O_APPEND | K.O_CREAT
        if self._readable and self._writable:
            kflags |= K.O_RDWR
        elif self._writable:
            kflags |= K.O_WRONLY
        self._flags = H.open_flags_to_host(kflags | K.O_CLOEXEC)

    def _open(self, file: Any, opener: Any) -> int:
        if opener is None:
            return self._sys.open(file, self._flags, 0o666)
        fd = opener(file, self._flags)
        if not isinstance(fd, int):
            raise TypeError("expected integer from opener")
        if fd < 0:
            raise OSError(f"Negative file descriptor: {fd}")
        return fd

    # ---- what io.FileIO offers ------------------------------------------------------------
    @property
    def mode(self) -> str:
        if self._created:
            return "xb+" if self._readable else "xb"
        if self._appending:
            return "ab+" if self._readable else "ab"
        if self._readable:
            return "rb+" if self._writable else "rb"
        return "wb"

    @property
    def closefd(self) -> bool:
        return self._closefd

    @property
    def kernel_fd(self) -> int:
        self._checkClosed()
        return self._fd

    def __repr__(self) -> str:
        cls = f"{type(self).__module__}.{type(self).__qualname__}"
        if self.closed:
            return f"<{cls} [closed]>"
        return f"<{cls} name={self.name!r} mode={self.mode!r} closefd={self._closefd!r}>"

    def _checkClosed(self, msg: str | None = None) -> None:
        if self._fd < 0:
            raise ValueError(msg or "I/O operation on closed file")

    def _need(self, readable: bool) -> None:
        self._checkClosed()
        if readable and not self._readable:
            raise hostio.UnsupportedOperation("File not open for reading")
        if not readable and not self._writable:
            raise hostio.UnsupportedOperation("File not open for writing")

    def readable(self) -> bool:
        self._checkClosed()
        return self._readable

    def writable(self) -> bool:
        self._checkClosed()
        return self._writable

    def seekable(self) -> bool:
        self._checkClosed()
        if not hasattr(self, "_seekable"):
            try:
                self._sys.lseek(self._fd, 0, H.SEEK_CUR)
                self._seekable = True
            except OSError:
                self._seekable = False
        return self._seekable

    def isatty(self) -> bool:
        self._checkClosed()
        return False

    def fileno(self) -> int:
        raise hostio.UnsupportedOperation(
            "a kernel file has no host descriptor (use .kernel_fd with the kernel's sys)")

    def readinto(self, b: Any) -> int:
        self._need(True)
        mv = memoryview(b).cast("B")
        if not mv.nbytes:
            return 0
        return self._sys.readinto(self._fd, mv)

    def read(self, size: int | None = -1) -> bytes:
        self._need(True)
        if size is None or size < 0:
            return self.readall()
        return self._sys.read(self._fd, size)

    def readall(self) -> bytes:
        self._need(True)
        try:
            st = self._sys.fstat(self._fd)
            pos = self._sys.lseek(self._fd, 0, H.SEEK_CUR)
            want = max(st.st_size - pos, 0) + 1
        except OSError:
            want = DEFAULT_BUFFER
        chunks = []
        while True:
            data = self._sys.read(self._fd, max(want, 8192))
            if not data:
                break
            chunks.append(data)
            want = DEFAULT_BUFFER
        return b"".join(chunks)

    def write(self, b: Any) -> int:
        self._need(False)
        return self._sys.write(self._fd, b)

    def seek(self, pos: int, whence: int = 0) -> int:
        if isinstance(pos, float):
            raise TypeError("an integer is required")
        self._checkClosed()
        return self._sys.lseek(self._fd, pos, whence)

    def tell(self) -> int:
        self._checkClosed()
        return self._sys.lseek(self._fd, 0, H.SEEK_CUR)

    def truncate(self, size: int | None = None) -> int:
        self._need(False)
        if size is None:
            size = self.tell()
        self._sys.ftruncate(self._fd, size)
        return size

    def flush(self) -> None:
        self._checkClosed()

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            super().close()
        finally:
            fd, self._fd = self._fd, -1
            if self._closefd:
                self._sys.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __del__(self) -> None:
        if self._fd >= 0 and getattr(self, "_closefd", False):
            fd, self._fd = self._fd, -1
            try:
                self._sys.close(fd)
            except Exception:
                pass

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")


def _check_mode(mode: Any, buffering: int, encoding: Any, errors: Any, newline: Any) -> str:
    if not isinstance(mode, str):
        raise TypeError(f"invalid mode: {mode!r}")
    if not isinstance(buffering, int):
        raise TypeError(f"invalid buffering: {buffering!r}")
    for name, v in (("encoding", encoding), ("errors", errors), ("newline", newline)):
        if v is not None and not isinstance(v, str):
            raise TypeError(f"invalid {name}: {v!r}")
    modes = set(mode)
    if modes - _MODE_CHARS or len(mode) > len(modes) or "U" in modes:
        raise ValueError(f"invalid mode: {mode!r}")
    if sum(c in modes for c in "xrwa") != 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    binary, text = "b" in modes, "t" in modes
    if binary and text:
        raise ValueError("can't have text and binary mode at once")
    for name, v in (("encoding", encoding), ("errors", errors), ("newline", newline)):
        if binary and v is not None:
            raise ValueError(f"binary mode doesn't take an {name} argument")
    if newline not in (None, "", "\n", "\r", "\r\n"):
        raise ValueError(f"illegal newline value: {newline!r}")
    return "".join(c for c in "xrwa+" if c in modes)


def open_file(sys: Any, file: Any, mode: str = "r", buffering: int = -1,
              encoding: str | None = None, errors: str | None = None,
              newline: str | None = None, closefd: bool = True, opener: Any = None) -> Any:
    """``io.open`` for a kernel (see the module docstring)."""
    if not isinstance(file, int):
        file = H.fspath(file)
    rawmode = _check_mode(mode, buffering, encoding, errors, newline)
    binary = "b" in mode
    if buffering == 0 and not binary:
        raise ValueError("can't have unbuffered text I/O")
    if buffering == 1 and binary:
        warnings.warn("line buffering (buffering=1) isn't supported in binary mode, the default "
                      "buffer size will be used", RuntimeWarning, stacklevel=2)
        buffering = -1
    raw = KernelFileIO(sys, file, rawmode, closefd, opener)
    result: Any = raw
    try:
        line_buffering = buffering == 1 or (buffering < 0 and raw.isatty())
        if buffering == 1 or buffering < 0:
            buffering = raw._blksize
        if buffering == 0:
            return raw
        if raw.readable() and raw.writable():
            result = hostio.BufferedRandom(raw, buffering)
        elif raw.writable():
            result = hostio.BufferedWriter(raw, buffering)
        else:
            result = hostio.BufferedReader(raw, buffering)
        if binary:
            return result
        encoding = hostio.text_encoding(encoding)
        text = hostio.TextIOWrapper(result, encoding, errors, newline, line_buffering)
        result = text
        text.mode = mode
        return text
    except BaseException:
        result.close()
        raise
