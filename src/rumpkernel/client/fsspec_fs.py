"""An fsspec file system for files inside disk images: ``rumpkernel://IMAGE::/path/in/image``.

    import fsspec, pandas
    with fsspec.open("rumpkernel://disk.img::/etc/hostname", "r") as f:
        print(f.read())
    df = pandas.read_csv("rumpkernel://data.img%1::/tables/x.csv")
    fs = fsspec.filesystem("rumpkernel", image="disk.img")      # bound to one image
    fs.ls("/etc"); fs.cat("/etc/hostname"); fs.glob("/var/log/*.log")

Registered as the ``rumpkernel`` protocol through the ``fsspec.specs`` entry point (install
the ``fsspec`` extra).  IMAGE is ``FILE``, ``FILE@OFFSET`` or ``FILE%N`` (see
``client.files.imagespec``).  Three spellings reach a file:
  * ``rumpkernel://IMAGE::/inner`` -- the image first (fsspec splits at ``::`` and hands this
    class the inner path as ``fo``; the image is then the path it is asked to open);
  * ``rumpkernel:///inner::IMAGE`` -- fsspec's own chaining order (``fo`` is the image);
  * paths ``IMAGE::/inner`` on an unbound instance, or ``/inner`` with ``image=``.
Whichever of the two names is a disk image (it has an ext superblock, a FAT boot sector or a
partition table) is taken as the image.

Each image gets its own kernel, booted on first use, with the image mounted read-only and made
the process root (absolute symlinks inside the image resolve inside it).  ``readonly=False``
mounts it writable: files opened for writing go through the kernel's driver, and every close
of a written file syncs the file system to the image; the kernels are halted (unmounting
cleanly) by ``close()`` or at interpreter exit.  Never let two writers -- two processes, or
fsspec and a loop mount -- open one image at the same time.
Errors are the host's OSError subclasses (FileNotFoundError ...).
"""

from __future__ import annotations

import errno
import stat as S
import weakref
from typing import Any

from fsspec.spec import AbstractFileSystem

from rumpkernel.client import abi as H
from rumpkernel.client.files.imagespec import ImageSpec, parse_image_spec
from rumpkernel.client.files.sniff import check_image_file, identify
from rumpkernel.hypercall.hostio import HOST, new_lock

MOUNTPOINT = "/image"
_EXT_MAGIC_AT = 1080


def looks_like_image(text: str) -> bool:
    """True when ``text`` names (a window of) a host file carrying a file system signature
    the kernel knows, or a partition table."""
    try:
        spec = parse_image_spec(text)
    except ValueError:
        return False
    if not HOST.exists(spec.path) or HOST.isdir(spec.path):
        return False
    ident = identify(spec.path, spec.offset if spec.partition is None else 0)
    return ident is not None and ident.mountable


def not_an_image(text: str) -> OSError:
    """The error for a path given as the image that is not one: missing, not a regular file,
    a container or compressed file (saying how to convert it), or no file system at all."""
    try:
        spec = parse_image_spec(text)
    except ValueError as e:
        return OSError(errno.EINVAL, str(e), text)
    if not HOST.exists(spec.path):
        return FileNotFoundError(errno.ENOENT, "No such file or directory (the image file)",
                                 spec.path)
    try:
        check_image_file(spec.path)
    except OSError as e:
        return e
    ident = identify(spec.path, spec.offset)
    if ident is not None and ident.hint:
        return OSError(errno.EINVAL, f"{ident.what}, not a raw disk image: "
                       f"{ident.hint.replace('IMAGE', spec.path)}", spec.path)
    return OSError(errno.EINVAL, "not a disk image: no ext2/3/4 or FAT file system and no "
                   "partition table found", spec.path)


class _Image:
    """One booted kernel with one image mounted and chrooted into."""

    def __init__(self, spec: ImageSpec, readonly: bool, fstype: str | None) -> None:
        import rumpkernel

        self.spec = spec
        self.readonly = readonly
        check_image_file(spec.path)
        self.k = rumpkernel.boot()
        try:
            self.fstype = self.k.mount_image(H.fsdecode(_abspath(spec.path)), MOUNTPOINT,
                                             fstype=fstype, readonly=readonly,
                                             partition=spec.partition, offset=spec.offset)
        except OSError as e:
            self.k.halt()
            raise OSError(e.errno, e.strerror, spec.text) from None
        self.sys = self.k.sys
        self.sys.chroot(MOUNTPOINT)
        self.sys.chdir("/")

    def close(self) -> None:
        if not self.k.dead:
            self.k.halt()


