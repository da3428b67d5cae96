"""VFS system calls: opening, status, data, directories, working directory, mounts, extended
attributes.  (Name space changes live in ``vfs_names`` and are re-exported here, so the master
table names one handler module for the faction.)

File handles for servers (the FUSE file server names every file it serves by a descriptor):
``O_PATH`` opens a handle that holds the vnode without opening it for I/O (no permission check
on the file itself, any file type, a symlink itself with O_NOFOLLOW); ``AT_EMPTY_PATH`` makes
the *at calls act on the file ``dirfd`` refers to; ``reopen`` opens a handle for I/O with the
checks open(2) makes, or an open file as a new handle.  The *xattrat calls are the xattr calls
with a ``dirfd`` and ``AT_*`` flags (Linux 6.13 names)."""

from __future__ import annotations

import json
from typing import Any

from rumpkernel.kern.abi import (
    AT_EMPTY_PATH,
    O_ACCMODE,
    O_APPEND,
    O_CLOEXEC,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NOFOLLOW,
    O_NONBLOCK,
    O_PATH,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
)
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.pipe import Pipe
from rumpkernel.kern.syscall.structs import STAT, STATVFS, dirent_reclen, pack_dirent
from rumpkernel.vfs.mount import MNT_FORCE, MNT_RDONLY
from rumpkernel.vfs.perm import R_OK, W_OK, X_OK, can_access, check_access
from rumpkernel.vfs.vattr import (
    S_IFBLK,
    S_IFCHR,
    S_IFIFO,
    S_IFLNK,
    S_IFREG,
    S_IFSOCK,
    SetAttr,
)
from rumpkernel.vfs.vfs_common import (
    AT_EACCESS,
    AT_FDCWD,
    AT_SYMLINK_NOFOLLOW,
    fd_vnode,
    getattr_vp,
    new_owner,
    path_arg,
    release,
    require_writable,
    vfs_of,
)
from rumpkernel.vfs.vfs_names import (  # noqa: F401 - re-exported handlers
    sys_fchmod,
    sys_fchmodat,
    sys_fchown,
    sys_fchownat,
    sys_futimens,
    sys_linkat,
    sys_mkdirat,
    sys_mknodat,
    sys_renameat,
    sys_renameat2,
    sys_symlinkat,
    sys_unlinkat,
    sys_utimensat,
)
from rumpkernel.vfs.vnfile import DevFile, FifoFile, PathFile, VnodeFile, kill_privs, stat_tuple
from rumpkernel.vfs.vnode import Vnode

ST_RDONLY = 0x1
XATTR_NOFOLLOW = 0x100
OPEN_FLAGS = (O_ACCMODE | O_NONBLOCK | O_APPEND | O_CREAT | O_TRUNC | O_EXCL |
              O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC | 0x80 | 0x8000 | 0x10000 | 0x2000000 |
              O_PATH)


# ---- open -------------------------------------------------------------------------------------
def _open_create(l: Any, dirfd: int, path: bytes, flags: int, mode: int) -> tuple[Vnode, bool]:
    vfs = vfs_of(l)
    follow = not flags & (O_EXCL | O_NOFOLLOW)
    dvp, name, vp, trailing = vfs.namei.walk_parent(l, dirfd, path, follow=follow)
    try:
        if vp is not None:
            if flags & O_EXCL:
                raise KernelError(Errno.EEXIST, "file exists")
            if vp.vtype == S_IFLNK:
                raise KernelError(Errno.ELOOP, "O_NOFOLLOW on a symbolic link")
            if trailing and not vp.isdir:
                raise KernelError(Errno.ENOTDIR, "trailing slash on a non-directory")
            out, vp = vp, None
            return out, False
        if trailing or name in (b".", b".."):
            raise KernelError(Errno.EISDIR, "cannot create a directory with open")
        require_writable(dvp)
        dattr = getattr_vp(dvp)
        check_access(l.proc.cred, dattr, W_OK | X_OK)
        from rumpkernel.vfs.vfs_common import check_name

        check_name(dvp, name)
        perms, uid, gid = new_owner(l, dattr, mode, isdir=False)
        mp = dvp.mount
        with mp.lock:
            ino = mp.fs.create(dvp.node, name, S_IFREG | perms, uid, gid, 0)
        return vfs.vcache.get(mp, ino, S_IFREG), True
    finally:
        release(vfs, dvp, vp)


