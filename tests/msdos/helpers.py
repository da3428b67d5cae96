"""Test helpers: mount a FAT image with the driver directly (no VFS) and act on paths.

``MiniVfs`` plays the small part of the VFS these tests need: path walking with ``lookup`` +
``vget``, a node cache, and ``inactive``/``reclaim`` calls when a test drops a node."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rumpkernel.fs.msdos import MsdosType
from rumpkernel.fs.msdos.vfsops import MsdosFS
from rumpkernel.vfs.bio import MemoryDevice
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.vattr import S_IFREG, S_ISDIR, SetAttr

HAVE_TOOLS = all(shutil.which(t) for t in ("mkfs.fat", "fsck.fat", "mcopy", "mdir", "mtype"))
ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", LC_ALL="C.UTF-8", TZ="UTC")
NOW_NS = 1_700_000_000 * 10**9


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=ENV, capture_output=True, check=check)


def fsck(img: Path | str, offset: int = 0) -> subprocess.CompletedProcess:
    if offset:
        raise ValueError("fsck.fat needs a bare image")
    return run("fsck.fat", "-n", "-v", str(img), check=False)


class Clock:
    def __init__(self, start: int = NOW_NS) -> None:
        self.t = start

    def __call__(self) -> int:
        self.t += 3 * 10**9
        return self.t


def mount_dev(dev, readonly: bool = False, log: list | None = None, **opts: str) -> MsdosFS:
    ctx = MountContext(dev=dev, readonly=readonly, options=dict(opts), now_ns=Clock(),
                       log=(log.append if log is not None else (lambda m: None)))
    return MsdosType.mount(ctx)


class MiniVfs:
    def __init__(self, fs: MsdosFS) -> None:
        self.fs = fs

    def node(self, path: str):
        fs = self.fs
        n = fs.vget(fs.root_ino)
        for part in [p for p in path.split("/") if p]:
            n = fs.vget(fs.lookup(n, part.encode()))
        return n

    def split(self, path: str):
        parent, _, name = path.rstrip("/").rpartition("/")
        return self.node(parent), name.encode()

    def create(self, path: str, data: bytes = b"", mode: int = 0o644):
        d, name = self.split(path)
        n = self.fs.vget(self.fs.create(d, name, S_IFREG | mode, 0, 0, 0))
        if data:
            assert self.fs.write(n, 0, data) == len(data)
        return n

    def mkdir(self, path: str):
        d, name = self.split(path)
        return self.fs.vget(self.fs.mkdir(d, name, 0o755, 0, 0))

    def read(self, path: str) -> bytes:
        n = self.node(path)
        return self.fs.read(n, 0, self.fs.getattr(n).size + 1)

    def write(self, path: str, offset: int, data: bytes) -> int:
        return self.fs.write(self.node(path), offset, data)

    def truncate(self, path: str, size: int) -> None:
        self.fs.setattr(self.node(path), SetAttr(size=size))

    def unlink(self, path: str) -> None:
        d, name = self.split(path)
        n = self.fs.vget(self.fs.lookup(d, name))
        self.fs.unlink(d, name, n)
        self.drop(n)

    def rmdir(self, path: str) -> None:
        d, name = self.split(path)
        n = self.fs.vget(self.fs.lookup(d, name))
        self.fs.rmdir(d, name, n)
        self.drop(n)

    def drop(self, n) -> None:
        self.fs.inactive(n)
        self.fs.reclaim(n)

    def rename(self, src: str, dst: str) -> None:
        sd, sname = self.split(src)
        td, tname = self.split(dst)
        sn = self.fs.vget(self.fs.lookup(sd, sname))
        try:
            tn = self.fs.vget(self.fs.lookup(td, tname))
        except Exception:
            tn = None
        self.fs.rename(sd, sname, sn, td, tname, tn)
        if tn is not None and tn is not sn:
            self.drop(tn)

    def listdir(self, path: str) -> list[str]:
        d = self.node(path)
        out, cookie = [], 0
        while True:
            batch = self.fs.readdir(d, cookie)
            if not batch:
                return [n for n in out if n not in (".", "..")]
            out.extend(e.name.decode() for e in batch)
            cookie = batch[-1].cookie

    def walk(self, path: str = "", depth: int = 0) -> dict[str, object]:
        """{relative path: bytes for files, None for directories}."""
        out: dict[str, object] = {}
        for name in self.listdir(path):
            p = f"{path}/{name}" if path else name
            n = self.node(p)
            if S_ISDIR(self.fs.getattr(n).mode):
                out[p] = None
                if depth < 64:
                    out.update(self.walk(p, depth + 1))
            else:
                out[p] = self.read(p)
        return out


def mkfs(img: Path, size_kib: int, *args: str) -> Path:
    if img.exists():
        img.unlink()
    run("mkfs.fat", "-C", *args, str(img), str(size_kib))
    return img


def host_tree(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = None if p.is_dir() else p.read_bytes()
    return out


def memory_image(path: Path) -> MemoryDevice:
    return MemoryDevice(bytearray(path.read_bytes()))


LONG_NAMES = [
    "readme.txt", "README2.TXT", "Mixed Case.Name", "a", "x.y.z.tar.gz", "spaces in name .txt",
    "café.txt", "über", "日本語.txt", "naïve résumé.doc", "a" * 120, "UPPER", "lower",
    "file+plus;semi,comma=eq[1].txt", "dot.in.middle", ".hidden", "~tilde~", "ABCDEFGH.IJK",
]


def make_tree(root: Path, cluster: int, seed: int = 1, big_dir: int = 40, depth: int = 6) -> None:
    """A deterministic tree: awkward names, cluster-boundary sizes, deep and big directories."""
    import random

    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    sizes = [0, 1, 511, 512, 513, cluster - 1, cluster, cluster + 1, 2 * cluster, 3 * cluster + 7]
    for i, name in enumerate(LONG_NAMES):
        (root / name).write_bytes(rnd.randbytes(sizes[i % len(sizes)]))
    deep = root
    for d in range(depth):
        deep = deep / f"level {d} directory"
        deep.mkdir()
        (deep / f"file{d}.bin").write_bytes(rnd.randbytes(rnd.randrange(0, 3 * cluster)))
    big = root / "big dir"
    big.mkdir()
    for i in range(big_dir):
        (big / f"entry number {i:05d} with a long name.dat").write_bytes(
            rnd.randbytes(rnd.randrange(0, 200)))
    (root / "empty dir").mkdir()
    t = 1_600_000_000
    for k, p in enumerate(sorted(root.rglob("*"))):
        if p.is_file():
            os.utime(p, (t + 86400 * k + 17, t + 3600 * k + 3))


def mtools_image(img: Path, tree: Path, mkfs_args: list[str], size_kib: int,
                 offset_sectors: int = 0) -> str:
    """Make ``img`` with mkfs.fat and copy ``tree`` in with mcopy; return the mtools target."""
    if img.exists():
        img.unlink()
    if offset_sectors:
        with open(img, "wb") as f:
            f.truncate(size_kib * 1024 + offset_sectors * 512)
        _write_mbr(img, offset_sectors, size_kib * 2)
        run("mkfs.fat", *mkfs_args, f"--offset={offset_sectors}", str(img), str(size_kib))
        target = f"{img}@@{offset_sectors * 512}"
    else:
        run("mkfs.fat", "-C", *mkfs_args, str(img), str(size_kib))
        target = str(img)
    entries = [str(p) for p in sorted(tree.iterdir())]
    run("mcopy", "-s", "-m", "-i", target, *entries, "::/")
    return target


def _write_mbr(img: Path, start: int, count: int) -> None:
    import struct

    mbr = bytearray(512)
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x0C, b"\0\0\0", start, count)
    mbr[510:512] = b"\x55\xaa"
    with open(img, "r+b") as f:
        f.write(mbr)


def mtools_extract(target: str, out: Path) -> dict[str, object]:
    """Copy the whole image out with mcopy and return it as a tree dict."""
    out.mkdir()
    listing = run("mdir", "-b", "-i", target, "::/").stdout.decode().split()
    if listing:
        run("mcopy", "-s", "-n", "-m", "-i", target, "::/*", str(out))
    return host_tree(out)


def mdir_names(target: str, path: str = "::/") -> list[str]:
    """Long (or short) names mdir shows in one directory, without . and .."""
    text = run("mdir", "-a", "-i", target, path).stdout.decode()
    names = []
    for line in text.splitlines():
        if not line or line.startswith((" ", "Directory for")) or line[:1] == "\t":
            continue
        parts = line.split()
        if parts[0] in (".", ".."):
            continue
        # long name, when present, follows the time column
        cols = line[42:].strip() if len(line) > 42 else ""
        names.append(cols or line[:12].strip())
    return names
