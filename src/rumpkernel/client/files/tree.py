"""Directory walking over a ``sys`` facade: what ``os`` and ``shutil`` offer for host trees.

Interface (each takes the ``sys`` facade first; ``FileAPI`` binds it):
    listdir(sys, path=".")                    names, "." and ".." left out (bytes in, bytes out)
    scandir(sys, path=".")                    iterator of ``KernelDirEntry``; a context manager
    walk(sys, top, topdown=True, onerror=None, followlinks=False)    like ``os.walk``
    makedirs(sys, name, mode=0o777, exist_ok=False)                  like ``os.makedirs``
    rmtree(sys, path, ignore_errors=False, onerror=None)             like ``shutil.rmtree``

``KernelDirEntry`` behaves like ``os.DirEntry``: ``name``, ``path``, ``inode()``,
``is_dir()``/``is_file()``/``is_symlink()`` answered from the directory entry's type without a
system call when the file system reports it, ``stat()`` cached per entry, ``__fspath__``.
Errors are the host's OSError subclasses with the path in ``filename``.
"""

from __future__ import annotations

import errno
import posixpath
import stat as S
from collections.abc import Callable, Iterator
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.kern import abi as K

DT_UNKNOWN, DT_DIR, DT_REG, DT_LNK = 0, 4, 8, 10
_O_DIRECTORY = H.open_flags_to_host(K.O_RDONLY | K.O_DIRECTORY | K.O_CLOEXEC)


class KernelDirEntry:
    """One entry of ``scandir`` (see the module docstring)."""

    __slots__ = ("_dtype", "_ino", "_lstat", "_stat", "_sys", "name", "path")

    def __init__(self, sys: Any, dirpath: Any, name: Any, ino: int, dtype: int) -> None:
        self._sys = sys
        self.name = name
        self.path = posixpath.join(dirpath, name)
        self._ino = ino
        self._dtype = dtype
        self._stat: Any = None
        self._lstat: Any = None

    def __repr__(self) -> str:
        return f"<KernelDirEntry {self.name!r}>"

    def __fspath__(self) -> Any:
        return self.path

    def inode(self) -> int:
        return self._ino

    def stat(self, *, follow_symlinks: bool = True) -> Any:
        if not follow_symlinks or not self.is_symlink():
            if self._lstat is None:
                self._lstat = self._sys.lstat(self.path)
            return self._lstat
        if self._stat is None:
            self._stat = self._sys.stat(self.path)
        return self._stat

    def _test(self, mode_test: Callable[[int], bool], dtype: int, follow: bool) -> bool:
        if self._dtype != DT_UNKNOWN and not (follow and self._dtype == DT_LNK):
            return self._dtype == dtype
        try:
            return mode_test(self.stat(follow_symlinks=follow).st_mode)
        except FileNotFoundError:
            return False

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._test(S.S_ISDIR, DT_DIR, follow_symlinks)

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._test(S.S_ISREG, DT_REG, follow_symlinks)

    def is_symlink(self) -> bool:
        if self._dtype != DT_UNKNOWN:
            return self._dtype == DT_LNK
        return S.S_ISLNK(self.stat(follow_symlinks=False).st_mode)

    def is_junction(self) -> bool:
        return False


class ScandirIterator:
    """Iterator over a directory's entries; closes the kernel descriptor at the end, on
    ``close()`` or on leaving a ``with`` block."""

    def __init__(self, sys: Any, path: Any) -> None:
        self._sys = sys
        self._path = path
        self._bytes = isinstance(path, bytes)
        self._fd = sys.open(path, _O_DIRECTORY)
        self._batch: list[tuple[bytes, int, int, int]] = []
        self._pos = 0

    def __iter__(self) -> ScandirIterator:
        return self

    def __next__(self) -> KernelDirEntry:
        while True:
            if self._pos >= len(self._batch):
                if self._fd < 0:
                    raise StopIteration
                self._batch = self._sys.getdents(self._fd)
                self._pos = 0
                if not self._batch:
                    self.close()
                    raise StopIteration
            name, ino, dtype, _off = self._batch[self._pos]
            self._pos += 1
            if name in (b".", b".."):
                continue
            return KernelDirEntry(self._sys, self._path, name if self._bytes
                                  else H.fsdecode(name), ino, dtype)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self._sys.close(fd)

    def __enter__(self) -> ScandirIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def scandir(sys: Any, path: Any = ".") -> ScandirIterator:
    return ScandirIterator(sys, H.fspath(path))


