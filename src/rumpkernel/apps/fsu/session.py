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
from collections.abc import Iterator
from typing import Any

import rumpkernel
from rumpkernel.apps.fsu.common import Trouble
from rumpkernel.client.files.imagespec import ImageSpec

MOUNTPOINT = "/image"
TYPES = ("ext2", "ext3", "ext4", "msdos", "vfat", "fat")
EXT4_ONLY = frozenset({"extent", "extents", "64bit", "flex_bg", "huge_file", "metadata_csum",
                       "dir_nlink", "extra_isize", "inline_data"})
TYPE_ALIASES = {"fat12": "msdos", "fat16": "msdos", "fat32": "msdos", "dos": "msdos",
                "ext": "ext2"}


class Session:
    def __init__(self, spec: ImageSpec, *, fstype: str | None = None, readonly: bool = True,
                 options: str | None = None, host: Any = None) -> None:
        self.spec = spec
        self.want_type = TYPE_ALIASES.get(fstype or "", fstype)
        self.readonly = readonly
        self.options = options
        self.host = host
        self.k: Any = None
        self.fstype = ""
        self._rootfd = -1
        self._fsinfo: dict[str, Any] | None = None

    @property
    def sys(self) -> Any:
        return self.k.sys

    @property
    def files(self) -> Any:
        return self.k.files

    def open(self) -> Session:
        spec = self.spec
        if self.want_type is not None and self.want_type not in TYPES:
            raise Trouble(f"unknown file system type {self.want_type!r} "
                          f"(known: {', '.join(TYPES)})")
        self._check_host_file()
        self.k = rumpkernel.boot(self.host)
        try:
            self.fstype = self.k.mount_image(
                os.path.abspath(spec.path), MOUNTPOINT, fstype=self.want_type,
                readonly=self.readonly, partition=spec.partition, offset=spec.offset,
                options=self.options)
            self._rootfd = self.sys.open("/", os.O_RDONLY | os.O_DIRECTORY)
            self.sys.chroot(MOUNTPOINT)
            self.sys.chdir("/")
        except OSError as e:                 # the kernel's refusal, as the host's error
            self._halt()
            raise Trouble(self._explain(e)) from None
        except BaseException:
            self._halt()
            raise
        return self

    def _check_host_file(self) -> None:
        path = self.spec.path
        try:
            st = os.stat(path)
        except OSError as e:
            raise Trouble(f"{path}: {os.strerror(e.errno or errno.EIO)}") from None
        if os.path.isdir(path):
            raise Trouble(f"{path}: Is a directory (an image file or block device is needed)")
        if not self.readonly and not os.access(path, os.W_OK):
            raise Trouble(f"{path}: Permission denied (the image is not writable; read-only "
                          "commands still work)")
        size = st.st_size
        if self.spec.offset and size and self.spec.offset >= size:
            raise Trouble(f"{self.spec.text}: offset {self.spec.offset} is beyond the end of "
                          f"{path} ({size} bytes)")

    def _explain(self, e: Any) -> str:
        detail = str(getattr(e, "detail", "") or e.strerror or e)
        name = self.spec.text
        if "no file system recognised" in detail:
            tried = detail.split("(tried:", 1)[-1].rstrip(")").strip() if "tried" in detail \
                else "ext2, msdos"
            msg = (f"{name}: no file system recognised (tried: {_pretty_tried(tried)}); "
                   "use -t TYPE to force one")
            parts = partition_numbers(self.spec.path) if self.spec.partition is None else []
            if parts and not self.spec.offset:
                msg += (f"; the image has a partition table (partitions "
                        f"{', '.join(map(str, parts))}): use {name}%N")
            return msg
        if "no partition" in detail:
            return f"{name}: {detail}"
        if self.want_type and getattr(e, "errno", None) == errno.EINVAL:
            return f"{name}: not a {self.want_type} file system ({detail})"
        if getattr(e, "errno", None) == errno.ENODEV:
            return f"{name}: {detail}"
        text = os.strerror(e.errno or errno.EIO)
        return f"{name}: {text} ({detail})" if detail else f"{name}: {text}"

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


def _pretty_tried(tried: str) -> str:
    names = {"ext2": "ext2/ext3/ext4", "msdos": "FAT12/16/32"}
    return ", ".join(names.get(t.strip(), t.strip()) for t in tried.split(","))


def partition_numbers(path: str) -> list[int]:
    """Partition numbers of an MBR or GPT table at the start of ``path`` (for error hints)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
            if len(head) < 1024 or head[510:512] != b"\x55\xaa":
                return []
            types = [head[446 + 16 * i + 4] for i in range(4)]
            if 0xEE in types and head[512:520] == b"EFI PART":
                lba, n, size = struct.unpack_from("<QII", head, 512 + 72)
                if not 0 < n <= 1024 or size < 128:
                    return []
                f.seek(lba * 512)
                table = f.read(n * size)
                return [i + 1 for i in range(n) if table[i * size:i * size + 16] != bytes(16)]
            return [i + 1 for i, t in enumerate(types) if t not in (0, 0xEE)]
    except OSError:
        return []