def _open_vnode(l: Any, vp: Vnode, flags: int, created: bool) -> Any:
    k = l.kernel
    acc = flags & O_ACCMODE
    if flags & O_DIRECTORY and not vp.isdir:
        raise KernelError(Errno.ENOTDIR, "not a directory")
    if vp.vtype == S_IFLNK:
        raise KernelError(Errno.ELOOP, "O_NOFOLLOW on a symbolic link")
    if vp.isdir and (acc != O_RDONLY or flags & O_TRUNC):
        raise KernelError(Errno.EISDIR, "is a directory")
    if created:  # a new, empty regular file of ours: nothing to check or truncate
        return VnodeFile(k, vp, flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOFOLLOW))
    attr = getattr_vp(vp)
    if not created:
        want = (R_OK if acc in (O_RDONLY, O_RDWR) else 0) | \
               (W_OK if acc in (O_WRONLY, O_RDWR) or flags & O_TRUNC else 0)
        check_access(l.proc.cred, attr, want)
    vtype = vp.vtype
    if vtype in (S_IFREG, S_IFLNK) or vp.isdir:
        if acc != O_RDONLY or flags & O_TRUNC:
            require_writable(vp)
        if flags & O_TRUNC and acc != O_RDONLY and attr.size and not created:
            _set_size(l, vp, 0)
        return VnodeFile(k, vp, flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOFOLLOW))
    if vtype == S_IFIFO:
        return _open_fifo(l, vp, flags)
    if vtype in (S_IFCHR, S_IFBLK):
        return _open_device(l, vp, flags, attr.rdev)
    raise KernelError(Errno.ENXIO, "cannot open a socket node")


def _open_fifo(l: Any, vp: Vnode, flags: int) -> FifoFile:
    k = l.kernel
    acc = flags & O_ACCMODE
    if acc == O_RDWR:
        raise KernelError(Errno.EINVAL, "FIFOs open for reading or writing, not both")
    if vp.fifo is None:
        vp.fifo = Pipe(k, ino=vp.ino)
    reader = acc == O_RDONLY
    fp = FifoFile(k, vp, vp.fifo, flags, reader)
    try:
        vp.fifo.wait_for_peer(reader, bool(flags & O_NONBLOCK))
    except KernelError:
        fp.vp = vfs_of(l).vcache.vref(vp)  # close() releases one reference
        fp.drop(l)
        raise
    return fp


def _open_device(l: Any, vp: Vnode, flags: int, rdev: int) -> DevFile:
    vfs = vfs_of(l)
    if vp.vtype == S_IFCHR:
        drv = vfs.cdevs.get(rdev)
        if drv is None:
            raise KernelError(Errno.ENXIO, f"no device {rdev >> 8},{rdev & 0xff}")
        return DevFile(l.kernel, vp, flags, drv.open(l, flags))
    from rumpkernel.vfs.blkdev import RawBlockAccess

    dev = vfs.bdevs.get(rdev)
    if dev is None:
        raise KernelError(Errno.ENXIO, f"no block device {rdev >> 8},{rdev & 0xff}")
    if flags & O_ACCMODE != O_RDONLY and dev.readonly:
        raise KernelError(Errno.EROFS, f"{dev.name} is read-only")
    return DevFile(l.kernel, vp, flags, RawBlockAccess(dev))


def sys_openat(l: Any, dirfd: int, path: Any, flags: int, mode: int) -> int:
    if flags & ~OPEN_FLAGS or flags & O_ACCMODE == O_ACCMODE:
        raise KernelError(Errno.EINVAL, f"open flags 0x{flags:x}")
    p = path_arg(l, path)
    vfs = vfs_of(l)
    if flags & O_PATH:
        return _open_path(l, vfs.namei.walk(l, dirfd, p, follow=not flags & O_NOFOLLOW), flags)
    if flags & O_CREAT:
        vp, created = _open_create(l, dirfd, p, flags, mode)
    else:
        vp, created = vfs.namei.walk(l, dirfd, p, follow=not flags & O_NOFOLLOW), False
    try:
        fp = _open_vnode(l, vp, flags, created)
    except BaseException:
        release(vfs, vp)
        raise
    try:
        return l.proc.fd.alloc(fp, cloexec=bool(flags & O_CLOEXEC))
    except KernelError:
        fp.drop(l)
        raise


