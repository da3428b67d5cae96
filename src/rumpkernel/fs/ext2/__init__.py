"""ext2/ext3/ext4: one driver for the whole family, registered under three names.

Interface:
    FSTYPES = (Ext2Type, Ext3Type, Ext4Type)   -- ``FileSystemType`` records
    Ext*Type.probe(dev) -> bool     any ext2/3/4 superblock (magic 0xEF53 at byte 1080)
    Ext*Type.mount(ctx) -> ExtFileSystem
    Ext2Type.newfs(dev, **options) / Ext4Type.newfs(...) / Ext3Type.newfs(...) -- see newfs.py

Modules: ``layout`` (on-disk format, shared with newfs), ``geometry``, ``volume`` (bitmaps,
descriptors, allocation), ``inode``, ``extents`` / ``blockmap`` (block maps), ``fileio``,
``dirs``, ``xattr``, ``journal`` (JBD2 recovery), ``mount`` (feature policy, state),
``fs`` (vnode operations), ``newfs``, ``csum``.
"""

from __future__ import annotations

from typing import ClassVar

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.fs import ExtFileSystem
from rumpkernel.kern.errno import KernelError
from rumpkernel.vfs.bio import BlockDevice
from rumpkernel.vfs.fstype import FileSystemType, MountContext


class _ExtType(FileSystemType):
    option_names: ClassVar[frozenset[str]] = frozenset({"ro", "rw", "nojournal", "build"})
    flavour: ClassVar[str] = "ext4"

    @classmethod
    def probe(cls, dev: BlockDevice) -> bool:
        try:
            from rumpkernel.fs.ext2.mount import read_super

            raw = read_super(dev)
        except KernelError:
            return False
        return int.from_bytes(raw[0x38:0x3A], "little") == L.EXT2_MAGIC

    @classmethod
    def mount(cls, ctx: MountContext) -> ExtFileSystem:
        return ExtFileSystem(ctx, cls.name)

    @classmethod
    def newfs(cls, dev: BlockDevice, **options: object) -> None:
        from rumpkernel.fs.ext2.newfs import make_filesystem

        make_filesystem(dev, cls.flavour, **options)


class Ext2Type(_ExtType):
    name: ClassVar[str] = "ext2"
    flavour: ClassVar[str] = "ext2"


class Ext3Type(_ExtType):
    name: ClassVar[str] = "ext3"
    flavour: ClassVar[str] = "ext3"


class Ext4Type(_ExtType):
    name: ClassVar[str] = "ext4"
    flavour: ClassVar[str] = "ext4"


FSTYPES: tuple[type[FileSystemType], ...] = (Ext2Type, Ext3Type, Ext4Type)

__all__ = ["FSTYPES", "Ext2Type", "Ext3Type", "Ext4Type", "ExtFileSystem"]
