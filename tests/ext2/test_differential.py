"""Differential: one seeded random operation sequence through our driver and through a Linux
loop mount of an identical image; the final trees compare equal and both images are clean."""

from __future__ import annotations

import errno
import os
import random
import stat
import subprocess
from pathlib import Path

import pytest

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.vattr import S_IFREG, SetAttr

from .conftest import assert_fsck_clean, loop_mount, mke2fs, mounted

pytestmark = [pytest.mark.oracle, pytest.mark.root]


def gen_ops(seed: int, count: int, dirs: set[str] | None = None,
            files: set[str] | None = None) -> list[tuple]:
    """Operations against a model tree; most succeed, a few fail on purpose."""
    rng = random.Random(seed)
    dirs, files = set(dirs or {""}), set(files or ())
    ops: list[tuple] = []
    n = 0

    def fresh(parent: str) -> str:
        nonlocal n
        n += 1
        return f"{parent}/n{n}"

    def under(path: str, top: str) -> bool:
        return path == top or path.startswith(top + "/")

    for _ in range(count):
        r = rng.random()
        d = rng.choice(sorted(dirs))
        if r < 0.25 or not files:
            p = fresh(d)
            ops.append(("create", p, rng.randbytes(rng.choice([0, 5, 1000, 5000, 70000]))))
            files.add(p)
        elif r < 0.35:
            p = fresh(d)
            ops.append(("mkdir", p))
            dirs.add(p)
        elif r < 0.45:
            f = rng.choice(sorted(files))
            ops.append(("write", f, rng.randrange(0, 20000), rng.randbytes(rng.randrange(1, 9000))))
        elif r < 0.52:
            ops.append(("truncate", rng.choice(sorted(files)), rng.randrange(0, 30000)))
        elif r < 0.60:
            f = rng.choice(sorted(files))
            ops.append(("unlink", f))
            files.discard(f)
        elif r < 0.67:
            f = rng.choice(sorted(files))
            p = fresh(d)
            ops.append(("link", f, p))
            files.add(p)
        elif r < 0.72:
            p = fresh(d)
            ops.append(("symlink", "t" * rng.choice([3, 80]), p))
            files.add(p)
        elif r < 0.80:
            f = rng.choice(sorted(files))
            target = rng.choice([fresh(d), *sorted(files - {f})])
            ops.append(("rename", f, target))
            files.discard(f)
            files.add(target)
        elif r < 0.85 and len(dirs) > 1:
            src = rng.choice(sorted(dirs - {""}))
            dst = fresh(rng.choice([x for x in sorted(dirs) if not under(x, src)]))
            ops.append(("rename", src, dst))
            moved = {x for x in dirs if under(x, src)}
            dirs -= moved
            dirs |= {dst + x[len(src):] for x in moved}
            fm = {x for x in files if under(x, src)}
            files -= fm
            files |= {dst + x[len(src):] for x in fm}
        elif r < 0.92 and len(dirs) > 1:
            victim = rng.choice(sorted(dirs - {""}))
            ops.append(("rmdir", victim))
            if not any(under(x, victim) and x != victim for x in dirs | files):
                dirs.discard(victim)
        elif r < 0.95:
            ops.append(("chmod", rng.choice(sorted(files | dirs - {""})), rng.randrange(0o7777)))
        elif r < 0.98:
            target = rng.choice(sorted(files | dirs))
            ops.append(("setxattr", target, f"user.k{rng.randrange(4)}",
                        rng.randbytes(rng.choice([0, 3, 60, 400]))))
        else:
            f = rng.choice(sorted(files))
            ops.append(("write", f, rng.randrange(0, 1 << 22), rng.randbytes(rng.randrange(
                1 << 16, 2 << 20))))
    return ops


