"""Local socket names in the file system: the only place the net faction uses the VFS.

Interface (called with an lwp, paths relative to its working directory and root):
    vfs_bind(l, path) -> key        create a socket node (S_IFSOCK, mode 0777 & ~umask) the way
                                    mknod does: EADDRINUSE if the name exists, ENOENT, ENOTDIR,
                                    EACCES, EROFS, ENAMETOOLONG
    vfs_lookup(l, path) -> key      the node a name refers to: ENOENT, ENOTSOCK (not a socket
                                    node), EACCES (no write permission, as on Linux)
A key is (mount, inode number): the socket bound to a node is found by it.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import AT_FDCWD, S_IFMT, S_IFSOCK
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.perm import W_OK, X_OK, check_access
from rumpkernel.vfs.vfs_common import (
    check_name,
    getattr_vp,
    new_owner,
    release,
    require_writable,
)


def vfs_bind(l: Any, path: bytes) -> Any:
    vfs = l.kernel.vfs
    dvp, name, vp, trailing = vfs.namei.walk_parent(l, AT_FDCWD, path)
    try:
        if vp is not None or name in (b".", b".."):
            raise KernelError(Errno.EADDRINUSE, "address in use (the name exists)")
        if trailing:
            raise KernelError(Errno.ENOENT, "trailing slash on a socket name")
        require_writable(dvp)
        dattr = getattr_vp(dvp)
        check_access(l.proc.cred, dattr, W_OK | X_OK)
        check_name(dvp, name)
        if not dvp.mount.fs.features.special_files:
            raise KernelError(Errno.EPERM, f"{dvp.mount.fstype} has no socket nodes")
        perms, uid, gid = new_owner(l, dattr, 0o777, isdir=False)
        with dvp.mount.lock:
            ino = dvp.mount.fs.create(dvp.node, name, S_IFSOCK | perms, uid, gid, 0)
        return (dvp.mount, ino)
    finally:
        release(vfs, dvp, vp)


def vfs_lookup(l: Any, path: bytes) -> Any:
    vfs = l.kernel.vfs
    vp = vfs.namei.walk(l, AT_FDCWD, path)
    try:
        attr = getattr_vp(vp)
        if attr.mode & S_IFMT != S_IFSOCK:
            raise KernelError(Errno.ENOTSOCK, "not a socket")
        check_access(l.proc.cred, attr, W_OK)
        return (vp.mount, vp.ino)
    finally:
        release(vfs, vp)
