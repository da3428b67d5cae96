"""Seeded random operation sequences through the driver against an in-memory model (issue
#17): create, write, truncate, punch, rename across directories and over files, link, unlink,
mkdir/rmdir, symlink, chmod/chown, setxattr/removexattr -- on every feature variant the issue
lists, starting from a ``mke2fs -d`` tree (inline files on inline_data).  Each run ends with
``e2fsck -fn`` clean and a Linux loop mount that shows exactly the model.  A few seeds run by
default; ``-m slow`` runs more."""

from __future__ import annotations

import os
import random
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.vattr import S_IFREG, SetAttr

from .conftest import assert_fsck_clean, mke2fs, mounted
from .kimages import loop_mounted

pytestmark = [pytest.mark.oracle, pytest.mark.root]

B4 = ["-b", "4096", "-I", "256"]
VARIANTS = {
    "ext4": ("ext4", B4),
    "ext2": ("ext2", B4),
    "ext3": ("ext3", B4),
    "1k-blocks": ("ext4", ["-b", "1024", "-I", "256"]),
    "inode-128": ("ext4", ["-b", "4096", "-I", "128"]),
    "inline_data": ("ext4", [*B4, "-O", "inline_data"]),
    "no-metadata_csum": ("ext4", [*B4, "-O", "^metadata_csum"]),
    "meta_bg": ("ext4", [*B4, "-O", "meta_bg,^resize_inode"]),
    "large_dir": ("ext4", [*B4, "-O", "large_dir"]),
    "sparse_super2": ("ext4", [*B4, "-O", "sparse_super2"]),
    "no-dir_index": ("ext4", [*B4, "-O", "^dir_index"]),
    "64bit-no-flex_bg": ("ext4", [*B4, "-O", "64bit,^flex_bg"]),
}


@dataclass
class MNode:
    kind: str                                   # "f", "d", "l"
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytearray = field(default_factory=bytearray)
    target: bytes = b""
    xattrs: dict[str, bytes] = field(default_factory=dict)


class Model:
    """The file system as it must be: path -> node (hard links share a node)."""

    def __init__(self) -> None:
        self.paths: dict[str, MNode] = {"": MNode("d", 0o755)}

    def children(self, d: str) -> list[str]:
        pre = d + "/"
        return [p for p in self.paths if p.startswith(pre) and "/" not in p[len(pre):]]

    def of_kind(self, kind: str) -> list[str]:
        return sorted(p for p, n in self.paths.items() if n.kind == kind and p)

    def nlink(self, path: str) -> int:
        node = self.paths[path]
        if node.kind == "d":
            return 2 + sum(1 for c in self.children(path) if self.paths[c].kind == "d")
        return sum(1 for n in self.paths.values() if n is node)


def seed_tree(root: Path, rng: random.Random) -> None:
    """What mke2fs -d starts from: small (inline-sized) and larger files, a directory big
    enough to be indexed, symlinks."""
    (root / "small").mkdir(parents=True)
    for i in range(30):
        (root / "small" / f"s{i}").write_bytes(rng.randbytes(rng.choice([0, 3, 40, 100, 2000])))
    (root / "wide").mkdir()
    for i in range(150):
        (root / "wide" / f"entry-with-a-longish-name-{i:04d}").write_bytes(b"w" * (i % 7))
    (root / "big").write_bytes(rng.randbytes(200_000))
    os.symlink("small/s1", root / "link-short")
    os.symlink("x/" * 60, root / "link-long")


def model_from(root: Path) -> Model:
    m = Model()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        base = "" if rel == "." else "/" + rel
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                node = MNode("d", st.st_mode & 0o7777)
            elif stat.S_ISLNK(st.st_mode):
                node = MNode("l", 0o777, target=os.fsencode(os.readlink(full)))
            else:
                node = MNode("f", st.st_mode & 0o7777, data=bytearray(Path(full).read_bytes()))
            node.uid, node.gid = st.st_uid, st.st_gid
            m.paths[f"{base}/{name}"] = node
    return m


