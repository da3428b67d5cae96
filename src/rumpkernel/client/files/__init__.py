"""The kernel file API: ``open``, ``listdir``, ``scandir``, ``walk``, ``path`` ... for a kernel,
shaped like the standard library's ``io``, ``os``, ``shutil`` and ``pathlib``.

Built only on a ``sys`` facade (``k.sys`` of a local kernel, or a remote connection's), so the
same code serves both.  ``rumpkernel.boot`` binds it to every kernel::

    k = rumpkernel.boot()
    k.mount_image("disk.img", "/mnt")
    with k.open("/mnt/etc/motd", "w") as f:          # io.TextIOWrapper
        f.write("hello\\n")
    for entry in k.scandir("/mnt"):                  # DirEntry-like, cached stat
        print(entry.name, entry.is_dir())
    (k.path("/mnt") / "docs").mkdir(parents=True, exist_ok=True)
    k.copy_in("README.md", "/mnt/docs")              # host -> kernel, cp semantics
    k.copy_out("/mnt/docs", "/tmp/out", recursive=True, preserve=True)

Interface (``FileAPI(sys)``; ``bind(obj, sys)`` puts the same methods on ``obj``):
    open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None,
         closefd=True, opener=None)                       -> io object, as ``io.open``
    listdir(path=".") / scandir(path=".") / walk(top, topdown, onerror, followlinks)
    makedirs(name, mode=0o777, exist_ok=False) / remove(path) / unlink(path) / rmdir(path)
    rmtree(path, ignore_errors=False, onerror=None) / rename(src, dst) / replace(src, dst)
    stat(path, follow_symlinks=True) / lstat(path) / exists(path) / isdir / isfile / islink
    copy_in(host_src, dst, *, recursive=True, preserve=False, progress=None, onerror=None)
    copy_out(src, host_dst, *, recursive=True, preserve=False, progress=None, onerror=None)
    copy(src, dst, *, recursive=False, preserve=False)       inside the kernel, cp semantics
    copyfileobj(fsrc, fdst, length=1 MiB)                    shutil.copyfileobj
    path(*segments) -> KernelPath                            pathlib-style object
Errors: the host's OSError subclasses with the path in ``filename``.
"""

from __future__ import annotations

import importlib
import stat as S
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkernel.client.abi import fspath

if TYPE_CHECKING:
    from rumpkernel.client.files.copy import Copier
    from rumpkernel.client.files.path import KernelPath
    from rumpkernel.client.files.tree import ScandirIterator

__all__ = ["API_NAMES", "FileAPI", "KernelDirEntry", "KernelFileIO", "KernelPath", "bind",
           "tree_size"]
CHUNK = 1 << 20
# The submodules load on first use, so a kernel that never opens a file pays nothing for them.
_LAZY = {"KernelDirEntry": "tree", "KernelFileIO": "fileio", "KernelPath": "path",
         "tree_size": "copy", "Copier": "copy", "HostSide": "copy", "KernelSide": "copy"}