def _open_path(l: Any, vp: Vnode, flags: int) -> int:
    """An O_PATH handle on ``vp`` (whose reference it takes over); of the flags only
    O_DIRECTORY and O_CLOEXEC count, as on Linux."""
    try:
        if flags & O_DIRECTORY and not vp.isdir:
            raise KernelError(Errno.ENOTDIR, "not a directory")
        fp = PathFile(l.kernel, vp, O_PATH | (flags & O_NOFOLLOW))
    except BaseException:
        release(vfs_of(l), vp)
        raise
    try:
        return l.proc.fd.alloc(fp, cloexec=bool(flags & O_CLOEXEC))
    except KernelError:
        fp.drop(l)
        raise


def sys_reopen(l: Any, fd: int, flags: int) -> int:
    """Open the file ``fd`` refers to (an O_PATH handle or any open file) again: for I/O with
    the permission checks of open(2) (O_TRUNC truncates), or with O_PATH as a new handle."""
    if flags & ~OPEN_FLAGS or flags & O_ACCMODE == O_ACCMODE or flags & (O_CREAT | O_EXCL):
        raise KernelError(Errno.EINVAL, f"reopen flags 0x{flags:x}")
    vfs = vfs_of(l)
    vp = vfs.vcache.vref(fd_vnode(l, fd, path_ok=True))
    if flags & O_PATH:
        return _open_path(l, vp, flags)
    if vp.mount.dead:
        release(vfs, vp)
        raise KernelError(Errno.EIO, "file system was unmounted")
    try:
        fp = _open_vnode(l, vp, flags, False)
    except BaseException:
        release(vfs, vp)
        raise
    try:
        return l.proc.fd.alloc(fp, cloexec=bool(flags & O_CLOEXEC))
    except KernelError:
        fp.drop(l)
        raise


# ---- status -----------------------------------------------------------------------------------
def sys_fstatat(l: Any, dirfd: int, path: Any, sb: Any, flag: int) -> None:
    vfs = vfs_of(l)
    if flag & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise KernelError(Errno.EINVAL, "fstatat: bad flag")
    vp = vfs.namei.walk_at(l, dirfd, path_arg(l, path), not flag & AT_SYMLINK_NOFOLLOW,
                           bool(flag & AT_EMPTY_PATH))
    try:
        st = stat_tuple(vp, getattr_vp(vp))
    finally:
        release(vfs, vp)
    l.proc.vm.copyout(STAT.pack(*st), sb)


def sys_faccessat(l: Any, dirfd: int, path: Any, mode: int, flag: int) -> None:
    vfs = vfs_of(l)
    if mode & ~7 or flag & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise KernelError(Errno.EINVAL, "access: bad mode or flag")
    vp = vfs.namei.walk_at(l, dirfd, path_arg(l, path), not flag & AT_SYMLINK_NOFOLLOW,
                           bool(flag & AT_EMPTY_PATH))
    try:
        attr = getattr_vp(vp)
        if mode & W_OK and vp.mount.readonly and vp.vtype not in (S_IFCHR, S_IFBLK, S_IFIFO,
                                                                   S_IFSOCK):
            raise KernelError(Errno.EROFS, "read-only file system")
        if mode and not can_access(l.proc.cred, attr, mode, real=not flag & AT_EACCESS):
            raise KernelError(Errno.EACCES, "permission denied")
    finally:
        release(vfs, vp)


def sys_readlinkat(l: Any, dirfd: int, path: Any, buf: Any, n: int) -> int:
    vfs = vfs_of(l)
    if n <= 0:
        raise KernelError(Errno.EINVAL, "readlink: buffer size")
    # an empty path reads the symlink an O_PATH|O_NOFOLLOW descriptor holds (as on Linux)
    p = path_arg(l, path)
    vp = vfs.namei.walk_at(l, dirfd, p, False, empty_ok=dirfd != AT_FDCWD)
    try:
        if vp.vtype != S_IFLNK:
            raise KernelError(Errno.EINVAL, "not a symbolic link")
        with vp.mount.lock:
            target = vp.mount.fs.readlink(vp.node)
    finally:
        release(vfs, vp)
    target = target[:n]
    l.proc.vm.copyout(target, buf)
    return len(target)


