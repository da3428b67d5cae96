"""Seeded random operations against an in-memory model, with remounts in between; the image
made by our newfs must be fsck.fat-clean at the end and read back identically by mtools."""

from __future__ import annotations

import random

import pytest

from rumpkernel.fs.msdos import MsdosType
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.testing.hostdev import HostFileDevice

from .helpers import HAVE_TOOLS, MiniVfs, fsck, mount_dev, mtools_extract

NAMES = ["a", "B", "file.txt", "Long File Name With Spaces.text", "été", "ÜBER.dat",
         "x" * 60, "dir", "Mixed.Case", "numbers 12345", "z.tar.gz", "naïve"]


class Model:
    def __init__(self) -> None:
        self.tree: dict[str, bytes | None] = {"": None}

    def children(self, d: str) -> list[str]:
        pre = d + "/" if d else ""
        return [p for p in self.tree if p and p.startswith(pre) and "/" not in p[len(pre):]]

    def find(self, d: str, name: str) -> str | None:
        for p in self.children(d):
            if p.rpartition("/")[2].upper() == name.upper():
                return p
        return None


def _join(d: str, name: str) -> str:
    return f"{d}/{name}" if d else name


def _step(rnd: random.Random, m: Model, vfs: MiniVfs) -> None:
    dirs = [p for p, v in m.tree.items() if v is None]
    files = [p for p, v in m.tree.items() if v is not None]
    op = rnd.choice(["create", "create", "write", "write", "truncate", "mkdir", "unlink",
                     "rmdir", "rename", "rename"])
    d = rnd.choice(dirs)
    name = rnd.choice(NAMES) + (str(rnd.randrange(5)) if rnd.random() < 0.5 else "")
    if op in ("create", "mkdir"):
        if m.find(d, name) is not None:
            with pytest.raises(KernelError) as ei:
                (vfs.create if op == "create" else vfs.mkdir)(_join(d, name))
            assert ei.value.errno == Errno.EEXIST
            return
        if op == "create":
            data = rnd.randbytes(rnd.choice([0, 1, 100, 512, 2048, 5000]))
            vfs.create(_join(d, name), data)
            m.tree[_join(d, name)] = data
        else:
            vfs.mkdir(_join(d, name))
            m.tree[_join(d, name)] = None
    elif op == "write" and files:
        p = rnd.choice(files)
        old = m.tree[p]
        off = rnd.randrange(0, len(old) + 3000)
        data = rnd.randbytes(rnd.randrange(1, 6000))
        assert vfs.write(p, off, data) == len(data)
        new = bytearray(old) + bytes(max(0, off - len(old)))
        new[off : off + len(data)] = data
        m.tree[p] = bytes(new)
    elif op == "truncate" and files:
        p = rnd.choice(files)
        size = rnd.randrange(0, 8000)
        vfs.truncate(p, size)
        m.tree[p] = (m.tree[p] + bytes(size))[:size]
    elif op == "unlink" and files:
        p = rnd.choice(files)
        vfs.unlink(p)
        del m.tree[p]
    elif op == "rmdir" and len(dirs) > 1:
        p = rnd.choice(dirs[1:])
        if m.children(p):
            with pytest.raises(KernelError) as ei:
                vfs.rmdir(p)
            assert ei.value.errno == Errno.ENOTEMPTY
        else:
            vfs.rmdir(p)
            del m.tree[p]
    elif op == "rename" and len(m.tree) > 1:
        _rename(rnd, m, vfs, d, name)


def _rename(rnd, m: Model, vfs: MiniVfs, d: str, name: str) -> None:
    src = rnd.choice([p for p in m.tree if p])
    if rnd.random() < 0.2:       # case-only rename in place
        d, name = src.rpartition("/")[0], src.rpartition("/")[2].swapcase()
    if (d + "/").startswith(src + "/") or d == src:
        return                    # into itself: the VFS refuses this
    dst = m.find(d, name)
    if dst is not None and dst != src:
        if (m.tree[dst] is None) != (m.tree[src] is None):
            return                # type mismatch: the VFS refuses this
        if m.tree[dst] is None and m.children(dst):
            with pytest.raises(KernelError) as ei:
                vfs.rename(src, dst)
            assert ei.value.errno == Errno.ENOTEMPTY
            return
    target = _join(d, name)
    vfs.rename(src, target)
    if dst is not None and dst != src:
        del m.tree[dst]
    moved = {p: v for p, v in m.tree.items() if p == src or p.startswith(src + "/")}
    for p in moved:
        del m.tree[p]
    for p, v in moved.items():
        m.tree[target + p[len(src):]] = v


def _check(vfs: MiniVfs, m: Model) -> None:
    want = {p: v for p, v in m.tree.items() if p}
    assert vfs.walk() == want


@pytest.mark.oracle
@pytest.mark.skipif(not HAVE_TOOLS, reason="dosfstools/mtools")
@pytest.mark.parametrize("fat_type,size,seed", [(12, 2 << 20, 1), (16, 24 << 20, 2),
                                                (32, 40 << 20, 3), (32, 40 << 20, 4)])
def test_random_ops_against_model(tmp_path, fat_type, size, seed):
    img = tmp_path / "img"
    with open(img, "wb") as f:
        f.truncate(size)
    opts = {"fat_type": fat_type, "label": "MODEL"}
    if fat_type == 32:
        opts["sectors_per_cluster"] = 1
    with HostFileDevice(img) as dev:
        MsdosType.newfs(dev, **opts)
    assert fsck(img).returncode == 0
    rnd = random.Random(seed)
    m = Model()
    for _round in range(5):
        with HostFileDevice(img) as dev:
            fs = mount_dev(dev)
            vfs = MiniVfs(fs)
            _check(vfs, m)
            for _ in range(100):
                _step(rnd, m, vfs)
            _check(vfs, m)
            fs.unmount()
        r = fsck(img)
        assert r.returncode == 0, r.stdout.decode()
    got = mtools_extract(str(img), tmp_path / "out")
    assert got == {p: v for p, v in m.tree.items() if p}
