"""Copying files and trees between the host and a kernel, or inside a kernel (``cp`` semantics).

Interface:
    HostSide()              the host's file system (through ``hypercall.hostio``)
    KernelSide(sys)         a kernel's, through its ``sys`` facade
    Copier(src_side, dst_side, *, recursive=False, preserve=False, owners=None,
           follow_symlinks=None, progress=None, onerror=None, umask=0o022, sync=False,
           done=None)
        .copy(src, dst) -> None         one source; ``dst`` an existing directory means "into it"
        .files, .bytes                  counts of what was copied
    tree_size(side, path, recursive) -> (files, bytes)   what a copy will move (for progress)

Semantics follow ``cp``: without ``recursive`` a directory source is an error (EISDIR) and
symlinks are followed; with it, directories are copied whole and symlinks are copied as
symlinks.  ``preserve`` keeps permission bits, access/modification times (ns), owners (when
allowed: failures to set owners or modes the destination cannot hold are ignored, as ``cp -p``
does) and hard links among the copied files.  ``owners`` forces (uid, gid) on everything
created.  Device nodes and fifos are recreated; sockets are skipped through ``onerror``.

Every regular file is written under a temporary name in its destination directory and renamed
into place only when complete, so a failure (ENOSPC, EIO, a read error on the source) never
leaves a half-written file under the real name; the temporary is removed.  ``onerror(exc)``
receives each per-entry ``OSError`` (the copy continues); without it the first error is raised.
``progress(n)`` is called with the byte count of each chunk written.

``sync``: every entry is durable before the next one starts -- a file is fsync'd under its
temporary name (data and attributes), renamed, and its directory fsync'd (a new directory:
its parent fsync'd), so a copy killed at any moment keeps every entry it had finished.
``done(dst)`` is called after each entry is in place (and durable, with ``sync``).  The
destination side needs ``fsync(path)`` for ``sync``.
"""

from __future__ import annotations

import errno
import itertools
import posixpath
import stat as S
from collections.abc import Callable
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.client.files.names import temp_path
from rumpkernel.hypercall import hostio
from rumpkernel.kern import abi as K

CHUNK = 1 << 20
_IGNORABLE = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL,
                        errno.ENOSYS})
_tmp_counter = itertools.count()


class HostSide:
    """The host file system as a copy endpoint."""

    name = "host"

    def __init__(self) -> None:
        self.h = hostio.HOST

    def lstat(self, p: Any) -> Any:
        return self.h.lstat(p)

    def stat(self, p: Any) -> Any:
        return self.h.stat(p)

    def names(self, p: Any) -> list[Any]:
        return [e.name for e in self.h.scandir(p)]

    def readlink(self, p: Any) -> Any:
        return self.h.readlink(p)

    def open_read(self, p: Any) -> Any:
        return self.h.open_read(p)

    def open_write(self, p: Any, mode: int) -> Any:
        return self.h.open_write(p, mode)

    def mkdir(self, p: Any, mode: int) -> None:
        self.h.mkdir(p, mode)

    def symlink(self, target: Any, p: Any) -> None:
        self.h.symlink(target, p)

    def link(self, src: Any, dst: Any) -> None:
        self.h.link(src, dst)

    def mknod(self, p: Any, mode: int, rdev: int) -> None:
        self.h.mknod(p, mode, rdev)

    def chmod(self, p: Any, mode: int, follow: bool) -> None:
        self.h.chmod(p, mode, follow)

    def chown(self, p: Any, uid: int, gid: int, follow: bool) -> None:
        self.h.chown(p, uid, gid, follow)

    def utime(self, p: Any, ns: tuple[int, int], follow: bool) -> None:
        self.h.utime(p, ns, follow)

    def replace(self, a: Any, b: Any) -> None:
        self.h.replace(a, b)

    def unlink(self, p: Any) -> None:
        self.h.unlink(p)