# ---- data -------------------------------------------------------------------------------------
def _truncate(l: Any, vp: Vnode, length: int, check_perm: bool) -> None:
    if length < 0:
        raise KernelError(Errno.EINVAL, "negative length")
    if vp.isdir:
        raise KernelError(Errno.EISDIR, "is a directory")
    if vp.vtype != S_IFREG:
        raise KernelError(Errno.EINVAL, "not a regular file")
    attr = getattr_vp(vp)
    if check_perm:
        check_access(l.proc.cred, attr, W_OK)
    if length > vp.mount.fs.features.max_file_size:
        raise KernelError(Errno.EFBIG, "file too large")
    _set_size(l, vp, length)


def _set_size(l: Any, vp: Vnode, length: int) -> None:
    """Truncate or extend; a caller other than root clears set-user-id/set-group-id."""
    require_writable(vp)
    mp = vp.mount
    with mp.lock:
        if l.proc.cred.euid != 0:
            kill_privs(mp.fs, vp.node)
        mp.fs.setattr(vp.node, SetAttr(size=length))


def sys_truncate(l: Any, path: Any, length: int) -> None:
    vfs = vfs_of(l)
    vp = vfs.namei.walk(l, AT_FDCWD, path_arg(l, path))
    try:
        _truncate(l, vp, length, True)
    finally:
        release(vfs, vp)


def sys_ftruncate(l: Any, fd: int, length: int) -> None:
    fp = l.proc.fd.get(fd)
    if not fp.writable:
        raise KernelError(Errno.EINVAL, "not open for writing")
    _truncate(l, fd_vnode(l, fd), length, False)


def _fsync(l: Any, fd: int, datasync: bool) -> None:
    vp = fd_vnode(l, fd)
    mp = vp.mount
    if mp.readonly or mp.dead:
        return
    with mp.lock:
        mp.fs.fsync(vp.node, datasync)


def sys_fsync(l: Any, fd: int) -> None:
    _fsync(l, fd, False)


def sys_fdatasync(l: Any, fd: int) -> None:
    _fsync(l, fd, True)


def sys_sync(l: Any) -> None:
    vfs_of(l).sync()


# ---- directories ------------------------------------------------------------------------------
def sys_getdents(l: Any, fd: int, buf: Any, n: int) -> int:
    fp = l.proc.fd.get(fd)
    vp = fd_vnode(l, fd)
    if not vp.isdir:
        raise KernelError(Errno.ENOTDIR, "not a directory")
    mp = vp.mount
    out: list[bytes] = []
    used = 0
    with mp.lock:
        if mp.dead:
            raise KernelError(Errno.EIO, "file system was unmounted")
        cookie = fp.offset
        while used < n:
            batch = mp.fs.readdir(vp.node, cookie)
            if not batch:
                break
            for ent in batch:
                rec = dirent_reclen(len(ent.name))
                if used + rec > n:
                    break
                out.append(pack_dirent(ent.ino, ent.cookie, ent.dtype, ent.name))
                used += rec
                cookie = ent.cookie
            else:
                continue
            break
        if not out and used == 0 and n < 512:
            batch = mp.fs.readdir(vp.node, cookie)
            if batch:
                raise KernelError(Errno.EINVAL, "getdents buffer too small")
        fp.offset = cookie
    data = b"".join(out)
    if data:
        l.proc.vm.copyout(data, buf)
    return len(data)


def _set_cwd(l: Any, vp: Vnode) -> None:
    if not vp.isdir:
        raise KernelError(Errno.ENOTDIR, "not a directory")
    check_access(l.proc.cred, getattr_vp(vp), X_OK)
    vfs = vfs_of(l)
    old = l.proc.cwd
    l.proc.cwd = vfs.vcache.vref(vp)
    if old is not None:
        vfs.vcache.vrele(old)


def sys_chdir(l: Any, path: Any) -> None:
    vfs = vfs_of(l)
    vp = vfs.namei.walk(l, AT_FDCWD, path_arg(l, path))
    try:
        _set_cwd(l, vp)
    finally:
        release(vfs, vp)


def sys_fchdir(l: Any, fd: int) -> None:
    _set_cwd(l, fd_vnode(l, fd, path_ok=True))


