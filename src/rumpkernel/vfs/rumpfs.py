"""rumpfs: the kernel's root file system -- tmpfs plus etfs nodes (rump_etfs(3)).

An etfs node makes a host file visible inside the kernel: ``reg`` as a regular file whose bytes
are the host file's, ``blk``/``chr`` as a device node backed by a HostBlockDevice, ``dir`` as a
directory whose files appear as ``reg`` nodes (``dir_subdirs`` also maps subdirectories).  The
host path never appears in the kernel's name space; only the key does.

Interface (called by the VFS, not by clients):
    Rumpfs.etfs_add(path_components, kind, backing, rdev=0) -> ino
    Rumpfs.etfs_remove(path_components)
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.memfs import Tmpfs, TmpfsType, TNode
from rumpkernel.vfs.vattr import (
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFREG,
    DirEnt,
    SetAttr,
    VAttr,
)

KIND_MODES = {"reg": S_IFREG | 0o644, "blk": S_IFBLK | 0o600, "chr": S_IFCHR | 0o600,
              "dir": S_IFDIR | 0o755, "dir_subdirs": S_IFDIR | 0o755}


class EtfsInfo:
    __slots__ = ("backing", "host_path", "kind", "opener")

    def __init__(self, kind: str, backing: Any, host_path: str = "",
                 opener: Any = None) -> None:
        self.kind = kind
        self.backing = backing        # HostFile for reg, device for blk/chr, None for dirs
        self.host_path = host_path
        self.opener = opener          # dirs: callable(path, kind) -> backing


class Rumpfs(Tmpfs):
    fstype = "rumpfs"

    # ---- etfs registration --------------------------------------------------------------
    def etfs_add(self, comps: list[bytes], kind: str, info: EtfsInfo, rdev: int = 0) -> int:
        if not comps:
            raise KernelError(Errno.EINVAL, "etfs: empty key")
        d = self.nodes[self.root_ino]
        for c in comps[:-1]:
            assert d.entries is not None
            ino = d.entries.get(c)
            if ino is None:
                ino = self.mkdir(d, c, S_IFDIR | 0o755, 0, 0)
            d = self.nodes[ino]
            if not d.isdir:
                raise KernelError(Errno.ENOTDIR, "etfs: key passes through a non-directory")
        n = self._create(d, comps[-1], KIND_MODES[kind], 0, 0)
        n.rdev = rdev
        n.extra = info
        if kind.startswith("dir"):
            self._make_dir(n, d.ino)
            n.nlink = 2
            d.nlink += 1
        return n.ino

    def etfs_remove(self, comps: list[bytes]) -> EtfsInfo:
        d = self.nodes[self.root_ino]
        for c in comps[:-1]:
            assert d.entries is not None
            d = self.nodes[d.entries[c]] if c in d.entries else d
        assert d.entries is not None
        ino = d.entries.get(comps[-1]) if comps else None
        n = self.nodes.get(ino) if ino is not None else None
        if n is None or not isinstance(n.extra, EtfsInfo):
            raise KernelError(Errno.ENOENT, "etfs: no such key")
        info = n.extra
        if n.isdir:
            for name in list(n.entries or ()):
                child = self.nodes[n.entries[name]]  # type: ignore[index]
                self.unlink(n, name, child)
                self.inactive(child)
            self.rmdir(d, comps[-1], n)
        else:
            self.unlink(d, comps[-1], n)
        self.inactive(n)
        return info

    # ---- etfs behaviour of regular files and mapped directories ---------------------------
    @staticmethod
    def _etfs(n: TNode) -> EtfsInfo | None:
        return n.extra if isinstance(n.extra, EtfsInfo) else None

    def getattr(self, n: TNode) -> VAttr:
        a = super().getattr(n)
        e = self._etfs(n)
        if e is not None and e.kind == "reg":
            a.size = e.backing.size()
            a.blocks = -(-a.size // 512)
        return a

    def read(self, n: TNode, offset: int, size: int) -> bytes:
        e = self._etfs(n)
        if e is None or e.kind != "reg":
            return super().read(n, offset, size)
        end = min(offset + size, e.backing.size())
        return e.backing.pread(offset, end - offset) if end > offset else b""

    def write(self, n: TNode, offset: int, data: bytes) -> int:
        e = self._etfs(n)
        if e is None or e.kind != "reg":
            return super().write(n, offset, data)
        e.backing.pwrite(offset, data)
        n.mtime = n.ctime = self.now()
        return len(data)

    def setattr(self, n: TNode, ch: SetAttr) -> None:
        e = self._etfs(n)
        if e is not None and e.kind == "reg" and ch.size is not None:
            e.backing.truncate(ch.size)
            ch = SetAttr(ch.mode, ch.uid, ch.gid, None, ch.atime_ns, ch.mtime_ns)
        super().setattr(n, ch)

    def _populate(self, d: TNode, name: bytes | None = None) -> None:
        """Materialise host entries of a mapped directory (one name, or all)."""
        e = self._etfs(d)
        if e is None or not e.kind.startswith("dir") or e.opener is None:
            return
        names = [name] if name is not None else [x.encode() for x in e.opener.listdir(
            e.host_path)]
        for nm in names:
            assert d.entries is not None
            if nm in d.entries or nm in (b".", b"..") or b"/" in nm:
                continue
            path = f"{e.host_path}/{nm.decode(errors='surrogateescape')}"
            kind = e.opener.kind(path)
            if kind == "reg":
                child = EtfsInfo("reg", e.opener.open(path), path)
            elif kind == "dir" and e.kind == "dir_subdirs":
                child = EtfsInfo("dir_subdirs", None, path, e.opener)
            else:
                continue
            n = self._create(d, nm, KIND_MODES[child.kind], 0, 0)
            n.extra = child
            if child.kind.startswith("dir"):
                self._make_dir(n, d.ino)
                n.nlink = 2
                d.nlink += 1

    def lookup(self, d: TNode, name: bytes) -> int:
        try:
            return super().lookup(d, name)
        except KernelError as err:
            if err.errno != Errno.ENOENT or self._etfs(d) is None:
                raise
        self._populate(d, name)
        return super().lookup(d, name)

    def readdir(self, d: TNode, cookie: int) -> list[DirEnt]:
        if cookie == 0:
            self._populate(d)
        return super().readdir(d, cookie)

    def inactive(self, node: TNode) -> None:
        e = self._etfs(node)
        if node.nlink == 0 and e is not None and e.kind == "reg" and e.opener is not None:
            e.backing.close()
        super().inactive(node)


class RumpfsType(TmpfsType):
    name = "rumpfs"

    @classmethod
    def mount(cls, ctx: MountContext) -> Rumpfs:
        return Rumpfs(ctx)