class _KernelWriter:
    """A minimal unbuffered file over a kernel descriptor.  ``wants_bytes``: a ``bytes``
    object passes into the kernel without a copy (copyin hands it over as is), so writers
    feed it whole ``bytes`` chunks rather than views of a reused buffer."""

    __slots__ = ("fd", "sys")
    wants_bytes = True

    def __init__(self, sys: Any, fd: int) -> None:
        self.sys, self.fd = sys, fd

    def write(self, b: Any) -> int:
        return self.sys.write(self.fd, b)

    def readinto(self, b: Any) -> int:
        return self.sys.readinto(self.fd, b)

    def read(self, n: int) -> bytes:
        return self.sys.read(self.fd, n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.sys.lseek(self.fd, pos, whence)

    def truncate(self, size: int) -> int:
        self.sys.ftruncate(self.fd, size)
        return size

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.sys.close(fd)

    def __enter__(self) -> _KernelWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KernelSide:
    """A kernel's file system (through its ``sys`` facade) as a copy endpoint."""

    name = "kernel"
    _RD = H.open_flags_to_host(K.O_RDONLY | K.O_CLOEXEC)
    _WR = H.open_flags_to_host(K.O_WRONLY | K.O_CREAT | K.O_EXCL | K.O_CLOEXEC)

    def __init__(self, sys: Any) -> None:
        self.sys = sys

    def lstat(self, p: Any) -> Any:
        return self.sys.lstat(p)

    def stat(self, p: Any) -> Any:
        return self.sys.stat(p)

    def names(self, p: Any) -> list[Any]:
        names = self.sys.listdir(p)
        return sorted(names, key=lambda n: n if isinstance(n, bytes) else H.fsencode(n))

    def readlink(self, p: Any) -> Any:
        return self.sys.readlink(p)

    def open_read(self, p: Any) -> Any:
        return _KernelWriter(self.sys, self.sys.open(p, self._RD))

    def open_write(self, p: Any, mode: int) -> Any:
        return _KernelWriter(self.sys, self.sys.open(p, self._WR, mode))

    def mkdir(self, p: Any, mode: int) -> None:
        self.sys.mkdir(p, mode)

    def symlink(self, target: Any, p: Any) -> None:
        self.sys.symlink(target, p)

    def link(self, src: Any, dst: Any) -> None:
        self.sys.link(src, dst, follow_symlinks=False)

    def mknod(self, p: Any, mode: int, rdev: int) -> None:
        self.sys.mknod(p, mode, rdev)

    def chmod(self, p: Any, mode: int, follow: bool) -> None:
        self.sys.chmod(p, mode, follow_symlinks=follow)

    def chown(self, p: Any, uid: int, gid: int, follow: bool) -> None:
        self.sys.chown(p, uid, gid, follow_symlinks=follow)

    def utime(self, p: Any, ns: tuple[int, int], follow: bool) -> None:
        self.sys.utime(p, ns=ns, follow_symlinks=follow)

    def replace(self, a: Any, b: Any) -> None:
        self.sys.rename(a, b)

    def fsync(self, p: Any) -> None:
        """Make the file or directory ``p`` durable (fsync(2) on a read-only descriptor)."""
        fd = self.sys.open(p, self._RD)
        try:
            self.sys.fsync(fd)
        finally:
            self.sys.close(fd)

    def unlink(self, p: Any) -> None:
        self.sys.unlink(p)


def _sparse(st: Any) -> bool:
    """Has the file holes (fewer 512-byte blocks allocated than its size needs)?"""
    blocks = getattr(st, "st_blocks", None)
    return bool(blocks is not None and st.st_size and blocks * 512 < st.st_size)


def _data_segments(f: Any, size: int) -> list[tuple[int, int]] | None:
    """The [start, end) ranges of ``f`` holding data, from SEEK_DATA/SEEK_HOLE; None when the
    file (or its file system) cannot say."""
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = f.seek(pos, H.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                break  # nothing but a hole is left
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ESPIPE):
                return None
            raise
        end = min(f.seek(start, H.SEEK_HOLE), size)
        if end <= start:
            return None
        out.append((start, end))
        pos = end
    return out


class _Window:
    """The next ``n`` bytes of a file, read through ``read``/``readinto``."""

    __slots__ = ("f", "left")

    def __init__(self, f: Any, n: int) -> None:
        self.f, self.left = f, n

    def read(self, n: int) -> bytes:
        data = self.f.read(min(n, self.left)) if self.left > 0 else b""
        self.left -= len(data)
        return data

    def readinto(self, b: Any) -> int:
        if self.left <= 0:
            return 0
        mv = memoryview(b)[:self.left]
        got = self.f.readinto(mv)
        self.left -= got
        return got


def _named(e: OSError, name: Any) -> OSError:
    """``e`` with ``filename`` set to ``name`` when it had none."""
    if e.filename is None and name is not None:
        e.filename = name
    return e


def tree_size(side: Any, path: Any, recursive: bool = True) -> tuple[int, int]:
    """(regular files, bytes) under ``path``; unreadable parts are not counted."""
    files = total = 0
    stack = [path]
    while stack:
        p = stack.pop()
        try:
            st = side.lstat(p) if recursive else side.stat(p)
        except OSError:
            continue
        if S.S_ISREG(st.st_mode):
            files += 1
            total += st.st_size
        elif S.S_ISDIR(st.st_mode) and recursive:
            try:
                stack.extend(posixpath.join(p, n) for n in side.names(p))
            except OSError:
                pass
    return files, total


class Copier:
    """One copy operation's options and state (see the module docstring)."""

    def __init__(self, src: Any, dst: Any, *, recursive: bool = False, preserve: bool = False,
                 owners: tuple[int, int] | None = None, follow_symlinks: bool | None = None,
                 progress: Callable[[int], None] | None = None,
                 onerror: Callable[[OSError], None] | None = None, umask: int = 0o022,
                 sync: bool = False, done: Callable[[Any], None] | None = None) -> None:
        self.src, self.dst = src, dst
        self.recursive = recursive
        self.preserve = preserve
        self.owners = owners
        self.follow = (not recursive) if follow_symlinks is None else follow_symlinks
        self.progress = progress
        self.onerror = onerror
        self.umask = umask
        self.sync = sync
        self.done = done
        self.links: dict[tuple[int, int], Any] = {}
        self.files = 0
        self.bytes = 0
        self.buf = bytearray(CHUNK)

    # ---- entry --------------------------------------------------------------------------
    def copy(self, src: Any, dst: Any) -> None:
        """Copy ``src`` to ``dst``, or into ``dst`` when it is an existing directory."""
        try:
            st = self.src.stat(src) if self.follow else self.src.lstat(src)
        except OSError as e:
            self._fail(e)
            return
        target = dst
        try:
            dst_st = self.dst.stat(dst)
        except OSError:
            dst_st = None
        if dst_st is not None and S.S_ISDIR(dst_st.st_mode):
            base = posixpath.basename(posixpath.normpath(src))
            if isinstance(base, str) != isinstance(dst, str):
                base = H.fsdecode(base) if isinstance(dst, str) else H.fsencode(base)
            target = posixpath.join(dst, base)
        if self.src is self.dst or type(self.src) is type(self.dst):
            try:
                t = self.dst.lstat(target)
            except OSError:
                t = None
            if t is not None and (t.st_dev, t.st_ino) == (st.st_dev, st.st_ino):
                self._fail(OSError(errno.EINVAL, "source and destination are the same file",
                                   src))
                return
        if S.S_ISDIR(st.st_mode):
            if not self.recursive:
                self._fail(IsADirectoryError(errno.EISDIR, "Is a directory (not copied; use -r)",
                                             src))
                return
            if self._inside(src, target):
                self._fail(OSError(errno.EINVAL, "cannot copy a directory into itself", src))
                return
        self._entry(src, target, st)

    def _inside(self, src: Any, target: Any) -> bool:
        if self.src is not self.dst and type(self.src) is not type(self.dst):
            return False
        a = posixpath.normpath(src)
        b = posixpath.normpath(target)
        return b == a or b.startswith(a.rstrip("/") + "/" if isinstance(a, str) else a + b"/")

    def _fail(self, e: OSError) -> None:
        if self.onerror is None:
            raise e
        self.onerror(e)

    # ---- one entry ------------------------------------------------------------------------
    def _entry(self, src: Any, dst: Any, st: Any) -> None:
        mode = st.st_mode
        try:
            if S.S_ISDIR(mode):
                self._dir(src, dst, st)
                return
            if self.preserve and st.st_nlink > 1 and not S.S_ISDIR(mode):
                first = self.links.get((st.st_dev, st.st_ino))
                if first is not None:
                    self._replace_with_link(first, dst)
                    return
                self.links[(st.st_dev, st.st_ino)] = dst
            if S.S_ISREG(mode):
                self._file(src, dst, st)
            elif S.S_ISLNK(mode):
                self._symlink(src, dst, st)
            elif S.S_ISCHR(mode) or S.S_ISBLK(mode) or S.S_ISFIFO(mode):
                self._node(dst, st)
            else:
                raise OSError(errno.EOPNOTSUPP, "socket not copied", src)
        except OSError as e:
            name = e.filename
            if isinstance(name, (str, bytes)) and name.endswith(
                    b".fsutmp" if isinstance(name, bytes) else ".fsutmp"):
                # name the file, not its temporary, in the message too
                words = e.strerror
                if isinstance(words, str):
                    tmp, real = posixpath.basename(name), posixpath.basename(dst)
                    if isinstance(tmp, bytes):
                        tmp, real = H.fsdecode(tmp), H.fsdecode(real)
                    words = words.replace(tmp, real)
                e = type(e)(e.errno, words, dst)
            self._fail(e)

    def _dir(self, src: Any, dst: Any, st: Any) -> None:
        try:
            dst_st = self.dst.lstat(dst)
        except FileNotFoundError:
            dst_st = None
        if dst_st is None:
            self.dst.mkdir(dst, 0o700 | (st.st_mode & 0o777))
            self._durable(None, dst)
        elif not S.S_ISDIR(dst_st.st_mode):
            raise FileExistsError(errno.EEXIST, "cannot overwrite non-directory with directory",
                                  dst)
        for name in self.src.names(src):
            s, d = posixpath.join(src, name), posixpath.join(dst, name)
            try:
                cst = self.src.lstat(s)
            except OSError as e:
                self._fail(e)
                continue
            self._entry(s, d, cst)
        self._attrs(dst, st, follow=True, created=dst_st is None)

    def _file(self, src: Any, dst: Any, st: Any) -> None:
        tmp = self._tmpname(dst)
        out = self.dst.open_write(tmp, 0o600)
        moved = 0
        try:
            with self.src.open_read(src) as fin:
                if _sparse(st):
                    moved = self._pump_sparse(fin, out, src, dst, st.st_size)
                else:
                    moved = self._pump(fin, out, src, dst)
            out.close()
            self._attrs(tmp, st, follow=True, created=True)
            if self.sync:
                self.dst.fsync(tmp)
            self.dst.replace(tmp, dst)
            self._durable(None, dst)
        except BaseException:
            self.bytes -= moved
            try:
                out.close()
            except OSError:
                pass
            try:
                self.dst.unlink(tmp)
            except OSError:
                pass
            raise
        self.files += 1
        if self.done is not None:
            self.done(dst)

    def _durable(self, node: Any, dst: Any) -> None:
        """With ``sync``: fsync ``node`` (None: nothing) and the directory holding ``dst``."""
        if self.sync:
            if node is not None:
                self.dst.fsync(node)
            self.dst.fsync(posixpath.dirname(dst) or (b"." if isinstance(dst, bytes) else "."))

    def _pump(self, fin: Any, out: Any, src: Any = None, dst: Any = None) -> int:
        """Copy ``fin`` to ``out``; returns the bytes moved.  An error names ``src`` (reading)
        or ``dst`` (writing) when it names no file itself."""
        progress = self.progress
        fresh = getattr(out, "wants_bytes", False) and hasattr(fin, "read")
        buf = self.buf
        mv = memoryview(buf)
        moved = 0
        try:
            while True:
                try:
                    if fresh:
                        data = fin.read(CHUNK)
                        n = len(data)
                        chunk = memoryview(data) if n else None
                    else:
                        n = fin.readinto(buf)
                        chunk = mv[:n]
                except OSError as e:
                    raise _named(e, src) from None
                if not n:
                    break
                try:
                    if fresh:
                        w = out.write(data)
                        chunk = chunk[w:] if w != n else None  # type: ignore[index]
                    while chunk:
                        w = out.write(chunk)
                        if not w:
                            raise OSError(errno.EIO, "short write")
                        chunk = chunk[w:]
                except OSError as e:
                    raise _named(e, dst) from None
                self.bytes += n
                moved += n
                if progress is not None:
                    progress(n)
        except BaseException:
            self.bytes -= moved
            raise
        return moved

    def _pump_sparse(self, fin: Any, out: Any, src: Any, dst: Any, size: int) -> int:
        """Copy only the data of a file with holes (SEEK_DATA/SEEK_HOLE on ``fin``): the
        holes stay holes in ``out``, as ``cp --sparse=auto`` keeps them.  Falls back to a
        whole copy when ``fin`` cannot say where its data is."""
        try:
            segments = _data_segments(fin, size)
        except OSError:
            segments = None
        if segments is None:
            fin.seek(0)
            return self._pump(fin, out, src, dst)
        moved = 0
        for start, end in segments:
            try:
                fin.seek(start)
            except OSError as e:
                raise _named(e, src) from None
            try:
                out.seek(start)
            except OSError as e:
                raise _named(e, dst) from None
            moved += self._pump(_Window(fin, end - start), out, src, dst)
        try:
            out.truncate(size)  # a hole at the end
        except OSError as e:
            raise _named(e, dst) from None
        return moved

    def _tmpname(self, dst: Any) -> Any:
        return temp_path(dst, f"{next(_tmp_counter)}.fsutmp")

    def _install(self, dst: Any, make: Any, st: Any | None) -> None:
        """Create the new node under a temporary name with ``make(tmp)``, give it ``st``'s
        attributes (unless None) and rename it over ``dst``; on any failure the temporary goes
        away and ``dst`` is untouched."""
        tmp = self._tmpname(dst)
        make(tmp)
        try:
            if st is not None:
                self._attrs(tmp, st, follow=False, created=True)
            self.dst.replace(tmp, dst)
            self._durable(None, dst)
        except BaseException:
            try:
                self.dst.unlink(tmp)
            except OSError:
                pass
            raise
        if self.done is not None:
            self.done(dst)

    def _symlink(self, src: Any, dst: Any, st: Any) -> None:
        target = self.src.readlink(src)
        if isinstance(target, str) != isinstance(dst, str):
            target = H.fsdecode(target) if isinstance(dst, str) else H.fsencode(target)
        self._install(dst, lambda tmp: self.dst.symlink(target, tmp), st)

    def _node(self, dst: Any, st: Any) -> None:
        kind = S.S_IFMT(st.st_mode) | (st.st_mode & 0o777)
        self._install(dst, lambda tmp: self.dst.mknod(tmp, kind, st.st_rdev), st)

    def _replace_with_link(self, first: Any, dst: Any) -> None:
        self._install(dst, lambda tmp: self.dst.link(first, tmp), None)

    # ---- attributes -------------------------------------------------------------------------
    def _attrs(self, p: Any, st: Any, *, follow: bool, created: bool) -> None:
        is_link = S.S_ISLNK(st.st_mode)
        if self.owners is not None or self.preserve:
            uid, gid = self.owners if self.owners is not None else (st.st_uid, st.st_gid)
            self._best_effort(lambda: self.dst.chown(p, uid, gid, follow))
        if not is_link:
            if self.preserve:
                mode = S.S_IMODE(st.st_mode)
            elif created:
                mode = S.S_IMODE(st.st_mode) & ~self.umask
            else:
                mode = None
            if mode is not None:
                self._best_effort(lambda: self.dst.chmod(p, mode, follow))
        if self.preserve:
            ns = (st.st_atime_ns, st.st_mtime_ns)
            self._best_effort(lambda: self.dst.utime(p, ns, follow))

    @staticmethod
    def _best_effort(fn: Callable[[], None]) -> None:
        try:
            fn()
        except OSError as e:
            if e.errno not in _IGNORABLE:
                raise