def listdir(sys: Any, path: Any = ".") -> list[Any]:
    return sys.listdir(H.fspath(path))


def walk(sys: Any, top: Any, topdown: bool = True, onerror: Callable[[OSError], Any] | None = None,
         followlinks: bool = False) -> Iterator[tuple[Any, list[Any], list[Any]]]:
    """``os.walk`` over the kernel's name space (symlinks to directories are listed among the
    directories and not entered unless ``followlinks``)."""
    stack: list[Any] = [H.fspath(top)]
    while stack:
        top = stack.pop()
        if isinstance(top, tuple):
            yield top
            continue
        dirs, nondirs, walk_into = [], [], []
        try:
            with scandir(sys, top) as it:
                for entry in it:
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else nondirs).append(entry.name)
                    if is_dir and not topdown:
                        if followlinks or not entry.is_symlink():
                            walk_into.append(entry.path)
        except OSError as e:
            if onerror is not None:
                onerror(e)
            continue
        if topdown:
            yield top, dirs, nondirs
            for name in reversed(dirs):
                path = posixpath.join(top, name)
                if followlinks or not _islink(sys, path):
                    stack.append(path)
        else:
            stack.append((top, dirs, nondirs))
            stack.extend(reversed(walk_into))


def _islink(sys: Any, path: Any) -> bool:
    try:
        return S.S_ISLNK(sys.lstat(path).st_mode)
    except OSError:
        return False


def makedirs(sys: Any, name: Any, mode: int = 0o777, exist_ok: bool = False) -> None:
    name = H.fspath(name)
    head, tail = posixpath.split(name)
    if not tail:
        head, tail = posixpath.split(head)
    if head and tail and not _exists(sys, head):
        try:
            makedirs(sys, head, exist_ok=exist_ok)
        except FileExistsError:
            pass
        cdir = b"." if isinstance(tail, bytes) else "."
        if tail == cdir:
            return
    try:
        sys.mkdir(name, mode)
    except OSError:
        if not exist_ok or not _isdir(sys, name):
            raise


def _exists(sys: Any, path: Any) -> bool:
    try:
        sys.stat(path)
    except OSError:
        return False
    return True


def _isdir(sys: Any, path: Any) -> bool:
    try:
        return S.S_ISDIR(sys.stat(path).st_mode)
    except OSError:
        return False


def rmtree(sys: Any, path: Any, ignore_errors: bool = False,
           onerror: Callable[[Any, Any, Any], Any] | None = None) -> None:
    """Delete a directory tree; symlinks are removed, never followed.  A symlink as ``path``
    is refused with OSError, as ``shutil.rmtree`` does."""
    path = H.fspath(path)

    def fail(func: Any, p: Any, exc: BaseException) -> None:
        if ignore_errors:
            return
        if onerror is None:
            raise exc
        onerror(func, p, (type(exc), exc, exc.__traceback__))

    try:
        st = sys.lstat(path)
    except OSError as e:
        fail(sys.lstat, path, e)
        return
    if S.S_ISLNK(st.st_mode):
        fail(sys.lstat, path, OSError(errno.ELOOP, "Cannot call rmtree on a symbolic link",
                                       path))
        return
    _rmtree_inner(sys, path, fail)
    try:
        sys.rmdir(path)
    except OSError as e:
        fail(sys.rmdir, path, e)


def _rmtree_inner(sys: Any, path: Any, fail: Callable[[Any, Any, BaseException], None]) -> None:
    try:
        with scandir(sys, path) as it:
            entries = list(it)
    except OSError as e:
        fail(scandir, path, e)
        return
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            _rmtree_inner(sys, entry.path, fail)
            try:
                sys.rmdir(entry.path)
            except OSError as e:
                fail(sys.rmdir, entry.path, e)
        else:
            try:
                sys.unlink(entry.path)
            except OSError as e:
                fail(sys.unlink, entry.path, e)
