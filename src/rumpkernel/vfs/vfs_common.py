"""Helpers shared by the VFS system call handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import (  # noqa: F401  (re-exported for the VFS handlers)
    AT_EACCESS,
    AT_FDCWD,
    AT_REMOVEDIR,
    AT_SYMLINK_FOLLOW,
    AT_SYMLINK_NOFOLLOW,
    NAME_MAX,
    PATH_MAX,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.vattr import S_IFDIR, S_ISDIR, S_ISGID, SetAttr, VAttr
from rumpkernel.vfs.vnode import Vnode

if TYPE_CHECKING:
    from rumpkernel.vfs.mount import Vfs



def vfs_of(l: Any) -> Vfs:
    return l.kernel.vfs


def path_arg(l: Any, uaddr: Any) -> bytes:
    return l.proc.vm.copyinstr(uaddr, PATH_MAX)


def getattr_vp(vp: Vnode) -> VAttr:
    mp = vp.mount
    if mp.dead:
        raise KernelError(Errno.EIO, "file system was unmounted")
    with mp.lock:
        return mp.fs.getattr(vp.node)


def setattr_vp(vp: Vnode, changes: SetAttr) -> None:
    mp = vp.mount
    require_writable(vp)
    with mp.lock:
        mp.fs.setattr(vp.node, changes)


def require_writable(vp: Vnode) -> None:
    if vp.mount.readonly:
        raise KernelError(Errno.EROFS, "read-only file system")


def check_name(vp: Vnode, name: bytes) -> None:
    limit = min(vp.mount.fs.features.name_max, NAME_MAX)
    if len(name) > limit:
        raise KernelError(Errno.ENAMETOOLONG, f"name longer than {limit} bytes")


def release(vfs: Vfs, *vps: Vnode | None) -> None:
    seen = []
    for vp in vps:
        if vp is not None:
            vfs.vcache.vrele(vp)
            seen.append(vp)


def new_owner(l: Any, dattr: VAttr, mode: int, isdir: bool) -> tuple[int, int, int]:
    """(mode, uid, gid) of a new node: umask applied; the group comes from a set-group-id
    directory (and a new directory inherits that bit), else the creator's group."""
    cred = l.proc.cred
    perms = mode & 0o7777 & ~l.proc.umask
    if dattr.mode & S_ISGID:
        gid = dattr.gid
        if isdir:
            perms |= S_ISGID
    else:
        gid = cred.egid
    return perms, cred.euid, gid


def fd_vnode(l: Any, fd: int, path_ok: bool = False) -> Vnode:
    """The vnode an open file refers to.  An O_PATH handle serves only where ``path_ok``
    (fchdir, fstatvfs, reopen); elsewhere it is EBADF, as on Linux."""
    fp = l.proc.fd.get(fd)
    vp = getattr(fp, "vp", None)
    if vp is None:
        raise KernelError(Errno.EINVAL, f"fd {fd} is not a file system object")
    if not path_ok and fp.kind == "path":
        raise KernelError(Errno.EBADF, f"fd {fd} is an O_PATH descriptor")
    return vp


def is_dir_attr(a: VAttr) -> bool:
    return S_ISDIR(a.mode)


DIRTYPE = S_IFDIR
