"""Path name lookup (namei).

Interface (methods of ``Namei(vfs)``; every returned vnode is referenced, the caller releases):
    lookup(l, dvp, name) -> vp             one component (``.``, ``..`` and mount crossings)
    walk(l, dirfd, path, follow=True) -> vp
    walk_parent(l, dirfd, path, follow=False) -> (dvp, name, vp | None, trailing_slash)
    start(l, dirfd, path) -> vp            the directory a relative path starts from
    walk_at(l, dirfd, path, follow, empty_ok) -> vp
                                           walk, or with ``empty_ok`` and an empty path the
                                           file ``dirfd`` refers to (AT_EMPTY_PATH), any type

Rules: at most MAXSYMLINKS symbolic links per lookup (ELOOP); a component longer than NAME_MAX
is ENAMETOOLONG; searching a directory needs X permission (EACCES); a non-directory in the middle
of a path is ENOTDIR; an empty path is ENOENT; ``..`` never leaves the process root or the
kernel root, and crosses from a mount's root to the directory it covers; a trailing slash
demands a directory and follows a final symlink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.abi import AT_FDCWD, NAME_MAX
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.perm import X_OK, can_access
from rumpkernel.vfs.vattr import S_IFLNK
from rumpkernel.vfs.vnode import Vnode

if TYPE_CHECKING:
    from rumpkernel.vfs.mount import Vfs

MAXSYMLINKS = 32


class Namei:
    def __init__(self, vfs: Vfs) -> None:
        self.vfs = vfs
        self.vc = vfs.vcache

    def root_of(self, l: Any) -> Vnode:
        return l.proc.root or self.vfs.rootvp

    def start(self, l: Any, dirfd: int, path: bytes) -> Vnode:
        if path[:1] == b"/":
            return self.vc.vref(self.root_of(l))
        if dirfd == AT_FDCWD:
            return self.vc.vref(l.proc.cwd or self.vfs.rootvp)
        fp = l.proc.fd.get(dirfd)
        vp = getattr(fp, "vp", None)
        if vp is None or not vp.isdir:
            raise KernelError(Errno.ENOTDIR, f"fd {dirfd} is not a directory")
        return self.vc.vref(vp)

    def lookup(self, l: Any, dvp: Vnode, name: bytes) -> Vnode:
        if not dvp.isdir:
            raise KernelError(Errno.ENOTDIR, "not a directory")
        mp = dvp.mount
        if mp.dead:
            raise KernelError(Errno.ENOENT, "file system was unmounted")
        cred = l.proc.cred
        if cred.euid != 0:
            with mp.lock:
                attr = mp.fs.getattr(dvp.node)
            if not can_access(cred, attr, X_OK):
                raise KernelError(Errno.EACCES, "search permission denied")
        if name == b".":
            return self.vc.vref(dvp)
        if name == b"..":
            if dvp is self.root_of(l) or dvp is self.vfs.rootvp:
                return self.vc.vref(dvp)
            while dvp is dvp.mount.rootvp and dvp.mount.covered is not None:
                dvp = dvp.mount.covered
            mp = dvp.mount
        elif len(name) > NAME_MAX:
            raise KernelError(Errno.ENAMETOOLONG, "name longer than 255 bytes")
        with mp.lock:
            ino = mp.fs.lookup(dvp.node, name)
        vp = self.vc.get(mp, ino)
        while vp.mounted_here is not None:
            top = self.vc.vref(vp.mounted_here.rootvp)
            self.vc.vrele(vp)
            vp = top
        return vp

    def _readlink(self, vp: Vnode) -> bytes:
        with vp.mount.lock:
            target = vp.mount.fs.readlink(vp.node)
        if not target:
            raise KernelError(Errno.ENOENT, "empty symbolic link")
        return target

    def _resolve(self, l: Any, dirfd: int, path: bytes, follow: bool,
                 parent: bool) -> tuple[Vnode, bytes, Vnode | None, bool]:
        if not path:
            raise KernelError(Errno.ENOENT, "empty path")
        vc = self.vc
        cur = self.start(l, dirfd, path)
        trailing = path.endswith(b"/")
        pending = [c for c in path.split(b"/") if c]
        pending.reverse()
        links = 0
        if not pending:
            return cur, b".", (vc.vref(cur) if parent else None), trailing
        try:
            while True:
                name = pending.pop()
                last = not pending
                if last and parent:
                    try:
                        vp: Vnode | None = self.lookup(l, cur, name)
                    except KernelError as e:
                        if e.errno != Errno.ENOENT:
                            raise
                        vp = None
                else:
                    vp = self.lookup(l, cur, name)
                if vp is not None and vp.vtype == S_IFLNK and (not last or follow or trailing):
                    links += 1
                    if links > MAXSYMLINKS:
                        vc.vrele(vp)
                        raise KernelError(Errno.ELOOP, "too many levels of symbolic links")
                    try:
                        target = self._readlink(vp)
                    finally:
                        vc.vrele(vp)
                    if target[:1] == b"/":
                        vc.vrele(cur)
                        cur = vc.vref(self.root_of(l))
                    comps = [c for c in target.split(b"/") if c]
                    if last and target.endswith(b"/"):
                        trailing = True
                    if not comps:
                        comps = [b"."]
                    pending.extend(reversed(comps))
                    continue
                if last:
                    if parent:
                        return cur, name, vp, trailing
                    assert vp is not None
                    vc.vrele(cur)
                    return vp, name, None, trailing
                assert vp is not None
                vc.vrele(cur)
                cur = vp
        except BaseException:
            vc.vrele(cur)
            raise

    def walk(self, l: Any, dirfd: int, path: bytes, follow: bool = True) -> Vnode:
        vp, _name, _vp, trailing = self._resolve(l, dirfd, path, follow, parent=False)
        if trailing and not vp.isdir:
            self.vc.vrele(vp)
            raise KernelError(Errno.ENOTDIR, "trailing slash on a non-directory")
        return vp

    def walk_at(self, l: Any, dirfd: int, path: bytes, follow: bool = True,
                empty_ok: bool = False) -> Vnode:
        """``walk``; with ``empty_ok`` (the caller's AT_EMPTY_PATH) an empty path names the
        file ``dirfd`` refers to -- of any type, an O_PATH handle included -- or the working
        directory for AT_FDCWD.  EBADF for a descriptor that names no file system object."""
        if path or not empty_ok:
            return self.walk(l, dirfd, path, follow)
        if dirfd == AT_FDCWD:
            return self.vc.vref(l.proc.cwd or self.vfs.rootvp)
        vp = getattr(l.proc.fd.get(dirfd), "vp", None)
        if vp is None:
            raise KernelError(Errno.EBADF, f"fd {dirfd} is not a file system object")
        return self.vc.vref(vp)

    def walk_parent(self, l: Any, dirfd: int, path: bytes,
                    follow: bool = False) -> tuple[Vnode, bytes, Vnode | None, bool]:
        return self._resolve(l, dirfd, path, follow, parent=True)