def _mod(name: str) -> Any:
    return importlib.import_module(f"rumpkernel.client.files.{name}")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(_mod(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

API_NAMES = ("open", "listdir", "scandir", "walk", "makedirs", "remove", "unlink", "rmdir",
             "rmtree", "rename", "replace", "exists", "isdir", "isfile", "islink", "copy_in",
             "copy_out", "copy", "copyfileobj", "path")


class FileAPI:
    """The file API over one ``sys`` facade (see the module docstring)."""

    names = frozenset(API_NAMES)     # what a kernel object delegates to its ``files`` slot

    def __init__(self, sys: Any) -> None:
        self.sys = sys

    def open(self, file: Any, mode: str = "r", buffering: int = -1,
             encoding: str | None = None, errors: str | None = None,
             newline: str | None = None, closefd: bool = True, opener: Any = None) -> Any:
        return _mod("fileio").open_file(self.sys, file, mode, buffering, encoding, errors,
                                        newline, closefd, opener)

    def listdir(self, path: Any = ".") -> list[Any]:
        return _mod("tree").listdir(self.sys, path)

    def scandir(self, path: Any = ".") -> ScandirIterator:
        return _mod("tree").scandir(self.sys, path)

    def walk(self, top: Any, topdown: bool = True, onerror: Any = None,
             followlinks: bool = False) -> Any:
        return _mod("tree").walk(self.sys, top, topdown, onerror, followlinks)

    def makedirs(self, name: Any, mode: int = 0o777, exist_ok: bool = False) -> None:
        _mod("tree").makedirs(self.sys, name, mode, exist_ok)

    def remove(self, path: Any) -> None:
        self.sys.unlink(path)

    unlink = remove

    def rmdir(self, path: Any) -> None:
        self.sys.rmdir(path)

    def rmtree(self, path: Any, ignore_errors: bool = False, onerror: Any = None) -> None:
        _mod("tree").rmtree(self.sys, path, ignore_errors, onerror)

    def rename(self, src: Any, dst: Any) -> None:
        self.sys.rename(src, dst)

    def replace(self, src: Any, dst: Any) -> None:
        self.sys.rename(src, dst)

    def stat(self, path: Any, *, follow_symlinks: bool = True) -> Any:
        return self.sys.stat(path, follow_symlinks=follow_symlinks)

    def lstat(self, path: Any) -> Any:
        return self.sys.lstat(path)

    def _mode(self, path: Any, follow: bool = True) -> int | None:
        try:
            return self.sys.stat(path, follow_symlinks=follow).st_mode
        except (OSError, ValueError):
            return None

    def exists(self, path: Any) -> bool:
        return self._mode(path) is not None

    def isdir(self, path: Any) -> bool:
        m = self._mode(path)
        return m is not None and S.S_ISDIR(m)

    def isfile(self, path: Any) -> bool:
        m = self._mode(path)
        return m is not None and S.S_ISREG(m)

    def islink(self, path: Any) -> bool:
        m = self._mode(path, False)
        return m is not None and S.S_ISLNK(m)

    def _copy(self, src_side: Any, dst_side: Any, src: Any, dst: Any, recursive: bool,
              preserve: bool, progress: Callable[[int], None] | None,
              onerror: Callable[[OSError], None] | None, **kw: Any) -> Copier:
        c = _mod("copy").Copier(src_side, dst_side, recursive=recursive, preserve=preserve,
                   progress=progress, onerror=onerror, **kw)
        c.copy(src, dst)
        return c

    def copy_in(self, host_src: Any, dst: Any, *, recursive: bool = True,
                preserve: bool = False, progress: Callable[[int], None] | None = None,
                onerror: Callable[[OSError], None] | None = None, **kw: Any) -> Copier:
        """Copy a host file or tree into the kernel (``cp [-r] [-p] host_src dst``)."""
        cp = _mod("copy")
        return self._copy(cp.HostSide(), cp.KernelSide(self.sys), fspath(host_src), fspath(dst),
                          recursive, preserve, progress, onerror, **kw)

    def copy_out(self, src: Any, host_dst: Any, *, recursive: bool = True,
                 preserve: bool = False, progress: Callable[[int], None] | None = None,
                 onerror: Callable[[OSError], None] | None = None, **kw: Any) -> Copier:
        """Copy a kernel file or tree to the host (``cp [-r] [-p] src host_dst``)."""
        cp = _mod("copy")
        return self._copy(cp.KernelSide(self.sys), cp.HostSide(), fspath(src), fspath(host_dst),
                          recursive, preserve, progress, onerror, **kw)

    def copy(self, src: Any, dst: Any, *, recursive: bool = False, preserve: bool = False,
             progress: Callable[[int], None] | None = None,
             onerror: Callable[[OSError], None] | None = None, **kw: Any) -> Copier:
        """Copy inside the kernel (``cp [-r] [-p] src dst``)."""
        side = _mod("copy").KernelSide(self.sys)
        return self._copy(side, side, fspath(src), fspath(dst), recursive, preserve, progress,
                          onerror, **kw)

    @staticmethod
    def copyfileobj(fsrc: Any, fdst: Any, length: int = CHUNK) -> None:
        while True:
            buf = fsrc.read(length)
            if not buf:
                break
            fdst.write(buf)

    def path(self, *segments: Any) -> KernelPath:
        return _mod("path").KernelPath(self, *segments)


def bind(obj: Any, sys: Any) -> FileAPI:
    """Put the file API's methods on ``obj`` (a kernel or a remote connection) and return the
    ``FileAPI``; also reachable as ``obj.files``."""
    api = FileAPI(sys)
    obj.files = api
    for name in API_NAMES:
        setattr(obj, name, getattr(api, name))
    return api