class Driver:
    """The operations through the driver's vnode interface, doing what the VFS would around
    them (dropping the last reference of a removed file)."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def node(self, path: str) -> Any:
        fs = self.fs
        n = fs.vget(fs.root_ino)
        for part in filter(None, path.split("/")):
            n = fs.vget(fs.lookup(n, part.encode()))
        return n

    def parent(self, path: str) -> tuple[Any, bytes]:
        head, _, name = path.rpartition("/")
        return self.node(head), name.encode()

    def gone(self, node: Any) -> None:
        self.fs.inactive(node)


def gen_op(rng: random.Random, m: Model, serial: list[int]) -> tuple:
    """One operation valid against the model (a few fail on purpose, with a known errno)."""
    dirs, files = [*m.of_kind("d"), ""], m.of_kind("f")

    def fresh(d: str) -> str:
        serial[0] += 1
        return f"{d}/n{serial[0]}-{'q' * rng.choice([0, 5, 40])}"

    r = rng.random()
    d = rng.choice(dirs)
    if r < 0.14 or not files:
        return ("create", fresh(d), rng.randbytes(rng.choice([0, 10, 900, 5000, 30000])))
    f = rng.choice(files)
    if r < 0.24:
        return ("write", f, rng.randrange(0, 40000), rng.randbytes(rng.randrange(1, 12000)))
    if r < 0.30:
        return ("truncate", f, rng.randrange(0, 50000))
    if r < 0.36:
        return ("punch", f, rng.randrange(0, 30000), rng.randrange(1, 20000))
    if r < 0.44:
        others = [x for x in files if x != f]
        target = rng.choice(others) if others and rng.random() < 0.4 else fresh(d)
        return ("rename", f, target)
    if r < 0.48:
        movable = [x for x in dirs if x]
        if movable:
            src = rng.choice(movable)
            dst = rng.choice([x for x in dirs if x != src and not x.startswith(src + "/")])
            empty = [x for x in movable if x != src and not m.children(x)
                     and not src.startswith(x + "/") and not x.startswith(src + "/")]
            if empty and rng.random() < 0.3:
                return ("rename", src, rng.choice(empty))
            return ("rename", src, fresh(dst))
    if r < 0.54:
        return ("link", f, fresh(d))
    if r < 0.62:
        return ("unlink", rng.choice(files + m.of_kind("l") or files))
    if r < 0.69:
        return ("mkdir", fresh(d))
    if r < 0.75 and dirs[:-1]:
        return ("rmdir", rng.choice(dirs[:-1]))
    if r < 0.79:
        return ("symlink", fresh(d), b"t/" * rng.choice([2, 40, 450]))
    if r < 0.84:
        return ("chmod", rng.choice(files + dirs[:-1] or files), rng.randrange(0o10000))
    if r < 0.88:
        return ("chown", f, rng.choice([0, 1000, 70000]), rng.choice([0, 100, 65536]))
    if r < 0.96:
        return ("setxattr", f, f"user.k{rng.randrange(5)}",
                rng.randbytes(rng.choice([0, 3, 60, 300, 1500])))
    return ("removexattr", f, f"user.k{rng.randrange(5)}")


def apply_model(m: Model, op: tuple) -> str:
    kind, path = op[0], op[1]
    node = m.paths.get(path)
    if kind == "create":
        m.paths[path] = MNode("f", data=bytearray(op[2]))
    elif kind == "write":
        off, data = op[2], op[3]
        if len(node.data) < off:
            node.data.extend(bytes(off - len(node.data)))
        node.data[off:off + len(data)] = data
    elif kind == "truncate":
        node.data = node.data[:op[2]].ljust(op[2], b"\0")
    elif kind == "punch":
        off, ln = op[2], op[3]
        end = min(off + ln, len(node.data))
        if off < end:
            node.data[off:end] = bytes(end - off)
    elif kind == "rename":
        dst = op[2]
        if node.kind == "d":
            if dst in m.paths and m.children(dst):
                return "ENOTEMPTY"
            moved = {p: n for p, n in m.paths.items() if p == path or p.startswith(path + "/")}
            for p in moved:
                del m.paths[p]
            m.paths.pop(dst, None)
            for p, n in moved.items():
                m.paths[dst + p[len(path):]] = n
        else:
            m.paths[dst] = m.paths.pop(path)
    elif kind == "link":
        m.paths[op[2]] = node
    elif kind == "unlink":
        del m.paths[path]
    elif kind == "mkdir":
        m.paths[path] = MNode("d", 0o755)
    elif kind == "rmdir":
        if m.children(path):
            return "ENOTEMPTY"
        del m.paths[path]
    elif kind == "symlink":
        m.paths[path] = MNode("l", 0o777, target=op[2])
    elif kind == "chmod":
        node.mode = op[2]
    elif kind == "chown":
        node.uid, node.gid = op[2], op[3]
    elif kind == "setxattr":
        node.xattrs[op[2]] = op[3]
    elif kind == "removexattr":
        if op[2] not in node.xattrs:
            return "ENODATA"
        del node.xattrs[op[2]]
    return "ok"


def apply_driver(drv: Driver, op: tuple) -> str:
    fs = drv.fs
    kind, path = op[0], op[1]
    try:
        if kind == "create":
            d, name = drv.parent(path)
            n = fs.vget(fs.create(d, name, S_IFREG | 0o644, 0, 0, 0))
            fs.write(n, 0, op[2])
        elif kind == "write":
            fs.write(drv.node(path), op[2], op[3])
        elif kind == "truncate":
            fs.setattr(drv.node(path), SetAttr(size=op[2]))
        elif kind == "punch":
            fs.punch(drv.node(path), op[2], op[3])
        elif kind == "rename":
            sd, sname = drv.parent(path)
            td, tname = drv.parent(op[2])
            s = drv.node(path)
            try:
                t = fs.vget(fs.lookup(td, tname))
            except KernelError:
                t = None
            fs.rename(sd, sname, s, td, tname, t)
            if t is not None:
                drv.gone(t)
        elif kind == "link":
            d, name = drv.parent(op[2])
            fs.link(d, name, drv.node(path))
        elif kind == "unlink":
            d, name = drv.parent(path)
            n = drv.node(path)
            fs.unlink(d, name, n)
            drv.gone(n)
        elif kind == "mkdir":
            d, name = drv.parent(path)
            fs.mkdir(d, name, 0o755, 0, 0)
        elif kind == "rmdir":
            d, name = drv.parent(path)
            n = drv.node(path)
            fs.rmdir(d, name, n)
            drv.gone(n)
        elif kind == "symlink":
            d, name = drv.parent(path)
            fs.symlink(d, name, op[2], 0, 0)
        elif kind == "chmod":
            fs.setattr(drv.node(path), SetAttr(mode=op[2]))
        elif kind == "chown":
            fs.setattr(drv.node(path), SetAttr(uid=op[2], gid=op[3]))
        elif kind == "setxattr":
            fs.setxattr(drv.node(path), op[2].encode(), op[3], 0)
        elif kind == "removexattr":
            fs.removexattr(drv.node(path), op[2].encode())
    except KernelError as err:
        return "ENODATA" if err.errno == Errno.ENOATTR else err.errno.name
    return "ok"


def host_tree(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        base = "" if rel == "." else "/" + rel
        for name in dirnames + filenames:
            p = f"{base}/{name}"
            if p == "/lost+found":
                continue
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                kind, body = "d", None
            elif stat.S_ISLNK(st.st_mode):
                kind, body = "l", os.fsencode(os.readlink(full))
            else:
                kind, body = "f", Path(full).read_bytes()
            xattrs = {} if kind == "l" else {
                n: os.getxattr(full, n, follow_symlinks=False)
                for n in os.listxattr(full, follow_symlinks=False) if n.startswith("user.")}
            out[p] = (kind, st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_nlink, body,
                      xattrs, st.st_ino)
        dirnames[:] = [d for d in dirnames if d != "lost+found" or rel != "."]
    return out


def model_tree(m: Model) -> dict[str, tuple]:
    out = {}
    for p, n in m.paths.items():
        if not p:
            continue
        body = bytes(n.data) if n.kind == "f" else n.target if n.kind == "l" else None
        mode = 0o777 if n.kind == "l" else n.mode
        out[p] = (n.kind, mode, n.uid, n.gid, m.nlink(p), body, dict(n.xattrs))
    return out


def run_sequence(tmp_path: Path, variant: str, seed: int, count: int) -> None:
    fstype, opts = VARIANTS[variant]
    rng = random.Random(seed)
    src = tmp_path / "src"
    seed_tree(src, rng)
    img = mke2fs(tmp_path / "m.img", fstype, "128M", src, *opts)
    m = model_from(src)
    serial = [0]
    results = []
    for _half in range(2):                      # a remount in the middle: state from the disk
        with mounted(img) as fs:
            drv = Driver(fs)
            for _ in range(count // 2):
                op = gen_op(rng, m, serial)
                got = apply_driver(drv, op)
                results.append(got)
                if op[0] == "setxattr" and got == "ENOSPC":
                    continue        # the attributes did not fit in the inode and one block
                want = apply_model(m, op)
                assert got == want, f"op {len(results)} {op[:2]}: driver {got}, model {want}"
    assert results.count("ok") > count * 0.8
    assert_fsck_clean(img)
    with loop_mounted(img) as mnt:
        theirs = host_tree(mnt)
    ours = model_tree(m)
    assert {p: t[:7] for p, t in theirs.items()} == ours
    inos: dict[int, MNode] = {}
    for p, t in theirs.items():                 # hard links: one inode per model node
        assert inos.setdefault(t[7], m.paths[p]) is m.paths[p], p


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_random_ops_match_model(tmp_path, variant):
    run_sequence(tmp_path, variant, seed=1000 + list(VARIANTS).index(variant), count=500)


@pytest.mark.parametrize("variant", ["ext4", "ext2", "inline_data"])
def test_random_ops_match_model_second_seed(tmp_path, variant):
    run_sequence(tmp_path, variant, seed=77, count=600)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_random_ops_match_model_soak(tmp_path, variant, seed):
    run_sequence(tmp_path, variant, seed=seed * 7919, count=2000)
