"""VFS system calls that change the name space or attributes: mkdir, unlink/rmdir, rename
(renameat2: RENAME_NOREPLACE), link, symlink, mknod, chmod, chown, utimes.  POSIX semantics,
checked here once for every file system; drivers see only validated requests.  fchmodat,
fchownat, utimensat and linkat (its source) take AT_EMPTY_PATH: an empty path names the file
the descriptor refers to (an O_PATH handle included); linkat refuses a file with no links left
(ENOENT), so a removed file cannot come back."""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.abi import (
    AT_EMPTY_PATH,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    RENAME_WHITEOUT,
    SYMLINK_MAX,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.syscall.structs import TIMESPEC
from rumpkernel.vfs.perm import W_OK, X_OK, check_access, check_owner, check_sticky
from rumpkernel.vfs.vattr import (
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    S_ISGID,
    S_ISUID,
    SetAttr,
)
from rumpkernel.vfs.vfs_common import (
    AT_REMOVEDIR,
    AT_SYMLINK_FOLLOW,
    AT_SYMLINK_NOFOLLOW,
    check_name,
    fd_vnode,
    getattr_vp,
    new_owner,
    path_arg,
    release,
    require_writable,
    setattr_vp,
    vfs_of,
)
from rumpkernel.vfs.vnode import Vnode

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _prepare_create(l: Any, dvp: Vnode, name: bytes, vp: Vnode | None) -> Any:
    if vp is not None or name in (b".", b".."):
        raise KernelError(Errno.EEXIST, "file exists")
    require_writable(dvp)
    dattr = getattr_vp(dvp)
    check_access(l.proc.cred, dattr, W_OK | X_OK)
    check_name(dvp, name)
    return dattr


def sys_mkdirat(l: Any, dirfd: int, path: Any, mode: int) -> None:
    vfs = vfs_of(l)
    dvp, name, vp, _ = vfs.namei.walk_parent(l, dirfd, path_arg(l, path))
    try:
        dattr = _prepare_create(l, dvp, name, vp)
        perms, uid, gid = new_owner(l, dattr, mode & 0o1777, isdir=True)
        with dvp.mount.lock:
            dvp.mount.fs.mkdir(dvp.node, name, S_IFDIR | perms, uid, gid)
    finally:
        release(vfs, dvp, vp)


def sys_mknodat(l: Any, dirfd: int, path: Any, mode: int, dev: int) -> None:
    vfs = vfs_of(l)
    ftype = mode & S_IFMT
    if ftype in (0, S_IFREG):
        ftype = S_IFREG
    elif ftype not in (S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK):
        raise KernelError(Errno.EINVAL, "mknod: bad file type")
    if ftype in (S_IFCHR, S_IFBLK) and not l.proc.cred.is_root:
        raise KernelError(Errno.EPERM, "mknod: device nodes need root")
    dvp, name, vp, trailing = vfs.namei.walk_parent(l, dirfd, path_arg(l, path))
    try:
        dattr = _prepare_create(l, dvp, name, vp)
        if trailing:
            raise KernelError(Errno.ENOENT, "trailing slash on a new non-directory")
        feats = dvp.mount.fs.features
        if ftype != S_IFREG and not feats.special_files:
            raise KernelError(Errno.EPERM, f"{dvp.mount.fstype} has no special files")
        perms, uid, gid = new_owner(l, dattr, mode, isdir=False)
        rdev = dev if ftype in (S_IFCHR, S_IFBLK) else 0
        with dvp.mount.lock:
            dvp.mount.fs.create(dvp.node, name, ftype | perms, uid, gid, rdev)
    finally:
        release(vfs, dvp, vp)


def _busy(vp: Vnode) -> bool:
    return vp.mounted_here is not None or (vp is vp.mount.rootvp)


def sys_unlinkat(l: Any, dirfd: int, path: Any, flag: int) -> None:
    vfs = vfs_of(l)
    if flag & ~AT_REMOVEDIR:
        raise KernelError(Errno.EINVAL, "unlinkat: bad flag")
    dvp, name, vp, trailing = vfs.namei.walk_parent(l, dirfd, path_arg(l, path))
    try:
        rmdir = bool(flag & AT_REMOVEDIR)
        if rmdir and name == b".":
            raise KernelError(Errno.EINVAL, "cannot remove '.'")
        if rmdir and name == b"..":
            raise KernelError(Errno.ENOTEMPTY, "cannot remove '..'")
        if vp is None:
            raise KernelError(Errno.ENOENT, "no such file or directory")
        if rmdir and not vp.isdir:
            raise KernelError(Errno.ENOTDIR, "not a directory")
        if not rmdir and vp.isdir:
            raise KernelError(Errno.EISDIR, "is a directory (use rmdir)")
        if not rmdir and trailing:
            raise KernelError(Errno.ENOTDIR, "trailing slash on a non-directory")
        if rmdir and _busy(vp):
            raise KernelError(Errno.EBUSY, "mount point or root")
        require_writable(dvp)
        cred = l.proc.cred
        dattr = getattr_vp(dvp)
        check_access(cred, dattr, W_OK | X_OK)
        check_sticky(cred, dattr, getattr_vp(vp))
        with dvp.mount.lock:
            if rmdir:
                dvp.mount.fs.rmdir(dvp.node, name, vp.node)
            else:
                dvp.mount.fs.unlink(dvp.node, name, vp.node)
            vp.removed = True
    finally:
        release(vfs, dvp, vp)


def _is_ancestor(l: Any, vfs: Any, anc: Vnode, dvp: Vnode) -> bool:
    """True when directory ``anc`` is ``dvp`` or above it (on the same mount)."""
    cur = vfs.vcache.vref(dvp)
    try:
        for _ in range(4096):
            if cur is anc:
                return True
            if cur is cur.mount.rootvp:
                return False
            with cur.mount.lock:
                ino = cur.mount.fs.lookup(cur.node, b"..")
            if ino == cur.ino:
                return False
            nxt = vfs.vcache.get(cur.mount, ino)
            vfs.vcache.vrele(cur)
            cur = nxt
        raise KernelError(Errno.ELOOP, "directory tree too deep or cyclic")
    finally:
        vfs.vcache.vrele(cur)


def sys_renameat(l: Any, fromfd: int, src: Any, tofd: int, dst: Any) -> None:
    _rename(l, fromfd, src, tofd, dst, 0)


def sys_renameat2(l: Any, fromfd: int, src: Any, tofd: int, dst: Any, flags: int) -> None:
    """renameat with RENAME_NOREPLACE (EEXIST when dst exists).  RENAME_EXCHANGE and
    RENAME_WHITEOUT are EINVAL: no driver has an atomic exchange, and a VFS emulation could not
    keep it atomic across a crash."""
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT):
        raise KernelError(Errno.EINVAL, f"renameat2: unknown flags 0x{flags:x}")
    if flags & (RENAME_EXCHANGE | RENAME_WHITEOUT):
        raise KernelError(Errno.EINVAL, "renameat2: RENAME_EXCHANGE/RENAME_WHITEOUT are not "
                          "supported")
    _rename(l, fromfd, src, tofd, dst, flags)


