"""One kernel with one image mounted: what every fsu command runs against.

Interface:
    Session(spec, *, fstype=None, readonly=True, options=None, host=None)
        .open()       boot a kernel, mount the image (type detected unless ``fstype``), make
                      the image root the process root (so ``/etc/x`` and absolute symlinks
                      mean the image's); raises Trouble with a message for the user
        .close()      unmount (flushing; errors reported as Trouble) and halt; always halts
        .sys / .files / .k / .fstype / .spec / .readonly
    open_session(...)  context manager doing both

Read-only sessions register the image read-only: the host file is opened O_RDONLY, so its
bytes and modification time cannot change.  Writable sessions flush through an explicit
``unmount`` before ``halt`` so a failure to write back is reported, not just logged.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import sys
from collections.abc import Iterator
from errno import EIO
from typing import Any

import rumpkernel
from rumpkernel.apps.fsu.common import Trouble, reason
from rumpkernel.client.files.imagespec import ImageSpec

MOUNTPOINT = "/image"
TYPES = ("ext2", "ext3", "ext4", "msdos", "vfat", "fat")
EXT4_ONLY = frozenset({"extent", "extents", "64bit", "flex_bg", "huge_file", "metadata_csum",
                       "dir_nlink", "extra_isize", "inline_data"})
DRIVERS = {"ext2": "ext2", "ext3": "ext2", "ext4": "ext2", "msdos": "msdos", "vfat": "msdos",
           "fat": "msdos"}  # mount type -> the kernel component that provides it
TYPE_ALIASES = {"fat12": "msdos", "fat16": "msdos", "fat32": "msdos", "dos": "msdos",
                "ext": "ext2"}


class Session:
    def __init__(self, spec: ImageSpec, *, fstype: str | None = None, readonly: bool = True,
                 options: str | None = None, host: Any = None, best_effort: bool = False
                 ) -> None:
        self.spec = spec
        self.best_effort = best_effort
        self._padded: str | None = None  # --best-effort: a zero-padded copy of a short image
        self.want_type = TYPE_ALIASES.get(fstype or "", fstype)
        self.readonly = readonly
        self.options = options
        self.host = host
        self.k: Any = None
        self.fstype = ""
        self._rootfd = -1
        self._fsinfo: dict[str, Any] | None = None
        self.ro_reason: str | None = None

    @property
    def sys(self) -> Any:
        return self.k.sys

    @property
    def files(self) -> Any:
        return self.k.files

    def open(self) -> Session:
        if self.want_type is not None and self.want_type not in TYPES:
            raise Trouble(f"unknown file system type {self.want_type!r} "
                          f"(known: {', '.join(TYPES)})")
        self._check_host_file()
        guess = self.want_type or self._sniffed_type()
        try:
            try:
                self._boot_and_mount(guess)
            except (rumpkernel.KernelError, OSError) as e:
                if self.best_effort and _truncated(e):
                    self._halt()
                    self._pad_copy()
                    self._boot_and_mount(guess)
                    return self
                if guess is None or self.want_type is not None:
                    raise
                self._halt()  # the signature misled us: let the kernel probe every driver
                self._boot_and_mount(None)
        except (rumpkernel.KernelError, OSError) as e:
            self._halt()
            raise Trouble(self._explain(e)) from None
        except BaseException:
            self._halt()
            raise
        return self

    def _sniffed_type(self) -> str | None:
        """ext2 or msdos from the image's own signature, so that only that driver is loaded
        (start-up time: the probe would import every driver it tries)."""
        if self.spec.partition is not None:
            return None
        from rumpkernel.client.files.sniff import identify

        ident = identify(self.spec.path, self.spec.offset)
        return {"ext": "ext2", "fat": "msdos"}.get(ident.kind) if ident is not None else None

    def _pad_copy(self) -> None:
        """--best-effort on a truncated image: mount a sparse copy padded with zeros to the
        size the file system says it has (only the data extents are copied)."""
        import shutil
        import tempfile

        need = fs_size(self.spec.path, self.spec.offset)
        if need is None:
            raise Trouble(f"{self.spec.text}: truncated, and its size cannot be read from "
                          "the superblock")
        fd, tmp = tempfile.mkstemp(prefix=f"fsu-best-effort-{os.getpid()}-", suffix=".img")
        self._padded = tmp
        with open(self.spec.path, "rb") as src, os.fdopen(fd, "wb") as dst:
            src.seek(self.spec.offset)
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.truncate(need)
        sys.stderr.write(f"fsu: {self.spec.text}: truncated ({need} "
                         "bytes expected): reading it best effort, read-only; what is missing "
                         "reads as zeros\n")

    def _boot_and_mount(self, fstype: str | None) -> None:
        spec = self.spec
        comps = ("vfs", DRIVERS[fstype]) if fstype in DRIVERS else None
        self.k = rumpkernel.boot(self.host, components=comps)
        path, offset = (self._padded, 0) if self._padded else (spec.path, spec.offset)
        self.fstype = self.k.mount_image(
            os.path.abspath(path), MOUNTPOINT, fstype=fstype,
            readonly=self.readonly or self._padded is not None, partition=spec.partition,
            offset=offset, options=self.options)
        self._rootfd = self.sys.open("/", os.O_RDONLY | os.O_DIRECTORY)
        self.sys.chroot(MOUNTPOINT)
        self.sys.chdir("/")
        self.ro_reason = self.readonly_reason()

    def _check_host_file(self) -> None:
        from rumpkernel.client.files.sniff import check_image_file, identify

        path = self.spec.path
        try:
            check_image_file(path)
            st = os.stat(path)
        except OSError as e:
            raise Trouble(f"{path}: {reason(e)}") from None
        if not self.readonly and not os.access(path, os.W_OK):
            raise Trouble(f"{path}: Permission denied (the image is not writable; read-only "
                          "commands still work)")
        size = st.st_size
        if self.spec.offset and size and self.spec.offset >= size:
            raise Trouble(f"{self.spec.text}: offset {self.spec.offset} is beyond the end of "
                          f"{path} ({size} bytes)")
        if self.want_type is None:
            ident = identify(path, self.spec.offset)
            if ident is not None and ident.hint and ident.kind != "vhd":
                raise Trouble(f"{self.spec.text}: {ident.what}, not a raw disk image: "
                              f"{ident.hint.replace('IMAGE', path)}")

    def _explain(self, e: Any) -> str:
        """One line for a refused mount (a KernelError, or the OSError the client API gives)."""
        detail = _detail(e)
        code = _host_errno(e) if isinstance(e, rumpkernel.KernelError) else (e.errno or EIO)
        name = self.spec.text
        if "no file system recognised" in detail:
            return self._unrecognised(detail)
        if "no partition" in detail:
            return f"{name}: {detail}"
        if self.want_type and code == errno.EINVAL:
            return f"{name}: not a {self.want_type} file system ({detail})"
        if code == errno.ENODEV:
            return f"{name}: {detail}"
        if _truncated(e) and not self.best_effort:
            return (f"{name}: truncated: {detail} (--best-effort reads what is there, "
                    "read-only)")
        return f"{name}: {os.strerror(code)} ({detail})" if detail else \
            f"{name}: {os.strerror(code)}"

    def _unrecognised(self, detail: str) -> str:
        from rumpkernel.client.files.sniff import identify

        name = self.spec.text
        ident = identify(self.spec.path, self.spec.offset)
        if ident is not None and ident.hint:
            return f"{name}: {ident.what}, not a raw disk image: " \
                f"{ident.hint.replace('IMAGE', self.spec.path)}"
        tried = detail.split("(tried:", 1)[-1].rstrip(")").strip() if "tried" in detail \
            else "ext2, msdos"
        msg = (f"{name}: no file system recognised (tried: {_pretty_tried(tried)}); "
               "use -t TYPE to force one")
        parts = partition_numbers(self.spec.path) if self.spec.partition is None else []
        if parts and not self.spec.offset:
            msg = (f"{name}: a disk with a partition table (partitions "
                   f"{', '.join(map(str, parts))}), not one file system: use {name}%N for "
                   f"partition N (fsu parts {name} lists them)")
        return msg

    def readonly_reason(self) -> str | None:
        """Why a mount asked for read-write came up read-only, or None when it did not.  The
        one place that asks: the driver's own reason when its fsinfo gives one
        (``readonly_reason``), else the kernel's log line for the mount."""
        if self.readonly or self.k is None:
            return None
        try:
            v = self.sys.statvfs("/")
        except OSError:
            return None
        if not v.f_flag & 1:
            return None
        info = self.fsinfo()
        for where in (info, info.get("info", {})):
            why = where.get("readonly_reason") or where.get("ro_reason")
            if why:
                return str(why)
        for line in reversed(list(getattr(self.k, "msgbuf", ()))):
            if "read-only" in line and ":" in line:
                return line.rsplit("read-only:", 1)[-1].strip() if "read-only:" in line \
                    else line
        return "the file system driver mounted it read-only"

    def fsinfo(self) -> dict[str, Any]:
        """The kernel's facts about the mounted file system (cached)."""
        if self._fsinfo is None:
            self._fsinfo = self.sys.fsinfo("/")
        return self._fsinfo

    def display_type(self) -> str:
        """ext2/ext3/ext4 from the features, fat12/16/32 from the FAT width."""
        info = self.fsinfo()
        drv = info.get("info", {})
        if "fat_bits" in drv:
            return f"fat{drv['fat_bits']}"
        feats = set(drv.get("features", ()))
        if feats:
            if feats & EXT4_ONLY:
                return "ext4"
            return "ext3" if "has_journal" in feats else "ext2"
        return str(info.get("fstype", self.fstype))

    def close(self) -> None:
        """Unmount and halt.  Raises Trouble when the image could not be written back."""
        if self.k is None or self.k.dead:
            return
        problem = None
        try:
            if self._rootfd >= 0:
                self.sys.fchdir(self._rootfd)
                self.sys.chroot(".")
                self.sys.close(self._rootfd)
                self._rootfd = -1
                self.sys.chdir("/")
                self.sys.unmount(MOUNTPOINT)
        except OSError as e:
            problem = f"{self.spec.text}: unmount failed: {os.strerror(e.errno or errno.EIO)}"
        finally:
            self._halt()
        if problem:
            raise Trouble(problem)

    def _halt(self) -> None:
        if self.k is not None and not self.k.dead:
            try:
                self.k.halt()
            except rumpkernel.KernelPanic:
                pass
        if self._padded is not None and (self.k is None or self.k.dead):
            try:
                os.unlink(self._padded)
            except OSError:
                pass

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def open_session(spec: ImageSpec, **kw: Any) -> Iterator[Session]:
    s = Session(spec, **kw).open()
    try:
        yield s
    except BaseException:
        with contextlib.suppress(Trouble):
            s.close()
        raise
    else:
        s.close()


