"""Helpers for the ext2/3/4 driver tests: build images with mke2fs, mount them with our driver
directly (no kernel), walk trees, and compare them with host trees and kernel loop mounts."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rumpkernel.fs.ext2 import Ext4Type
from rumpkernel.fs.ext2.fs import ExtFileSystem
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.testing.hostdev import HostFileDevice
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.vattr import DT_DIR, DT_LNK, DT_REG, S_IFMT

NOW_NS = 1_700_000_000_123_456_789
MiB = 1 << 20


def run(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def mke2fs(path: Path, fstype: str, size: str = "64M", src: Path | None = None,
           *opts: str) -> Path:
    args = ["mke2fs", "-q", "-F", "-t", fstype, "-E", "lazy_itable_init=0", *opts]
    if src is not None:
        args += ["-d", str(src)]
    run(*args, str(path), size)
    return path


def fsck(path: Path) -> subprocess.CompletedProcess:
    return run("e2fsck", "-fn", str(path), check=False)


def assert_fsck_clean(path: Path) -> None:
    res = fsck(path)
    assert res.returncode == 0, res.stdout + res.stderr


def mount(path: Path, *, readonly: bool = False, log: list[str] | None = None,
          now_ns: int = NOW_NS) -> ExtFileSystem:
    dev = HostFileDevice(path, readonly=readonly)
    ctx = MountContext(dev=dev, readonly=readonly, now_ns=lambda: now_ns,
                       log=(log.append if log is not None else (lambda m: None)))
    return Ext4Type.mount(ctx)  # type: ignore[return-value]


@contextlib.contextmanager
def mounted(path: Path, **kw) -> Iterator[ExtFileSystem]:
    fs = mount(path, **kw)
    try:
        yield fs
    finally:
        fs.unmount()
        fs.ctx.dev.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def loop_mount(path: Path, readonly: bool = True) -> Iterator[Path]:
    """A root loop mount on a unique mount point; always unmounted and detached."""
    from .kimages import loop_mounted

    with loop_mounted(path, readonly) as mnt:
        yield mnt


def resolve(fs: ExtFileSystem, path: str):
    node = fs.vget(fs.root_ino)
    for part in filter(None, path.split("/")):
        node = fs.vget(fs.lookup(node, part.encode()))
    return node


def read_all(fs: ExtFileSystem, node, chunk: int = 1 << 20) -> bytes:
    size = fs.getattr(node).size
    out, off = [], 0
    while off < size:
        try:
            off = fs.seek_data(node, off)
        except KernelError as err:
            if err.errno == Errno.ENXIO:
                break
            raise
        hole = fs.seek_hole(node, off)
        out.append((off, fs.read(node, off, min(hole - off, chunk))))
        off += len(out[-1][1])
    return _assemble(out, size)


def _assemble(parts: list[tuple[int, bytes]], size: int) -> bytes:
    if size > 64 * MiB:  # sparse giants: a digest of the non-zero 4 KiB chunks
        chunks: dict[int, bytearray] = {}
        for off, data in parts:
            for i, byte in enumerate(data):
                if byte:
                    pos = off + i
                    chunks.setdefault(pos >> 12, bytearray(4096))[pos & 4095] = byte
        h = hashlib.sha256()
        for idx in sorted(chunks):
            h.update(idx.to_bytes(8, "little") + chunks[idx])
        return b"sparse:" + h.hexdigest().encode()
    buf = bytearray(size)
    for off, data in parts:
        buf[off:off + len(data)] = data
    return bytes(buf)


def walk_fs(fs: ExtFileSystem, *, ns: bool = True) -> dict[str, tuple]:
    """path -> (mode, uid, gid, size, nlink, mtime, content-or-target) for every node."""
    out: dict[str, tuple] = {}
    stack = [("", fs.vget(fs.root_ino))]
    while stack:
        path, dnode = stack.pop()
        cookie = 0
        while True:
            ents = fs.readdir(dnode, cookie)
            if not ents:
                break
            for e in ents:
                cookie = e.cookie
                if e.name in (b".", b".."):
                    continue
                node = fs.vget(e.ino)
                a = fs.getattr(node)
                p = path + "/" + e.name.decode("utf-8", "surrogateescape")
                if p == "/lost+found":
                    continue
                if e.dtype == DT_DIR:
                    stack.append((p, node))
                    content = None
                elif e.dtype == DT_LNK:
                    content = fs.readlink(node)
                elif e.dtype == DT_REG:
                    content = read_all(fs, node)
                else:
                    content = a.rdev
                mtime = a.mtime_ns if ns else a.mtime_ns // 10**9
                size = a.size if e.dtype != DT_DIR else None
                out[p] = (a.mode, a.uid, a.gid, size, a.nlink, mtime, content)
    return out


def walk_host(root: Path, *, ns: bool = True, skip_lost_found: bool = True) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            p = "/" + (name if rel == "." else os.path.join(rel, name))
            if skip_lost_found and p == "/lost+found":
                continue
            st = os.lstat(full)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                content, size = None, None
            elif stat.S_ISLNK(mode):
                content, size = os.readlink(os.fsencode(full)), st.st_size
            elif stat.S_ISREG(mode):
                content, size = _host_read(full, st.st_size), st.st_size
            else:
                content, size = st.st_rdev, st.st_size
            mtime = st.st_mtime_ns if ns else st.st_mtime_ns // 10**9
            out[p] = (mode, st.st_uid, st.st_gid, size, st.st_nlink, mtime, content)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return out


def _host_read(path: str, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        parts, off = [], 0
        while off < size:
            try:
                off = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            try:
                hole = os.lseek(fd, off, os.SEEK_HOLE)
            except OSError:   # Linux answers ENOENT for inline files with zero tails
                hole = size
            while off < hole:
                data = os.pread(fd, min(hole - off, 1 << 20), off)
                if not data:
                    break
                parts.append((off, data))
                off += len(data)
        return _assemble(parts, size)
    finally:
        os.close(fd)


def make_source_tree(root: Path, *, seed: int = 1, nfiles: int = 600, big_sparse: bool = True,
                     xattrs: bool = True) -> Path:
    """A tree with many small files, deep directories, symlinks (fast and slow), hard links,
    a fifo, odd timestamps (pre-1970, nanoseconds), xattrs and a sparse file > 4 GiB."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    deep = root / "deep"
    for i in range(12):
        deep = deep / f"level{i}"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_bytes(b"bottom\n")
    dirs = [root / f"dir{i}" for i in range(6)]
    for d in dirs:
        d.mkdir()
    for i in range(nfiles):
        d = dirs[i % len(dirs)]
        size = rng.choice([0, 1, 13, 100, 1000, 4095, 4096, 4097, 20000, 70000])
        (d / f"file{i:04d}.dat").write_bytes(rng.randbytes(size))
    (root / "medium.bin").write_bytes(rng.randbytes(3 * MiB + 123))
    (root / "zeros.bin").write_bytes(bytes(5000))            # mke2fs -d stores it as holes
    (root / "fast_link").symlink_to("dir0/file0000.dat")
    (root / "slow_link").symlink_to("x" * 200 + "/target")
    os.link(root / "dir0" / "file0000.dat", root / "hardlink")
    os.mkfifo(root / "fifo")
    old = root / "old.txt"
    old.write_bytes(b"from the past\n")
    os.utime(old, ns=(-86_400 * 365 * 10 * 10**9 + 5, -86_400 * 365 * 10 * 10**9 + 123_456_789))
    nano = root / "nano.txt"
    nano.write_bytes(b"nanoseconds\n")
    os.utime(nano, ns=(1_600_000_000_987_654_321, 1_600_000_000_987_654_321))
    os.chown(nano, 1234, 5678)
    os.chmod(root / "dir1", 0o2755)
    if big_sparse:
        with open(root / "sparse_big", "wb") as f:
            f.seek(5 * (1 << 30))
            f.write(b"tail of a sparse file\n")
            f.seek(1 << 20)
            f.write(b"early data")
    if xattrs:
        os.setxattr(root / "nano.txt", "user.small", b"tiny")
        os.setxattr(root / "medium.bin", "user.big", rng.randbytes(300))
        os.setxattr(root / "dir2", "user.dirattr", b"on a directory")
    return root


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory) -> Path:
    return make_source_tree(tmp_path_factory.mktemp("src") / "tree")