def _rename(l: Any, fromfd: int, src: Any, tofd: int, dst: Any, flags: int) -> None:
    vfs = vfs_of(l)
    namei = vfs.namei
    sdvp, sname, svp, strail = namei.walk_parent(l, fromfd, path_arg(l, src))
    held: list[Vnode | None] = [sdvp, svp]
    try:
        tdvp, tname, tvp, ttrail = namei.walk_parent(l, tofd, path_arg(l, dst))
        held += [tdvp, tvp]
        case_only = (svp is tvp and sdvp is tdvp and sname != tname
                     and sdvp.mount.fs.features.case_insensitive)
        if flags & RENAME_NOREPLACE and tvp is not None and not case_only and svp is not None:
            raise KernelError(Errno.EEXIST, "rename: target exists (RENAME_NOREPLACE)")
        _check_rename(l, vfs, sdvp, sname, svp, strail, tdvp, tname, tvp, ttrail, case_only)
        if svp is tvp and not case_only:
            return  # two names of one file: nothing to do
        assert svp is not None
        with sdvp.mount.lock:
            sdvp.mount.fs.rename(sdvp.node, sname, svp.node, tdvp.node, tname,
                                 tvp.node if tvp is not None else None)
            if tvp is not None:
                tvp.removed = True
    finally:
        release(vfs, *held)