class KernelSide:
    def __init__(self, root: Path) -> None:
        self.root = root

    def p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def apply(self, op: tuple) -> str:
        try:
            getattr(self, "op_" + op[0])(*op[1:])
        except OSError as err:
            return errno.errorcode[err.errno]
        return "ok"

    def op_create(self, path, data):
        self.p(path).write_bytes(data)

    def op_mkdir(self, path):
        os.mkdir(self.p(path), 0o755)

    def op_write(self, path, off, data):
        if self.p(path).is_symlink():
            raise OSError(errno.EINVAL, "symlink")
        with open(self.p(path), "r+b") as f:
            f.seek(off)
            f.write(data)

    def op_truncate(self, path, size):
        if self.p(path).is_symlink():
            raise OSError(errno.EINVAL, "symlink")
        os.truncate(self.p(path), size)

    def op_unlink(self, path):
        os.unlink(self.p(path))

    def op_link(self, src, dst):
        os.link(self.p(src), self.p(dst), follow_symlinks=False)

    def op_symlink(self, target, path):
        os.symlink(target, self.p(path))

    def op_rename(self, src, dst):
        os.rename(self.p(src), self.p(dst))

    def op_rmdir(self, path):
        os.rmdir(self.p(path))

    def op_chmod(self, path, mode):
        if self.p(path).is_symlink():
            return
        os.chmod(self.p(path), mode)

    def op_setxattr(self, path, name, value):
        if self.p(path).is_symlink():
            return
        os.setxattr(self.p(path), name, value)


class DriverSide:
    def __init__(self, fs) -> None:
        self.fs = fs

    def node(self, path: str):
        fs = self.fs
        node = fs.vget(fs.root_ino)
        for part in filter(None, path.split("/")):
            node = fs.vget(fs.lookup(node, part.encode()))
        return node

    def parent(self, path: str):
        head, _, name = path.rpartition("/")
        return self.node(head), name.encode()

    def apply(self, op: tuple) -> str:
        try:
            getattr(self, "op_" + op[0])(*op[1:])
        except KernelError as err:
            return err.errno.name
        return "ok"

    def op_create(self, path, data):
        d, name = self.parent(path)
        node = self.fs.vget(self.fs.create(d, name, S_IFREG | 0o644, 0, 0, 0))
        self.fs.write(node, 0, data)

    def op_mkdir(self, path):
        d, name = self.parent(path)
        sgid = d.mode & 0o2000    # what the VFS does: a setgid directory's gid and bit inherit
        self.fs.mkdir(d, name, 0o755 | sgid, 0, d.gid if sgid else 0)

    def op_write(self, path, off, data):
        node = self.node(path)
        if node.is_lnk:
            raise KernelError(Errno.EINVAL, "symlink")
        self.fs.write(node, off, data)

    def op_truncate(self, path, size):
        self.fs.setattr(self.node(path), SetAttr(size=size))

    def op_unlink(self, path):
        d, name = self.parent(path)
        node = self.fs.vget(self.fs.lookup(d, name))
        self.fs.unlink(d, name, node)
        self.fs.inactive(node)

    def op_link(self, src, dst):
        d, name = self.parent(dst)
        self.fs.link(d, name, self.node(src))

    def op_symlink(self, target, path):
        d, name = self.parent(path)
        self.fs.symlink(d, name, target.encode(), 0, 0)

    def op_rename(self, src, dst):
        sd, sname = self.parent(src)
        td, tname = self.parent(dst)
        snode = self.fs.vget(self.fs.lookup(sd, sname))
        try:
            tnode = self.fs.vget(self.fs.lookup(td, tname))
        except KernelError:
            tnode = None
        self.fs.rename(sd, sname, snode, td, tname, tnode)
        if tnode is not None and tnode is not snode:
            self.fs.inactive(tnode)

    def op_rmdir(self, path):
        d, name = self.parent(path)
        node = self.fs.vget(self.fs.lookup(d, name))
        self.fs.rmdir(d, name, node)
        self.fs.inactive(node)

    def op_chmod(self, path, mode):
        node = self.node(path)
        if not node.is_lnk:
            self.fs.setattr(node, SetAttr(mode=mode))

    def op_setxattr(self, path, name, value):
        node = self.node(path)
        if not node.is_lnk:
            self.fs.setxattr(node, name.encode(), value, 0)


