"""Kernel component for the FAT driver: registers ``msdos`` (probing) and the aliases ``vfat``
and ``fat`` with the VFS.  The driver is imported on first use; until then a boot-sector check
(a jump instruction or a partition-table signature) answers probes."""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.component import Phase, TestImage, component
from rumpkernel.kern.errno import KernelError
from rumpkernel.vfs.fstype import FileSystemType, LazyFileSystemType

NAMES = ("msdos", "vfat", "fat")


def _loader(name: str) -> Any:
    def load() -> type[FileSystemType]:
        from rumpkernel.fs.msdos import FSTYPES

        return next(c for c in FSTYPES if c.name == name)
    return load


def quick_probe(dev: Any) -> bool:
    try:
        sector = dev.pread(0, 512)
    except KernelError:
        return False
    return sector[0] in (0xEB, 0xE9) or sector[510:512] == b"\x55\xaa"


TEST_IMAGES = tuple(
    TestImage(f"fat{bits}", "msdos", ("mkfs.fat", "-C", "-F", str(bits), "{image}", size))
    for bits, size in ((12, "4096"), (16, "32768"), (32, "65536")))


@component("msdos", phase=Phase.VFS_FS, faction="vfs", requires=("vfs",),
           desc="FAT12/16/32 with long file names", test_images=TEST_IMAGES)
def msdos_init(k: Any) -> None:
    for name in NAMES:
        k.vfs.register_fstype(LazyFileSystemType(name, _loader(name), quick_probe),
                              probe=name == "msdos")