def _abspath(path: str) -> str:
    return HOST.abspath(path)


def _halt_all(images: dict[str, _Image]) -> None:
    for img in list(images.values()):
        try:
            img.close()
        except Exception:
            pass
    images.clear()


class RumpkernelFileSystem(AbstractFileSystem):
    """fsspec file system over disk images (see the module docstring)."""

    protocol = ("rumpkernel",)
    root_marker = "/"
    cachable = True

    def __init__(self, fo: str | None = None, target_protocol: str | None = None,
                 target_options: dict[str, Any] | None = None, image: str | None = None,
                 readonly: bool = True, fstype: str | None = None, auto_mkdir: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.auto_mkdir = auto_mkdir
        if target_protocol not in (None, "file", "local"):
            raise ValueError("rumpkernel: images must be host files (got target protocol "
                             f"{target_protocol!r})")
        self.readonly = readonly
        self.fstype = fstype
        self.image = image
        self.inner: str | None = None
        if fo:
            if image is None and looks_like_image(fo):
                self.image = fo
            else:
                self.inner = fo
        self._images: dict[str, _Image] = {}
        self._lock = new_lock()
        self._finalizer = weakref.finalize(self, _halt_all, self._images)

    # ---- paths --------------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = H.fspath(path)
        if path.startswith("rumpkernel://"):
            path = path[len("rumpkernel://"):]
        return path or "/"

    def _split(self, path: str) -> tuple[str, str]:
        path = self._strip_protocol(path)
        if "::" in path:
            img, _, inner = path.partition("::")
        elif self.image is not None:
            img, inner = self.image, path
        elif self.inner is not None:
            # rumpkernel://IMAGE::/inner: the path fsspec hands over is the image
            if not looks_like_image(path):
                raise not_an_image(path)
            img, inner = path, self.inner
        else:
            raise FileNotFoundError(errno.ENOENT, "names no image (use IMAGE::/path, or "
                                    "image=)", path)
        inner = "/" + inner.lstrip("/")
        return img, inner.rstrip("/") or "/"

    def _parent(self, path: str) -> str:
        """The directory holding ``path``, spelled so that it still names the image (fsspec
        makes it before opening a file for writing)."""
        img, inner = self._split(path)
        parent = inner.rsplit("/", 1)[0] or "/"
        return self._join(img, parent) if self.image is None or img != self.image \
            else parent

    def _join(self, img: str, inner: str) -> str:
        if self.image is not None and img == self.image:
            return inner
        return f"{img}::{inner}"

    def _kernel(self, img: str) -> _Image:
        with self._lock:
            handle = self._images.get(img)
            if handle is None:
                try:
                    spec = parse_image_spec(img)
                except ValueError as e:
                    raise FileNotFoundError(2, str(e), img) from None
                handle = _Image(spec, self.readonly, self.fstype)
                self._images[img] = handle
            return handle

    def _sys(self, path: str) -> tuple[Any, str, str]:
        img, inner = self._split(path)
        return self._kernel(img).sys, img, inner

    # ---- reading ------------------------------------------------------------------------------
    def _entry(self, sys: Any, img: str, inner: str, st: Any) -> dict[str, Any]:
        mode = st.st_mode
        kind = "directory" if S.S_ISDIR(mode) else "file" if S.S_ISREG(mode) else "other"
        out = {"name": self._join(img, inner), "size": st.st_size, "type": kind,
               "mode": mode, "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink,
               "ino": st.st_ino, "mtime": st.st_mtime, "created": st.st_ctime,
               "islink": False}
        return out

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        sys, img, inner = self._sys(path)
        lst = sys.lstat(inner)
        if S.S_ISLNK(lst.st_mode):
            try:
                st = sys.stat(inner)
            except OSError:
                st = lst
            out = self._entry(sys, img, inner, st)
            out["islink"] = True
            out["destination"] = sys.readlink(inner)
            return out
        return self._entry(sys, img, inner, lst)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        sys, img, inner = self._sys(path)
        st = sys.stat(inner)
        if not S.S_ISDIR(st.st_mode):
            entries = [self.info(path)]
        else:
            names = sorted(sys.listdir(inner))
            base = inner.rstrip("/")
            entries = [self.info(self._join(img, f"{base}/{n}")) if self.image is None
                       or img != self.image else self.info(f"{base}/{n}") for n in names]
        return entries if detail else [e["name"] for e in entries]

    def _open(self, path: str, mode: str = "rb", block_size: Any = None,
              autocommit: bool = True, cache_options: Any = None, **kwargs: Any) -> Any:
        handle, inner = self._handle(path)
        if "r" not in mode or "+" in mode:
            if handle.readonly:
                raise PermissionError(30, "Read-only file system (pass readonly=False to "
                                      "write)", path)
            if self.auto_mkdir and "r" not in mode:
                parent = inner.rsplit("/", 1)[0]
                if parent:
                    from rumpkernel.client.files.tree import makedirs

                    makedirs(handle.sys, parent, 0o777, True)
            f = handle.k.open(inner, mode)
            return _SyncOnClose(f, handle.sys)
        return handle.k.open(inner, mode)

    def _handle(self, path: str) -> tuple[_Image, str]:
        img, inner = self._split(path)
        return self._kernel(img), inner

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        with self.open(path, "rb") as f:
            if start is not None:
                if start < 0:
                    start = max(f.seek(0, 2) + start, 0)
                f.seek(start)
            if end is None:
                return f.read()
            if end < 0:
                end = f.seek(0, 2) + end
                f.seek(start or 0)
            return f.read(max(end - (start or 0), 0))

    # ---- writing (readonly=False) -------------------------------------------------------------
    def _writable(self, path: str) -> tuple[Any, str]:
        handle, inner = self._handle(path)
        if handle.readonly:
            raise PermissionError(30, "Read-only file system (pass readonly=False to write)",
                                  path)
        return handle.sys, inner

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        if create_parents:
            self.makedirs(path, exist_ok=True)
            return
        sys, inner = self._writable(path)
        sys.mkdir(inner, 0o777)
        sys.sync()

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        sys, inner = self._writable(path)
        from rumpkernel.client.files.tree import makedirs

        makedirs(sys, inner, 0o777, exist_ok)
        sys.sync()

    def rmdir(self, path: str) -> None:
        sys, inner = self._writable(path)
        sys.rmdir(inner)
        sys.sync()

    def rm_file(self, path: str) -> None:
        sys, inner = self._writable(path)
        if S.S_ISDIR(sys.lstat(inner).st_mode):
            sys.rmdir(inner)
        else:
            sys.unlink(inner)
        sys.sync()

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: Any = None) -> None:
        """Remove files, and with ``recursive`` whole trees (as LocalFileSystem.rm)."""
        from rumpkernel.client.files.tree import rmtree

        paths = path if isinstance(path, list) else [path]
        for p in paths:
            if maxdepth is not None or any(c in str(p) for c in "*?["):
                for q in reversed(self.expand_path(p, recursive=recursive,
                                                   maxdepth=maxdepth)):
                    self.rm_file(q)
                continue
            sys, inner = self._writable(p)
            if recursive and S.S_ISDIR(sys.lstat(inner).st_mode):
                rmtree(sys, inner)
                sys.sync()
            else:
                self.rm_file(p)

    def mv(self, path1: str, path2: str, recursive: bool = False, maxdepth: Any = None,
           **kwargs: Any) -> None:
        sys, a = self._writable(path1)
        img1, _ = self._split(path1)
        img2, b = self._split(path2)
        if img1 != img2:
            return super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
        sys.rename(a, b)
        sys.sync()
        return None

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        with self.open(path1, "rb") as src, self.open(path2, "wb") as dst:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                dst.write(chunk)

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        if truncate or not self.exists(path):
            with self.open(path, "wb"):
                pass
        else:
            sys, inner = self._writable(path)
            sys.utime(inner, None)
            sys.sync()

    def close(self) -> None:
        """Halt every kernel this instance booted (flushing writable images)."""
        _halt_all(self._images)


class _SyncOnClose:
    """A written file whose close also syncs the image (what makes a write durable)."""

    def __init__(self, f: Any, sys: Any) -> None:
        self._f = f
        self._sys = sys

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
            self._sys.sync()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __iter__(self) -> Any:
        return iter(self._f)
