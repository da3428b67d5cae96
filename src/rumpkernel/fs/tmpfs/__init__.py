"""tmpfs component: registers the in-memory file system with the VFS."""

from __future__ import annotations

from rumpkernel.kern.component import Phase, component
from rumpkernel.vfs.memfs import Tmpfs, TmpfsType

__all__ = ["Tmpfs", "TmpfsType"]


@component("tmpfs", phase=Phase.VFS_FS, faction="vfs", requires=("vfs",),
           desc="in-memory file system")
def tmpfs_init(k) -> None:  # type: ignore[no-untyped-def]
    k.vfs.register_fstype(TmpfsType)
