"""Kernel component for the ext2/3/4 driver: registers ``ext2``, ``ext3`` and ``ext4`` with the
VFS (one driver; ``ext2`` is the one that probes, and it accepts every ext image)."""

from __future__ import annotations

from typing import Any

from rumpkernel.fs.ext2 import FSTYPES
from rumpkernel.kern.component import Phase, component


@component("ext2", phase=Phase.VFS_FS, faction="vfs", requires=("vfs",),
           desc="ext2/ext3/ext4 file systems")
def ext2_init(k: Any) -> None:
    for cls in FSTYPES:
        k.vfs.register_fstype(cls, probe=cls.name == "ext2")
