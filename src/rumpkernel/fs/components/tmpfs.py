"""tmpfs component: registers the in-memory file system (``vfs/memfs.py``) with the VFS."""

from __future__ import annotations

from rumpkernel.kern.component import Phase, TestImage, component
from rumpkernel.vfs.memfs import TmpfsType


@component("tmpfs", phase=Phase.VFS_FS, faction="vfs", requires=("vfs",),
           desc="in-memory file system",
           test_images=(TestImage("tmpfs", "tmpfs", (), {"mode": "755", "link_max": "64"}),))
def tmpfs_init(k) -> None:  # type: ignore[no-untyped-def]
    k.vfs.register_fstype(TmpfsType)