def _name_in_parent(vfs: Any, pvp: Vnode, ino: int) -> bytes:
    mp = pvp.mount
    cookie = 0
    with mp.lock:
        while True:
            batch = mp.fs.readdir(pvp.node, cookie)
            if not batch:
                break
            for ent in batch:
                if ent.ino == ino and ent.name not in (b".", b".."):
                    return ent.name
                cookie = ent.cookie
    raise KernelError(Errno.ENOENT, "working directory was removed")


def sys_getcwd(l: Any, buf: Any, n: int) -> int:
    vfs = vfs_of(l)
    root = l.proc.root or vfs.rootvp
    cur = vfs.vcache.vref(l.proc.cwd or root)
    parts: list[bytes] = []
    try:
        for _ in range(1024):
            if cur is root:
                break
            while cur is cur.mount.rootvp and cur.mount.covered is not None:
                nxt = vfs.vcache.vref(cur.mount.covered)
                vfs.vcache.vrele(cur)
                cur = nxt
            if cur is root:
                break
            parent = vfs.namei.lookup(l, cur, b"..")
            parts.append(_name_in_parent(vfs, parent, cur.ino))
            vfs.vcache.vrele(cur)
            cur = parent
    finally:
        vfs.vcache.vrele(cur)
    path = b"/" + b"/".join(reversed(parts))
    if len(path) + 1 > n:
        raise KernelError(Errno.ERANGE, "buffer too small for the working directory")
    l.proc.vm.copyout(path + b"\0", buf)
    return len(path)


# ---- file systems -----------------------------------------------------------------------------
def _statvfs(vp: Vnode) -> bytes:
    mp = vp.mount
    with mp.lock:
        s = mp.fs.statfs()
    flag = ST_RDONLY if mp.readonly else 0
    return STATVFS.pack(s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree,
                        s.favail, s.fsid or mp.id, flag, s.namemax)


def sys_statvfs(l: Any, path: Any, buf: Any) -> None:
    vfs = vfs_of(l)
    vp = vfs.namei.walk(l, AT_FDCWD, path_arg(l, path))
    try:
        data = _statvfs(vp)
    finally:
        release(vfs, vp)
    l.proc.vm.copyout(data, buf)


def sys_fstatvfs(l: Any, fd: int, buf: Any) -> None:
    l.proc.vm.copyout(_statvfs(fd_vnode(l, fd, path_ok=True)), buf)


def sys_chroot(l: Any, path: Any) -> None:
    """chroot(2): the directory becomes the process root; the working directory is kept (an
    open directory descriptor and ``fchdir`` + ``chroot(".")`` lead back out, as on NetBSD)."""
    vfs = vfs_of(l)
    if not l.proc.cred.is_root:
        raise KernelError(Errno.EPERM, "chroot: not root")
    vp = vfs.namei.walk(l, AT_FDCWD, path_arg(l, path))
    if not vp.isdir:
        release(vfs, vp)
        raise KernelError(Errno.ENOTDIR, "chroot: not a directory")
    old, l.proc.root = l.proc.root, vp
    if old is not None:
        release(vfs, old)


def sys_fsinfo(l: Any, path: Any, buf: Any, n: int) -> int:
    """JSON facts about the mount holding ``path`` (for ``fsu info``); n=0 returns the size."""
    vfs = vfs_of(l)
    vp = vfs.namei.walk(l, AT_FDCWD, path_arg(l, path))
    try:
        mp = vp.mount
        if mp.dead:
            raise KernelError(Errno.EIO, "file system was unmounted")
        with mp.lock:
            driver = mp.fs.info()
        facts = {"fstype": mp.fstype, "source": mp.source, "readonly": mp.readonly,
                 "options": dict(mp.options), "mount_id": mp.id, "info": driver}
    finally:
        release(vfs, vp)
    data = json.dumps(facts, sort_keys=True, default=_json_default).encode()
    if n == 0:
        return len(data)
    if n < len(data):
        raise KernelError(Errno.ERANGE, f"fsinfo: {len(data)} bytes do not fit in {n}")
    l.proc.vm.copyout(data, buf)
    return len(data)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)


