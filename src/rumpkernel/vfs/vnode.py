"""Vnodes and the vnode cache.

A vnode is the VFS's handle on one file of one mount: ``(mount, ino)`` plus the driver's node
object.  The cache keeps one vnode per file; ``vref``/``vrele`` count references (open files,
working directories, mount points, lookups in progress).  When the count drops to zero the
driver's ``inactive`` runs and the vnode goes on an LRU free list; past ``maxvnodes`` the oldest
free vnodes are reclaimed (driver ``reclaim``).  A vnode whose file was removed while referenced
is reclaimed as soon as its last reference goes.

Interface:
    Vnode                     mount, ino, node, vtype (S_IFMT bits), usecount, mounted_here
    VnodeCache(k)             get(mount, ino) -> referenced vnode; vref(vp); vrele(vp);
                              purge(mount) (unmount); busy(mount) -> count; stats()
    MountLock(k)              recursive per-mount lock held around every driver call
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.sync import KMutex
from rumpkernel.vfs.vattr import S_IFDIR, S_IFMT

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel
    from rumpkernel.vfs.mount import Mount

VNODE_BYTES = 256
DEFAULT_MAXVNODES = 16384


def MountLock(k: Kernel) -> KMutex:
    """The per-mount lock held around every driver call: recursive, because the VFS may call
    back into a mount while holding its lock."""
    return KMutex(k, recursive=True)


class Vnode:
    __slots__ = ("fifo", "ino", "mount", "mounted_here", "node", "removed", "usecount", "vtype")

    def __init__(self, mount: Mount, ino: int, node: Any, vtype: int) -> None:
        self.mount = mount
        self.ino = ino
        self.node = node
        self.vtype = vtype
        self.usecount = 0
        self.mounted_here: Mount | None = None
        self.removed = False
        self.fifo: Any = None

    @property
    def isdir(self) -> bool:
        return self.vtype == S_IFDIR

    def __repr__(self) -> str:
        return f"<Vnode {self.mount.fstype}:{self.ino} use={self.usecount}>"


class VnodeCache:
    def __init__(self, k: Kernel, maxvnodes: int = DEFAULT_MAXVNODES) -> None:
        self.k = k
        self.maxvnodes = maxvnodes
        self.table: dict[tuple[int, int], Vnode] = {}
        self.free: OrderedDict[tuple[int, int], Vnode] = OrderedDict()
        self.mtx = KMutex(k)
        self.reclaims = 0
        k.kmem.register_reclaimer(self._pagedaemon)

    def get(self, mount: Mount, ino: int, vtype: int | None = None) -> Vnode:
        """The referenced vnode of inode ``ino`` on ``mount`` (loaded through ``vget``).  A
        caller that knows the file type (it just created the file) passes ``vtype`` and saves a
        ``getattr``."""
        key = (mount.id, ino)
        vp = self.table.get(key)
        if vp is not None:
            self.vref(vp)
            return vp
        with mount.lock:
            vp = self.table.get(key)
            if vp is not None:
                self.vref(vp)
                return vp
            node = mount.fs.vget(ino)
            if vtype is None:
                vtype = mount.fs.getattr(node).mode & S_IFMT
            self.k.kmem.alloc(VNODE_BYTES, "vnode")
            vp = Vnode(mount, ino, node, vtype)
            vp.usecount = 1
            self.table[key] = vp
        if len(self.free) > self.maxvnodes:
            self._shrink(len(self.free) - self.maxvnodes)
        return vp

    def vref(self, vp: Vnode) -> Vnode:
        if vp.usecount == 0:
            self.free.pop((vp.mount.id, vp.ino), None)
        vp.usecount += 1
        return vp

    def vrele(self, vp: Vnode) -> None:
        if vp.usecount <= 0:
            raise AssertionError(f"vrele of unreferenced {vp!r}")
        vp.usecount -= 1
        if vp.usecount:
            return
        mount = vp.mount
        if mount.dead:
            return
        with mount.lock:
            if vp.usecount:
                return
            mount.fs.inactive(vp.node)
            if vp.removed:
                self._reclaim(vp)
                return
            self.free[(mount.id, vp.ino)] = vp

    def _reclaim(self, vp: Vnode) -> None:
        key = (vp.mount.id, vp.ino)
        if self.table.get(key) is vp:
            del self.table[key]
            self.free.pop(key, None)
            self.k.kmem.free(VNODE_BYTES, "vnode")
            self.reclaims += 1
            vp.mount.fs.reclaim(vp.node)

    def _shrink(self, n: int) -> int:
        done = 0
        while self.free and done < n:
            _key, vp = self.free.popitem(last=False)
            with vp.mount.lock:
                if vp.usecount == 0:
                    self.free[_key] = vp  # keep the table consistent for _reclaim
                    self._reclaim(vp)
                    done += 1
        return done

    def _pagedaemon(self, target_bytes: int) -> int:
        return self._shrink(max(1, target_bytes // VNODE_BYTES)) * VNODE_BYTES

    def busy(self, mount: Mount, allowed: int = 0) -> list[Vnode]:
        """Referenced vnodes of ``mount``, apart from its root's ``allowed`` references."""
        out = []
        for (mid, _ino), vp in self.table.items():
            if mid != mount.id or vp.usecount == 0:
                continue
            if vp is mount.rootvp and vp.usecount <= allowed:
                continue
            out.append(vp)
        return out

    def purge(self, mount: Mount) -> None:
        """Forget every vnode of ``mount`` (unmount); referenced ones become dead handles."""
        for key in [k for k in self.table if k[0] == mount.id]:
            vp = self.table.pop(key)
            self.free.pop(key, None)
            self.k.kmem.free(VNODE_BYTES, "vnode")
            if vp.usecount == 0 or mount.dead:
                try:
                    mount.fs.reclaim(vp.node)
                except KernelError:
                    pass

    def stats(self) -> dict[str, int]:
        return {"vnodes": len(self.table), "free": len(self.free),
                "referenced": sum(1 for v in self.table.values() if v.usecount),
                "reclaims": self.reclaims, "max": self.maxvnodes}


def check_alive(vp: Vnode) -> None:
    if vp.mount.dead:
        raise KernelError(Errno.EBADF, "file system was unmounted")
