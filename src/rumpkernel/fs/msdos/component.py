"""Kernel component for the FAT driver: registers ``msdos`` (probing) and the aliases ``vfat``
and ``fat`` with the VFS."""

from __future__ import annotations

from typing import Any

from rumpkernel.fs.msdos import FSTYPES
from rumpkernel.kern.component import Phase, component


@component("msdos", phase=Phase.VFS_FS, faction="vfs", requires=("vfs",),
           desc="FAT12/16/32 with long file names")
def msdos_init(k: Any) -> None:
    for cls in FSTYPES:
        k.vfs.register_fstype(cls, probe=cls.name == "msdos")