def parse_options(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise KernelError(Errno.EINVAL, "mount options are not UTF-8") from None
    opts: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        opts[key] = value
    return opts


def sys_mount(l: Any, fstype: Any, target: Any, flags: int, data: Any, datalen: int) -> None:
    vfs = vfs_of(l)
    if not l.proc.cred.is_root:
        raise KernelError(Errno.EPERM, "mount: not root")
    if not 0 <= datalen <= 4096:
        raise KernelError(Errno.EINVAL, "mount: options too long")
    name = l.proc.vm.copyinstr(fstype, 32).decode("ascii", "replace")
    opts = parse_options(l.proc.vm.copyin(data, datalen) if datalen else b"")
    vfs.fstype(name)
    dev, source = None, name
    if "from" in opts:
        dev, source = _mount_device(l, opts["from"].encode())
    vp = vfs.namei.walk(l, AT_FDCWD, path_arg(l, target))
    try:
        if not vp.isdir:
            raise KernelError(Errno.ENOTDIR, "mount point is not a directory")
        if vp.mounted_here is not None or vp is vp.mount.rootvp:
            raise KernelError(Errno.EBUSY, "already a mount point")
        readonly = bool(flags & MNT_RDONLY) or "ro" in opts
        vfs.mount(name, vp, readonly, opts, dev, source)
    finally:
        release(vfs, vp)


def _mount_device(l: Any, path: bytes) -> tuple[Any, str]:
    vfs = vfs_of(l)
    vp = vfs.namei.walk(l, AT_FDCWD, path)
    try:
        if vp.vtype != S_IFBLK:
            raise KernelError(Errno.ENOTBLK, f"{path.decode(errors='replace')}: not a block "
                              "device")
        rdev = getattr_vp(vp).rdev
    finally:
        release(vfs, vp)
    dev = vfs.bdevs.get(rdev)
    if dev is None:
        raise KernelError(Errno.ENXIO, f"no block device {rdev >> 8},{rdev & 0xff}")
    if any(m.dev is dev for m in vfs.mounts):
        raise KernelError(Errno.EBUSY, f"{path.decode(errors='replace')} is already mounted")
    return dev, path.decode(errors="replace")


def sys_unmount(l: Any, target: Any, flags: int) -> None:
    vfs = vfs_of(l)
    if not l.proc.cred.is_root:
        raise KernelError(Errno.EPERM, "unmount: not root")
    vp = vfs.namei.walk(l, AT_FDCWD, path_arg(l, target))
    mp = vp.mount
    is_root_of_mount = vp is mp.rootvp
    release(vfs, vp)
    if not is_root_of_mount:
        raise KernelError(Errno.EINVAL, "not a mount point")
    if mp.covered is None:
        raise KernelError(Errno.EBUSY, "cannot unmount the root file system")
    vfs.unmount(mp, force=bool(flags & MNT_FORCE))


# ---- extended attributes ------------------------------------------------------------------------
# The path calls take XATTR_NOFOLLOW (0x100); the *at calls AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH
# (and for setxattrat XATTR_CREATE 1 | XATTR_REPLACE 2 in the same word: the bits differ).
XATTR_AT_FLAGS = AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH


def _xattr_vnode(l: Any, dirfd: int, path: Any, at_flag: int) -> Vnode:
    if at_flag & ~XATTR_AT_FLAGS:
        raise KernelError(Errno.EINVAL, f"xattr: bad flag 0x{at_flag:x}")
    return vfs_of(l).namei.walk_at(l, dirfd, path_arg(l, path),
                                   not at_flag & AT_SYMLINK_NOFOLLOW, bool(at_flag & AT_EMPTY_PATH))


def _path_flag(flag: int) -> int:
    return AT_SYMLINK_NOFOLLOW if flag & XATTR_NOFOLLOW else 0


def _xattr_name(l: Any, name: Any, vp: Vnode, write: bool) -> bytes:
    n = l.proc.vm.copyinstr(name, 256)
    if not n or b"." not in n:
        raise KernelError(Errno.EOPNOTSUPP, "attribute names need a namespace (user.x)")
    ns = n.split(b".", 1)[0]
    cred = l.proc.cred
    if ns in (b"trusted", b"security", b"system") and not cred.is_root:
        raise KernelError(Errno.EPERM, "privileged attribute namespace")
    if ns == b"user":
        attr = getattr_vp(vp)
        if vp.vtype not in (S_IFREG,) and not vp.isdir:
            raise KernelError(Errno.EPERM if write else Errno.ENOATTR,
                              "user attributes only on files and directories")
        check_access(cred, attr, W_OK if write else R_OK)
    return n


def _getxattr(l: Any, dirfd: int, path: Any, name: Any, buf: Any, n: int, flag: int) -> int:
    vfs = vfs_of(l)
    vp = _xattr_vnode(l, dirfd, path, flag)
    try:
        key = _xattr_name(l, name, vp, False)
        with vp.mount.lock:
            value = vp.mount.fs.getxattr(vp.node, key)
    finally:
        release(vfs, vp)
    if n == 0:
        return len(value)
    if n < len(value):
        raise KernelError(Errno.ERANGE, "attribute value larger than the buffer")
    l.proc.vm.copyout(value, buf)
    return len(value)


def _setxattr(l: Any, dirfd: int, path: Any, name: Any, value: Any, n: int, flag: int,
              how: int) -> None:
    vfs = vfs_of(l)
    if how == 3:
        raise KernelError(Errno.EINVAL, "XATTR_CREATE and XATTR_REPLACE together")
    if not 0 <= n <= 65536:
        raise KernelError(Errno.E2BIG, "attribute value too large")
    vp = _xattr_vnode(l, dirfd, path, flag)
    try:
        key = _xattr_name(l, name, vp, True)
        require_writable(vp)
        data = l.proc.vm.copyin(value, n) if n else b""
        with vp.mount.lock:
            vp.mount.fs.setxattr(vp.node, key, data, how)
    finally:
        release(vfs, vp)


def _listxattr(l: Any, dirfd: int, path: Any, buf: Any, n: int, flag: int) -> int:
    vfs = vfs_of(l)
    vp = _xattr_vnode(l, dirfd, path, flag)
    try:
        with vp.mount.lock:
            names = vp.mount.fs.listxattr(vp.node)
    finally:
        release(vfs, vp)
    if not l.proc.cred.is_root:
        names = [x for x in names if x.startswith(b"user.")]
    data = b"".join(x + b"\0" for x in names)
    if n == 0:
        return len(data)
    if n < len(data):
        raise KernelError(Errno.ERANGE, "attribute list larger than the buffer")
    if data:
        l.proc.vm.copyout(data, buf)
    return len(data)


def _removexattr(l: Any, dirfd: int, path: Any, name: Any, flag: int) -> None:
    vfs = vfs_of(l)
    vp = _xattr_vnode(l, dirfd, path, flag)
    try:
        key = _xattr_name(l, name, vp, True)
        require_writable(vp)
        with vp.mount.lock:
            vp.mount.fs.removexattr(vp.node, key)
    finally:
        release(vfs, vp)


def sys_getxattr(l: Any, path: Any, name: Any, buf: Any, n: int, flag: int) -> int:
    return _getxattr(l, AT_FDCWD, path, name, buf, n, _path_flag(flag))


def sys_setxattr(l: Any, path: Any, name: Any, value: Any, n: int, flag: int) -> None:
    _setxattr(l, AT_FDCWD, path, name, value, n, _path_flag(flag), flag & 3)


def sys_listxattr(l: Any, path: Any, buf: Any, n: int, flag: int) -> int:
    return _listxattr(l, AT_FDCWD, path, buf, n, _path_flag(flag))


def sys_removexattr(l: Any, path: Any, name: Any, flag: int) -> None:
    _removexattr(l, AT_FDCWD, path, name, _path_flag(flag))


def sys_getxattrat(l: Any, dirfd: int, path: Any, name: Any, buf: Any, n: int,
                   flag: int) -> int:
    return _getxattr(l, dirfd, path, name, buf, n, flag)


def sys_setxattrat(l: Any, dirfd: int, path: Any, name: Any, value: Any, n: int,
                   flag: int) -> None:
    _setxattr(l, dirfd, path, name, value, n, flag & ~3, flag & 3)


def sys_listxattrat(l: Any, dirfd: int, path: Any, buf: Any, n: int, flag: int) -> int:
    return _listxattr(l, dirfd, path, buf, n, flag)


def sys_removexattrat(l: Any, dirfd: int, path: Any, name: Any, flag: int) -> None:
    _removexattr(l, dirfd, path, name, flag)