def tree_of(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if rel == "lost+found":
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                content = full.read_bytes()
            else:
                content = None
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else None
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                n: os.getxattr(full, n) for n in os.listxattr(full)}
            out[rel] = (st.st_mode, size, st.st_nlink, content, xattrs)
    return out


@pytest.mark.parametrize("fstype,opts,seed", [
    ("ext4", [], 11),
    ("ext2", [], 12),
    ("ext3", ["-b", "4096"], 13),
    ("ext4", ["-O", "^metadata_csum,^64bit", "-b", "2048"], 14),
])
def test_random_ops_match_kernel(tmp_path, fstype, opts, seed):
    base = mke2fs(tmp_path / "base.img", fstype, "160M", None, *opts)
    ours, theirs = tmp_path / "ours.img", tmp_path / "theirs.img"
    ours.write_bytes(base.read_bytes())
    theirs.write_bytes(base.read_bytes())
    ops = gen_ops(seed, 400 if seed < 100 else 1500)
    with loop_mount(theirs, readonly=False) as mnt:
        kernel = KernelSide(mnt)
        k_results = [kernel.apply(op) for op in ops]
    with mounted(ours) as fs:
        driver = DriverSide(fs)
        d_results = []
        for op, want in zip(ops, k_results):
            if want in ("EINVAL", "EISDIR") and op[0] in ("write", "truncate"):
                d_results.append(want)     # the VFS refuses these before the driver
                continue
            d_results.append(driver.apply(op))
    assert d_results == k_results
    assert k_results.count("ok") > len(ops) * 3 // 4
    assert_fsck_clean(ours)
    assert_fsck_clean(theirs)
    with loop_mount(ours) as a, loop_mount(theirs) as b:
        assert tree_of(a) == tree_of(b)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 112))
def test_random_ops_soak(tmp_path, seed):
    fstype, opts = [("ext4", []), ("ext2", []), ("ext3", ["-b", "2048"]),
                    ("ext4", ["-O", "^metadata_csum,uninit_bg"])][seed % 4]
    test_random_ops_match_kernel(tmp_path, fstype, opts, seed)


def test_random_ops_in_htree_directories(tmp_path):
    """Kernel-built and e2fsck-optimised htree directories, changed by both sides."""
    src = tmp_path / "src"
    model_dirs, model_files = {""}, set()
    for d in range(3):
        (src / f"big{d}").mkdir(parents=True)
        model_dirs.add(f"/big{d}")
        for i in range(500):
            (src / f"big{d}" / f"preexisting-entry-{i:04d}").write_bytes(b"p" * (i % 50))
            model_files.add(f"/big{d}/preexisting-entry-{i:04d}")
    base = mke2fs(tmp_path / "base.img", "ext4", "160M", src)
    subprocess.run(["e2fsck", "-fyD", str(base)], capture_output=True)
    ours, theirs = tmp_path / "ours.img", tmp_path / "theirs.img"
    ours.write_bytes(base.read_bytes())
    theirs.write_bytes(base.read_bytes())
    ops = gen_ops(21, 1500, model_dirs, model_files)
    with loop_mount(theirs, readonly=False) as mnt:
        k_results = [KernelSide(mnt).apply(op) for op in ops]
    with mounted(ours) as fs:
        driver = DriverSide(fs)
        d_results = [want if want in ("EINVAL", "EISDIR") and op[0] in ("write", "truncate")
                     else driver.apply(op) for op, want in zip(ops, k_results)]
        indexed = sum(1 for n in fs.inodes.values() if n.mode and n.is_dir and n.flags & 0x1000)
    assert d_results == k_results
    assert indexed >= 1
    assert_fsck_clean(ours)
    assert_fsck_clean(theirs)
    with loop_mount(ours) as a, loop_mount(theirs) as b:
        assert tree_of(a) == tree_of(b)
