"""FAT12/16/32 file system driver with VFAT long names (NetBSD's msdosfs, Linux's vfat).

Interface:
    FSTYPES   -- the registrations: ``msdos`` (main name), ``vfat`` and ``fat`` (aliases)
    MsdosType -- ``probe(dev)``, ``mount(ctx)``, ``newfs(dev, **options)``, ``option_names``

Modules: ``layout`` (on-disk records), ``fattime``, ``names`` (long/short names), ``fat``
(allocation table), ``directory`` (parsed directories), ``node`` (inode numbers), ``fileio``
(file data), ``dirops`` + ``vfsops`` (the vnode operations), ``probe``, ``options``, ``newfs``.
"""

from __future__ import annotations

from typing import ClassVar

from rumpkernel.fs.msdos.newfs import newfs as _newfs
from rumpkernel.fs.msdos.options import OPTION_NAMES
from rumpkernel.fs.msdos.probe import find_volume
from rumpkernel.fs.msdos.vfsops import MsdosFS
from rumpkernel.kern.errno import KernelError
from rumpkernel.vfs.bio import BlockDevice
from rumpkernel.vfs.fstype import FileSystemType, MountContext


class MsdosType(FileSystemType):
    name: ClassVar[str] = "msdos"
    option_names: ClassVar[frozenset[str]] = OPTION_NAMES

    @classmethod
    def probe(cls, dev: BlockDevice) -> bool:
        try:
            find_volume(dev)
        except KernelError:
            return False
        return True

    @classmethod
    def mount(cls, ctx: MountContext) -> MsdosFS:
        return MsdosFS(ctx, cls.name)

    @classmethod
    def newfs(cls, dev: BlockDevice, **options: object) -> None:
        _newfs(dev, **options)


class VfatType(MsdosType):
    name: ClassVar[str] = "vfat"


class FatType(MsdosType):
    name: ClassVar[str] = "fat"


FSTYPES = (MsdosType, VfatType, FatType)
__all__ = ["FSTYPES", "FatType", "MsdosFS", "MsdosType", "VfatType"]
