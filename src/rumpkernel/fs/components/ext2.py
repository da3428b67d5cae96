"""Kernel component for the ext2/3/4 driver: registers ``ext2``, ``ext3`` and ``ext4`` with the
VFS (one driver; ``ext2`` is the one that probes, and it accepts every ext image).  The driver
itself is imported on first use; until then a superblock-magic check answers probes."""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.component import Phase, TestImage, component
from rumpkernel.kern.errno import KernelError
from rumpkernel.vfs.fstype import FileSystemType, LazyFileSystemType

NAMES = ("ext2", "ext3", "ext4")
SUPER_OFFSET, MAGIC_OFFSET, MAGIC = 1024, 56, b"\x53\xef"


def _loader(name: str) -> Any:
    def load() -> type[FileSystemType]:
        from rumpkernel.fs.ext2 import FSTYPES

        return next(c for c in FSTYPES if c.name == name)
    return load


def quick_probe(dev: Any) -> bool:
    try:
        raw = dev.pread(SUPER_OFFSET, 1024)
    except KernelError:
        return False
    return raw[MAGIC_OFFSET:MAGIC_OFFSET + 2] == MAGIC


def _mke2fs(flavour: str) -> TestImage:
    return TestImage(flavour, "ext2",
                     ("mke2fs", "-q", "-F", "-t", flavour, "-b", "1024", "{image}", "16M"))


@component("ext2", phase=Phase.VFS_FS, faction="vfs", requires=("vfs",),
           desc="ext2/ext3/ext4 file systems",
           test_images=(_mke2fs("ext2"), _mke2fs("ext4")))
def ext2_init(k: Any) -> None:
    for name in NAMES:
        k.vfs.register_fstype(LazyFileSystemType(name, _loader(name), quick_probe),
                              probe=name == "ext2")
