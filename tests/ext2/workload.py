"""A write workload applied through the driver, returning what the tree must look like."""

from __future__ import annotations

import os
import random

from rumpkernel.fs.ext2.fs import ExtFileSystem
from rumpkernel.vfs.vattr import S_IFCHR, S_IFIFO, S_IFREG, SetAttr


class Expect:
    """path -> (type char, content/target/rdev, perm, uid, gid) of what must exist."""

    def __init__(self) -> None:
        self.tree: dict[str, tuple] = {}

    def file(self, path: str, data: bytes, perm: int = 0o644, uid: int = 0, gid: int = 0):
        self.tree[path] = ("f", data, perm, uid, gid)

    def dir(self, path: str, perm: int = 0o755, uid: int = 0, gid: int = 0):
        self.tree[path] = ("d", None, perm, uid, gid)


def node_of(fs: ExtFileSystem, path: str):
    node = fs.vget(fs.root_ino)
    for part in filter(None, path.split("/")):
        node = fs.vget(fs.lookup(node, part.encode()))
    return node


def split(path: str) -> tuple[str, bytes]:
    parent, _, name = path.rpartition("/")
    return parent or "/", name.encode()


def write_tree(fs: ExtFileSystem, seed: int = 7, big: bool = True) -> Expect:
    rng = random.Random(seed)
    ex = Expect()
    bs = fs.vol.block_size
    root = fs.vget(fs.root_ino)

    def mkdir(path: str, perm: int = 0o755) -> None:
        parent, name = split(path)
        fs.mkdir(node_of(fs, parent), name, perm, 0, 0)
        ex.dir(path, perm)

    def put(path: str, data: bytes, perm: int = 0o644) -> None:
        parent, name = split(path)
        ino = fs.create(node_of(fs, parent), name, S_IFREG | perm, 0, 0, 0)
        node = fs.vget(ino)
        pos = 0
        while pos < len(data):   # write in uneven chunks
            n = rng.choice([1, 7, bs - 1, bs, 3 * bs + 5, 65536])
            fs.write(node, pos, data[pos:pos + n])
            pos += n
        ex.file(path, data, perm)

    mkdir("/a")
    mkdir("/a/b")
    mkdir("/a/b/c", 0o700)
    for size in (0, 1, bs - 1, bs, bs + 1, 12 * bs, 13 * bs + 1, 100_000):
        put(f"/a/size{size}", rng.randbytes(size))
    if big:
        put("/a/b/big", rng.randbytes(3 * (1 << 20) + 77))
    mkdir("/many")
    for i in range(400):
        put(f"/many/file-{i:04d}", rng.randbytes(rng.choice([0, 10, 300, 5000])))
    many = node_of(fs, "/many")
    for i in range(0, 400, 3):
        name = f"file-{i:04d}".encode()
        node = fs.vget(fs.lookup(many, name))
        fs.unlink(many, name, node)
        fs.inactive(node)
        del ex.tree[f"/many/file-{i:04d}"]
    # sparse files: a hole, data far away, then truncations both ways
    sp = fs.vget(fs.create(root, b"sparse", S_IFREG | 0o600, 0, 0, 0))
    fs.write(sp, 5 * (1 << 30), b"far away")
    fs.write(sp, 10, b"near")
    data = bytearray(10) + b"near"
    fs.setattr(sp, SetAttr(size=3 * (1 << 30)))
    fs.setattr(sp, SetAttr(size=2 * bs + 3))
    data = bytes(data).ljust(2 * bs + 3, b"\0")
    ex.file("/sparse", data, 0o600)
    # overwrite in the middle, shrink to a partial block, extend again
    ov = fs.vget(fs.create(root, b"overwrite", S_IFREG | 0o644, 0, 0, 0))
    body = bytearray(rng.randbytes(5 * bs + 100))
    fs.write(ov, 0, bytes(body))
    fs.write(ov, bs + 3, b"X" * (2 * bs))
    body[bs + 3:3 * bs + 3] = b"X" * (2 * bs)
    fs.setattr(ov, SetAttr(size=2 * bs + 10))
    fs.setattr(ov, SetAttr(size=4 * bs))
    body = body[:2 * bs + 10] + bytes(4 * bs - (2 * bs + 10))
    ex.file("/overwrite", bytes(body))
    # links of every kind
    fs.symlink(root, b"fast", b"a/size1", 0, 0)
    ex.tree["/fast"] = ("l", b"a/size1", 0o777, 0, 0)
    target = b"/long/" + b"t" * 150
    fs.symlink(node_of(fs, "/a"), b"slow", target, 0, 0)
    ex.tree["/a/slow"] = ("l", target, 0o777, 0, 0)
    fs.link(node_of(fs, "/a/b"), b"hard", node_of(fs, "/a/size1"))
    ex.tree["/a/b/hard"] = ex.tree["/a/size1"]
    fs.create(root, b"null", S_IFCHR | 0o666, 0, 0, os.makedev(1, 3))
    ex.tree["/null"] = ("c", os.makedev(1, 3), 0o666, 0, 0)
    fs.create(root, b"bigdev", S_IFCHR | 0o600, 0, 0, os.makedev(300, 70000))
    ex.tree["/bigdev"] = ("c", os.makedev(300, 70000), 0o600, 0, 0)
    fs.create(root, b"pipe", S_IFIFO | 0o644, 0, 0, 0)
    ex.tree["/pipe"] = ("p", None, 0o644, 0, 0)
    # renames: file across dirs, over an existing file, a directory across dirs
    fs.rename(node_of(fs, "/a"), b"size0", node_of(fs, "/a/size0"), root, b"moved0", None)
    ex.tree["/moved0"] = ex.tree.pop("/a/size0")
    a = node_of(fs, "/a")
    fs.rename(a, b"size1", node_of(fs, "/a/size1"), a, b"size100000",
              node_of(fs, "/a/size100000"))
    ex.tree["/a/size100000"] = ex.tree.pop("/a/size1")
    fs.rename(node_of(fs, "/a/b"), b"c", node_of(fs, "/a/b/c"), root, b"c-moved", None)
    for p in [p for p in ex.tree if p.startswith("/a/b/c")]:
        ex.tree[p.replace("/a/b/c", "/c-moved", 1)] = ex.tree.pop(p)
    mkdir("/gone")
    fs.rmdir(root, b"gone", node_of(fs, "/gone"))
    del ex.tree["/gone"]
    # attributes
    node = node_of(fs, "/a/size4097" if bs == 4096 else f"/a/size{bs + 1}")
    fs.setattr(node, SetAttr(mode=0o4711, uid=1001, gid=2002, mtime_ns=1_234_567_890_123_456_789,
                             atime_ns=-1_000_000_000))
    key = "/a/size4097" if bs == 4096 else f"/a/size{bs + 1}"
    ex.tree[key] = ("f", ex.tree[key][1], 0o4711, 1001, 2002)
    # extended attributes, small (in the inode) and large (in a block), then removal
    xnode = node_of(fs, "/a/b/big" if big else "/a/size100000")
    fs.setxattr(xnode, b"user.small", b"s", 0)
    fs.setxattr(xnode, b"user.large", b"L" * (bs // 2), 0)
    fs.setxattr(xnode, b"trusted.gone", b"bye", 0)
    fs.removexattr(xnode, b"trusted.gone")
    return ex
