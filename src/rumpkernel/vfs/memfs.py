"""memfs: the in-memory file system engine behind tmpfs and the rumpfs root.

File data lives in sparse 64 KiB chunks (holes are real: SEEK_HOLE finds them and a truncate to
a terabyte costs nothing); directories keep entries with stable cookies, so a directory read
in progress survives removals.  Every chunk and node counts against kernel memory (tag "tmpfs").

Mount options: ``size=BYTES`` (ENOSPC past it), ``nr_inodes=N``, ``mode=OCTAL`` ``uid=``
``gid=`` of the root, ``link_max=N`` (default 32767).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, ClassVar

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.fstype import FileSystemType, MountContext
from rumpkernel.vfs.vattr import (
    DT_DIR,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    DirEnt,
    FsFeatures,
    SetAttr,
    StatFS,
    VAttr,
    dtype_of,
)
from rumpkernel.vfs.vnode_if import FileSystem

CHUNK = 65536
NODE_BYTES = 256
MAX_FILE_SIZE = 1 << 62
READDIR_BATCH = 512


class TNode:
    __slots__ = ("atime", "btime", "chunks", "cookie_of", "ctime", "entries", "gid", "ino",
                 "mode", "mtime", "next_cookie", "nlink", "order", "parent", "rdev", "size",
                 "target", "uid", "xattrs", "extra")

    def __init__(self, ino: int, mode: int, uid: int, gid: int, now: int) -> None:
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.nlink = 1
        self.size = 0
        self.atime = self.mtime = self.ctime = self.btime = now
        self.rdev = 0
        self.chunks: dict[int, bytearray] | None = None
        self.target = b""
        self.entries: dict[bytes, int] | None = None
        self.cookie_of: dict[bytes, int] | None = None
        self.order: dict[int, bytes] | None = None
        self.next_cookie = 3
        self.parent = ino
        self.xattrs: dict[bytes, bytes] | None = None
        self.extra: Any = None

    @property
    def isdir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR


class Tmpfs(FileSystem):
    features: ClassVar[FsFeatures] = FsFeatures(xattr=True, link_max=32767,
                                                max_file_size=MAX_FILE_SIZE)
    fstype = "tmpfs"

    def __init__(self, ctx: MountContext) -> None:
        self.ctx = ctx
        self.now = ctx.now_ns
        opts = ctx.options
        self.size_limit = _int_opt(opts, "size", 0)
        self.inode_limit = _int_opt(opts, "nr_inodes", 0)
        link_max = _int_opt(opts, "link_max", 32767)
        if link_max != 32767:
            self.features = FsFeatures(xattr=True, link_max=link_max,
                                       max_file_size=MAX_FILE_SIZE)
        self.nodes: dict[int, TNode] = {}
        self.next_ino = 2
        self.bytes_used = 0
        self.readonly = ctx.readonly
        root = self._new_node(S_IFDIR | int(opts.get("mode") or "1777", 8),
                              _int_opt(opts, "uid", 0), _int_opt(opts, "gid", 0))
        self._make_dir(root, root.ino)
        root.nlink = 2
        self.root_ino = root.ino

    # ---- accounting ----------------------------------------------------------------------
    def _charge(self, nbytes: int) -> None:
        if self.size_limit and self.bytes_used + nbytes > self.size_limit:
            raise KernelError(Errno.ENOSPC, "tmpfs: size limit reached")
        if self.ctx.kmem is not None:
            try:
                self.ctx.kmem.alloc(nbytes, "tmpfs")
            except KernelError:
                raise KernelError(Errno.ENOSPC, "tmpfs: kernel memory limit reached") from None
        self.bytes_used += nbytes

    def _uncharge(self, nbytes: int) -> None:
        if nbytes:
            self.bytes_used -= nbytes
            if self.ctx.kmem is not None:
                self.ctx.kmem.free(nbytes, "tmpfs")

    def _new_node(self, mode: int, uid: int, gid: int) -> TNode:
        if self.inode_limit and len(self.nodes) >= self.inode_limit:
            raise KernelError(Errno.ENOSPC, "tmpfs: out of inodes")
        self._charge(NODE_BYTES)
        n = TNode(self.next_ino, mode, uid, gid, self.now())
        self.next_ino += 1
        self.nodes[n.ino] = n
        return n

    def _free_node(self, n: TNode) -> None:
        if self.nodes.pop(n.ino, None) is not None:
            self._uncharge(NODE_BYTES + sum(len(c) for c in (n.chunks or {}).values())
                           + len(n.target))

    @staticmethod
    def _make_dir(n: TNode, parent: int) -> None:
        n.entries, n.cookie_of, n.order = {}, {}, {}
        n.parent = parent

    # ---- nodes ----------------------------------------------------------------------------
    def vget(self, ino: int) -> TNode:
        n = self.nodes.get(ino)
        if n is None:
            raise KernelError(Errno.ENOENT, f"tmpfs: no inode {ino}")
        return n

    def inactive(self, node: TNode) -> None:
        if node.nlink == 0:
            self._free_node(node)

    def getattr(self, n: TNode) -> VAttr:
        used = sum(len(c) for c in n.chunks.values()) if n.chunks else len(n.target)
        return VAttr(n.ino, n.mode, n.nlink, n.uid, n.gid, n.size, n.atime, n.mtime, n.ctime,
                     n.btime, n.rdev, -(-used // 512), CHUNK if not n.isdir else 4096)

    def setattr(self, n: TNode, ch: SetAttr) -> None:
        if ch.size is not None:
            if n.isdir:
                raise KernelError(Errno.EISDIR)
            self._truncate(n, ch.size)
            n.mtime = self.now()
        if ch.mode is not None:
            n.mode = (n.mode & S_IFMT) | (ch.mode & 0o7777)
        if ch.uid is not None:
            n.uid = ch.uid
        if ch.gid is not None:
            n.gid = ch.gid
        if ch.atime_ns is not None:
            n.atime = ch.atime_ns
        if ch.mtime_ns is not None:
            n.mtime = ch.mtime_ns
        n.ctime = self.now()

    # ---- directories ------------------------------------------------------------------------
    def lookup(self, d: TNode, name: bytes) -> int:
        if name == b".":
            return d.ino
        if name == b"..":
            return d.parent
        assert d.entries is not None
        ino = d.entries.get(name)
        if ino is None:
            raise KernelError(Errno.ENOENT)
        return ino

    def _add_entry(self, d: TNode, name: bytes, ino: int) -> None:
        assert d.entries is not None and d.cookie_of is not None and d.order is not None
        if name in d.entries:
            raise KernelError(Errno.EEXIST)
        self._charge(len(name) + 64)
        d.entries[name] = ino
        c = d.next_cookie
        d.next_cookie = c + 1
        d.cookie_of[name] = c
        d.order[c] = name
        d.mtime = d.ctime = self.now()
        d.size = len(d.entries) * 32

    def _del_entry(self, d: TNode, name: bytes) -> None:
        assert d.entries is not None and d.cookie_of is not None and d.order is not None
        del d.entries[name]
        del d.order[d.cookie_of.pop(name)]
        self._uncharge(len(name) + 64)
        d.mtime = d.ctime = self.now()
        d.size = len(d.entries) * 32

    def _create(self, d: TNode, name: bytes, mode: int, uid: int, gid: int) -> TNode:
        assert d.entries is not None
        if name in d.entries:
            raise KernelError(Errno.EEXIST)
        n = self._new_node(mode, uid, gid)
        try:
            self._add_entry(d, name, n.ino)
        except KernelError:
            self._free_node(n)
            raise
        return n

    def create(self, d: TNode, name: bytes, mode: int, uid: int, gid: int, rdev: int) -> int:
        n = self._create(d, name, mode, uid, gid)
        n.rdev = rdev
        return n.ino

    def mkdir(self, d: TNode, name: bytes, mode: int, uid: int, gid: int) -> int:
        if d.nlink >= self.features.link_max:
            raise KernelError(Errno.EMLINK, "too many subdirectories")
        n = self._create(d, name, mode, uid, gid)
        self._make_dir(n, d.ino)
        n.nlink = 2
        d.nlink += 1
        return n.ino

    def symlink(self, d: TNode, name: bytes, target: bytes, uid: int, gid: int) -> int:
        n = self._create(d, name, S_IFLNK | 0o777, uid, gid)
        self._charge(len(target))
        n.target = target
        n.size = len(target)
        return n.ino

    def readlink(self, n: TNode) -> bytes:
        return n.target

    def link(self, d: TNode, name: bytes, n: TNode) -> None:
        if n.nlink >= self.features.link_max:
            raise KernelError(Errno.EMLINK)
        self._add_entry(d, name, n.ino)
        n.nlink += 1
        n.ctime = self.now()

    def unlink(self, d: TNode, name: bytes, n: TNode) -> None:
        self._del_entry(d, name)
        n.nlink -= 1
        n.ctime = self.now()

    def rmdir(self, d: TNode, name: bytes, n: TNode) -> None:
        if n.entries:
            raise KernelError(Errno.ENOTEMPTY)
        self._del_entry(d, name)
        d.nlink -= 1
        n.nlink = 0

    def rename(self, sd: TNode, sname: bytes, sn: TNode, td: TNode, tname: bytes,
               tn: TNode | None) -> None:
        if tn is not None:
            if tn.isdir:
                if tn.entries:
                    raise KernelError(Errno.ENOTEMPTY)
                td.nlink -= 1
                tn.nlink = 0
            else:
                tn.nlink -= 1
            tn.ctime = self.now()
            self._del_entry(td, tname)
        self._del_entry(sd, sname)
        self._add_entry(td, tname, sn.ino)
        if sn.isdir and sd is not td:
            sn.parent = td.ino
            sd.nlink -= 1
            td.nlink += 1
        sn.ctime = self.now()

    def readdir(self, d: TNode, cookie: int) -> list[DirEnt]:
        out = []
        if cookie < 1:
            out.append(DirEnt(b".", d.ino, DT_DIR, 1))
        if cookie < 2:
            out.append(DirEnt(b"..", d.parent, DT_DIR, 2))
        assert d.order is not None and d.entries is not None
        keys = list(d.order)
        i = bisect_right(keys, cookie)
        for c in keys[i : i + READDIR_BATCH]:
            name = d.order[c]
            ino = d.entries[name]
            out.append(DirEnt(name, ino, dtype_of(self.nodes[ino].mode), c))
        return out

    # ---- data ---------------------------------------------------------------------------------
    def read(self, n: TNode, offset: int, size: int) -> bytes:
        if n.isdir:
            raise KernelError(Errno.EISDIR)
        end = min(offset + size, n.size)
        if offset >= end:
            return b""
        chunks = n.chunks or {}
        first, last = offset // CHUNK, (end - 1) // CHUNK
        if first == last:
            c = chunks.get(first)
            a, b = offset - first * CHUNK, end - first * CHUNK
            if c is None:
                return bytes(b - a)
            piece = c[a:b]
            return bytes(piece) + bytes(b - a - len(piece)) if len(piece) < b - a else bytes(piece)
        parts = []
        for i in range(first, last + 1):
            base = i * CHUNK
            a, b = max(offset, base) - base, min(end, base + CHUNK) - base
            c = chunks.get(i)
            piece = c[a:b] if c is not None else b""
            parts.append(piece)
            if len(piece) < b - a:
                parts.append(bytes(b - a - len(piece)))
        return b"".join(parts)

    def write(self, n: TNode, offset: int, data: bytes) -> int:
        if offset < 0:
            raise KernelError(Errno.EINVAL)
        end = offset + len(data)
        if end > MAX_FILE_SIZE:
            raise KernelError(Errno.EFBIG, "file too large")
        if n.chunks is None:
            n.chunks = {}
        chunks = n.chunks
        pos = 0
        mv = memoryview(data)
        while pos < len(data):
            off = offset + pos
            i, a = divmod(off, CHUNK)
            take = min(CHUNK - a, len(data) - pos)
            c = chunks.get(i)
            if c is None:
                self._charge(a + take)
                c = chunks[i] = bytearray(a + take)
            elif len(c) < a + take:
                self._charge(a + take - len(c))
                c.extend(bytes(a + take - len(c)))
            c[a : a + take] = mv[pos : pos + take]
            pos += take
        if end > n.size:
            n.size = end
        n.mtime = n.ctime = self.now()
        return len(data)

    def _truncate(self, n: TNode, size: int) -> None:
        if size > MAX_FILE_SIZE:
            raise KernelError(Errno.EFBIG)
        if size < n.size and n.chunks:
            keep = -(-size // CHUNK)
            for i in [i for i in n.chunks if i >= keep]:
                self._uncharge(len(n.chunks.pop(i)))
            tail = n.chunks.get(keep - 1) if keep else None
            cut = size - (keep - 1) * CHUNK
            if tail is not None and len(tail) > cut:
                self._uncharge(len(tail) - cut)
                del tail[cut:]
        n.size = size

    def seek_data(self, n: TNode, offset: int) -> int:
        if offset >= n.size:
            raise KernelError(Errno.ENXIO)
        idx = sorted(i for i in (n.chunks or {}) if (i + 1) * CHUNK > offset)
        if not idx:
            raise KernelError(Errno.ENXIO)
        return max(offset, idx[0] * CHUNK)

    def seek_hole(self, n: TNode, offset: int) -> int:
        if offset >= n.size:
            raise KernelError(Errno.ENXIO)
        chunks = n.chunks or {}
        i = offset // CHUNK
        while i in chunks and len(chunks[i]) == CHUNK and (i + 1) * CHUNK < n.size:
            i += 1
        if i in chunks:
            return min(n.size, max(offset, i * CHUNK + len(chunks[i])))
        return max(offset, i * CHUNK) if i * CHUNK < n.size else n.size

    def fsync(self, n: TNode, datasync: bool) -> None:
        return None

    # ---- extended attributes ------------------------------------------------------------------
    def getxattr(self, n: TNode, name: bytes) -> bytes:
        v = (n.xattrs or {}).get(name)
        if v is None:
            raise KernelError(Errno.ENOATTR)
        return v

    def setxattr(self, n: TNode, name: bytes, value: bytes, flags: int) -> None:
        xs = n.xattrs if n.xattrs is not None else {}
        if flags & 1 and name in xs:
            raise KernelError(Errno.EEXIST, "attribute exists")
        if flags & 2 and name not in xs:
            raise KernelError(Errno.ENOATTR)
        self._charge(len(name) + len(value))
        if name in xs:
            self._uncharge(len(name) + len(xs[name]))
        xs[name] = bytes(value)
        n.xattrs = xs
        n.ctime = self.now()

    def listxattr(self, n: TNode) -> list[bytes]:
        return list(n.xattrs or ())

    def removexattr(self, n: TNode, name: bytes) -> None:
        if not n.xattrs or name not in n.xattrs:
            raise KernelError(Errno.ENOATTR)
        self._uncharge(len(name) + len(n.xattrs.pop(name)))
        n.ctime = self.now()

    # ---- file system ---------------------------------------------------------------------------
    def statfs(self) -> StatFS:
        limit = self.size_limit or (self.ctx.kmem.limit if self.ctx.kmem and
                                    self.ctx.kmem.limit else 1 << 40)
        total = limit // 4096
        free = max(0, (limit - self.bytes_used) // 4096)
        files = self.inode_limit or 1 << 32
        ffree = max(0, files - len(self.nodes))
        return StatFS(4096, 4096, total, free, free, files, ffree, ffree, 255)

    def unmount(self) -> None:
        self.nodes.clear()
        self._uncharge(self.bytes_used)  # nodes, data, names, xattrs: everything at once


def _int_opt(opts: dict[str, str], key: str, default: int) -> int:
    raw = opts.get(key)
    if raw is None or raw == "":
        return default
    try:
        mult = 1
        if raw[-1] in "kKmMgG":
            mult = 1024 ** ("kmg".index(raw[-1].lower()) + 1)
            raw = raw[:-1]
        return int(raw, 0) * mult
    except ValueError:
        raise KernelError(Errno.EINVAL, f"tmpfs: bad value for {key}: {raw!r}") from None


class TmpfsType(FileSystemType):
    name = "tmpfs"
    needs_device = False
    option_names = frozenset({"size", "nr_inodes", "mode", "uid", "gid", "link_max"})

    @classmethod
    def mount(cls, ctx: MountContext) -> Tmpfs:
        return Tmpfs(ctx)