def _check_rename(l: Any, vfs: Any, sdvp: Vnode, sname: bytes, svp: Vnode | None, strail: bool,
                  tdvp: Vnode, tname: bytes, tvp: Vnode | None, ttrail: bool,
                  case_only: bool = False) -> None:
    if svp is None:
        raise KernelError(Errno.ENOENT, "source does not exist")
    if sname in (b".", b"..") or tname in (b".", b".."):
        raise KernelError(Errno.EINVAL, "cannot rename '.' or '..'")
    if sdvp.mount is not tdvp.mount:
        raise KernelError(Errno.EXDEV, "rename across file systems")
    if (strail or ttrail) and not svp.isdir:
        raise KernelError(Errno.ENOTDIR, "trailing slash on a non-directory")
    if _busy(svp) or (tvp is not None and _busy(tvp)):
        raise KernelError(Errno.EBUSY, "mount point")
    if svp is tvp and not case_only:
        return
    require_writable(sdvp)
    cred = l.proc.cred
    sdattr, tdattr = getattr_vp(sdvp), getattr_vp(tdvp)
    check_access(cred, sdattr, W_OK | X_OK)
    check_access(cred, tdattr, W_OK | X_OK)
    check_sticky(cred, sdattr, getattr_vp(svp))
    if tvp is not None:
        check_sticky(cred, tdattr, getattr_vp(tvp))
    check_name(tdvp, tname)
    if case_only:
        return
    if svp.isdir:
        if tvp is not None and not tvp.isdir:
            raise KernelError(Errno.ENOTDIR, "cannot replace a non-directory with a directory")
        if sdvp is not tdvp:
            check_access(cred, getattr_vp(svp), W_OK)  # its '..' changes
            if _is_ancestor(l, vfs, svp, tdvp):
                raise KernelError(Errno.EINVAL, "cannot move a directory into itself")
    elif tvp is not None and tvp.isdir:
        raise KernelError(Errno.EISDIR, "cannot replace a directory with a non-directory")


def sys_linkat(l: Any, fd1: int, src: Any, fd2: int, dst: Any, flag: int) -> None:
    vfs = vfs_of(l)
    if flag & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise KernelError(Errno.EINVAL, "linkat: bad flag")
    vp = vfs.namei.walk_at(l, fd1, path_arg(l, src), bool(flag & AT_SYMLINK_FOLLOW),
                           bool(flag & AT_EMPTY_PATH))
    held: list[Vnode | None] = [vp]
    try:
        if vp.removed or (not vp.isdir and getattr_vp(vp).nlink == 0):
            raise KernelError(Errno.ENOENT, "linkat: the file has been removed")
        tdvp, tname, tvp, ttrail = vfs.namei.walk_parent(l, fd2, path_arg(l, dst))
        held += [tdvp, tvp]
        if vp.isdir:
            raise KernelError(Errno.EPERM, "hard links to directories are not allowed")
        if tvp is not None:
            raise KernelError(Errno.EEXIST, "file exists")
        if ttrail:
            raise KernelError(Errno.ENOENT, "trailing slash on a new link")
        if vp.mount is not tdvp.mount:
            raise KernelError(Errno.EXDEV, "link across file systems")
        _prepare_create(l, tdvp, tname, None)
        fs = tdvp.mount.fs
        if not fs.features.hardlinks:
            raise KernelError(Errno.EPERM, f"{tdvp.mount.fstype} has no hard links")
        if getattr_vp(vp).nlink >= fs.features.link_max:
            raise KernelError(Errno.EMLINK, "too many links")
        with tdvp.mount.lock:
            fs.link(tdvp.node, tname, vp.node)
    finally:
        release(vfs, *held)


def sys_symlinkat(l: Any, target: Any, dirfd: int, path: Any) -> None:
    vfs = vfs_of(l)
    tgt = l.proc.vm.copyinstr(target, SYMLINK_MAX + 1)   # ENAMETOOLONG past 4,095 bytes
    if not tgt:
        raise KernelError(Errno.ENOENT, "empty symlink target")
    dvp, name, vp, trailing = vfs.namei.walk_parent(l, dirfd, path_arg(l, path))
    try:
        dattr = _prepare_create(l, dvp, name, vp)
        if trailing:
            raise KernelError(Errno.ENOENT, "trailing slash on a new symlink")
        if not dvp.mount.fs.features.symlinks:
            raise KernelError(Errno.EPERM, f"{dvp.mount.fstype} has no symbolic links")
        _mode, uid, gid = new_owner(l, dattr, 0o777, isdir=False)
        with dvp.mount.lock:
            dvp.mount.fs.symlink(dvp.node, name, tgt, uid, gid)
    finally:
        release(vfs, dvp, vp)


# ---- attributes -------------------------------------------------------------------------------
def _at_vnode(l: Any, dirfd: int, path: Any, flag: int) -> Vnode:
    if flag & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise KernelError(Errno.EINVAL, f"bad flag 0x{flag:x}")
    return vfs_of(l).namei.walk_at(l, dirfd, path_arg(l, path), not flag & AT_SYMLINK_NOFOLLOW,
                                   bool(flag & AT_EMPTY_PATH))