@pytest.fixture
def tmpimg(tmp_path) -> Path:
    return tmp_path / "fs.img"


def needs_tools() -> None:
    if shutil.which("mke2fs") is None or shutil.which("e2fsck") is None:
        pytest.skip("e2fsprogs not installed")


def dev_mode(mode: int) -> int:
    return mode & S_IFMT


# -- images made by the Linux kernel (tests/ext2/kimages.py) -------------------------------------
class KernelImages:
    """Kernel-populated images, each built once per session on first use; ``copy`` gives a
    test its own sparse copy to change."""

    VARIANTS = {   # name: (fstype, size, mke2fs options, with the 50,000-name directory)
        "ext4": ("ext4", "256M", ["-b", "4096", "-I", "256"], True),
        "ext4-1k": ("ext4", "128M", ["-b", "1024", "-I", "256"], False),
        "ext4-inline": ("ext4", "128M", ["-b", "4096", "-I", "256", "-O", "inline_data"], False),
        "ext4-128": ("ext4", "128M", ["-b", "4096", "-I", "128"], False),
        "ext4-nocsum": ("ext4", "128M", ["-b", "4096", "-O", "^metadata_csum,^64bit"], False),
        "ext3": ("ext3", "128M", ["-b", "2048"], False),
        "ext2": ("ext2", "128M", ["-b", "4096"], False),
    }

    def __init__(self, base: Path) -> None:
        self.base = base
        self.built: dict[str, Path] = {}

    def image(self, name: str) -> Path:
        from . import kimages

        if name not in self.built:
            fstype, size, opts, big = self.VARIANTS[name]
            self.built[name] = kimages.build(self.base / f"{name}.img", fstype, size, opts,
                                             big=big)
        return self.built[name]

    def copy(self, name: str, dest: Path) -> Path:
        run("cp", "--sparse=always", str(self.image(name)), str(dest))
        return dest


@pytest.fixture(scope="session")
def kernel_images(tmp_path_factory) -> KernelImages:
    if os.geteuid() != 0 or shutil.which("setfacl") is None:
        pytest.skip("kernel-made images need root (loop mounts) and setfacl (acl)")
    return KernelImages(tmp_path_factory.mktemp("kimages"))