def _truncated(e: Any) -> bool:
    return "larger than the device" in _detail(e)


def fs_size(path: str, offset: int = 0) -> int | None:
    """The size in bytes an ext or FAT file system at ``offset`` says it has (None: neither)."""
    with open(path, "rb") as f:
        f.seek(offset)
        head = f.read(2048)
    if len(head) >= 1082 and head[1080:1082] == b"\x53\xef":
        lo, = struct.unpack_from("<I", head, 1024 + 4)
        log, = struct.unpack_from("<I", head, 1024 + 24)
        hi, = struct.unpack_from("<I", head, 1024 + 0x150)
        feat, = struct.unpack_from("<I", head, 1024 + 0x60)
        blocks = lo | (hi << 32 if feat & 0x80 else 0)
        return blocks * (1024 << min(log, 6))
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        bps, = struct.unpack_from("<H", head, 11)
        small, = struct.unpack_from("<H", head, 19)
        large, = struct.unpack_from("<I", head, 32)
        return bps * (small or large) if bps in (512, 1024, 2048, 4096) else None
    return None


def _detail(e: Any) -> str:
    """The kernel's words for a refusal: KernelError.detail, or what follows the errno's
    words in an OSError's strerror."""
    detail = getattr(e, "detail", None)
    if detail:
        return str(detail)
    if isinstance(e, OSError):
        text = e.strerror or ""
        std = os.strerror(e.errno) if e.errno else ""
        if std and text.startswith(std):
            text = text[len(std):].strip()
            if text.startswith("(") and text.endswith(")"):
                text = text[1:-1]
        return text
    return str(e)


def _host_errno(e: Any) -> int:
    from rumpkernel.client.abi import host_errno

    return host_errno(getattr(e, "errno", errno.EIO))


def _pretty_tried(tried: str) -> str:
    names = {"ext2": "ext2/ext3/ext4", "msdos": "FAT12/16/32"}
    return ", ".join(names.get(t.strip(), t.strip()) for t in tried.split(","))


def partition_numbers(path: str) -> list[int]:
    """Partition numbers of an MBR or GPT table at the start of ``path`` (for error hints)."""
    from rumpkernel.apps.fsu.cmd_parts import read_table

    try:
        return [p.number for p in read_table(path)[1]]
    except (OSError, Trouble):
        return []