def _chmod(l: Any, vp: Vnode, mode: int) -> None:
    cred = l.proc.cred
    attr = getattr_vp(vp)
    check_owner(cred, attr)
    require_writable(vp)
    mode &= 0o7777
    if not cred.is_root:
        if not vp.isdir and mode & 0o1000:
            mode &= ~0o1000
        if mode & S_ISGID and not cred.in_group(attr.gid):
            mode &= ~S_ISGID
    setattr_vp(vp, SetAttr(mode=mode))


def sys_fchmodat(l: Any, dirfd: int, path: Any, mode: int, flag: int) -> None:
    vfs = vfs_of(l)
    vp = _at_vnode(l, dirfd, path, flag)
    try:
        if vp.vtype == S_IFLNK:
            raise KernelError(Errno.EOPNOTSUPP, "cannot chmod a symbolic link")
        _chmod(l, vp, mode)
    finally:
        release(vfs, vp)


def sys_fchmod(l: Any, fd: int, mode: int) -> None:
    _chmod(l, fd_vnode(l, fd), mode)


def _chown(l: Any, vp: Vnode, uid: int, gid: int) -> None:
    cred = l.proc.cred
    attr = getattr_vp(vp)
    uid = attr.uid if uid in (-1, 0xFFFFFFFF) else uid
    gid = attr.gid if gid in (-1, 0xFFFFFFFF) else gid
    if not 0 <= uid < 2**32 - 1 or not 0 <= gid < 2**32 - 1:
        raise KernelError(Errno.EINVAL, "uid/gid out of range")
    if not cred.is_root:
        if cred.euid != attr.uid or uid != attr.uid or not cred.in_group(gid):
            raise KernelError(Errno.EPERM, "chown: not permitted")
    require_writable(vp)
    changes = SetAttr(uid=uid if uid != attr.uid else None, gid=gid if gid != attr.gid else None)
    if not vp.isdir and attr.mode & (S_ISUID | S_ISGID) and vp.vtype != S_IFLNK:
        if not cred.is_root or changes.uid is not None or changes.gid is not None:
            changes.mode = attr.mode & 0o7777 & ~(S_ISUID | S_ISGID)
    if changes.uid is None and changes.gid is None and changes.mode is None:
        changes = SetAttr(uid=uid)  # still a change of ctime, as on Linux
    setattr_vp(vp, changes)


def sys_fchownat(l: Any, dirfd: int, path: Any, uid: int, gid: int, flag: int) -> None:
    vfs = vfs_of(l)
    vp = _at_vnode(l, dirfd, path, flag)
    try:
        _chown(l, vp, uid, gid)
    finally:
        release(vfs, vp)


def sys_fchown(l: Any, fd: int, uid: int, gid: int) -> None:
    _chown(l, fd_vnode(l, fd), uid, gid)


def _utimes(l: Any, vp: Vnode, times: Any) -> None:
    k = l.kernel
    now = k.time_ns()
    if times is None:
        at = mt = now
        explicit = False
    else:
        raw = l.proc.vm.copyin(times, 2 * TIMESPEC.size)
        vals = []
        explicit = False
        for i in range(2):
            sec, nsec = TIMESPEC.unpack_from(raw, i * TIMESPEC.size)
            if nsec == UTIME_NOW:
                vals.append(now)
            elif nsec == UTIME_OMIT:
                vals.append(None)
            elif not 0 <= nsec < 1_000_000_000:
                raise KernelError(Errno.EINVAL, "utimens: nanoseconds out of range")
            else:
                vals.append(sec * 1_000_000_000 + nsec)
                explicit = True
        at, mt = vals
        if at is None and mt is None:
            return
    cred = l.proc.cred
    attr = getattr_vp(vp)
    if explicit:
        check_owner(cred, attr)
    elif cred.euid not in (0, attr.uid):
        check_access(cred, attr, W_OK)
    setattr_vp(vp, SetAttr(atime_ns=at, mtime_ns=mt))


def sys_utimensat(l: Any, dirfd: int, path: Any, times: Any, flag: int) -> None:
    vfs = vfs_of(l)
    vp = _at_vnode(l, dirfd, path, flag)
    try:
        _utimes(l, vp, times)
    finally:
        release(vfs, vp)


def sys_futimens(l: Any, fd: int, times: Any) -> None:
    _utimes(l, fd_vnode(l, fd), times)
