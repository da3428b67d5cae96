"""Fault injection inside operations (issue #17): the Nth device read or write of an operation
fails with EIO, for every N.  Afterwards the file system is either as it was or the operation
is complete -- never in between -- and e2fsck finds it clean.  Also the two defects this rule
came from: a rename whose second half fails (defect 2) and an unlink that meets a corrupt
bitmap (defect 16)."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rumpkernel.fs.ext2 import Ext2Type, Ext4Type
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.testing.faultdev import FaultDevice
from rumpkernel.vfs.bio import MemoryDevice
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.vattr import S_IFREG, SetAttr

pytestmark = pytest.mark.oracle
REG = S_IFREG | 0o644
NOW = 1_800_000_000 * 10**9


def mount(dev: Any, fstype: Any = Ext4Type) -> Any:
    return fstype.mount(MountContext(dev=dev, now_ns=lambda: NOW))


def node(fs: Any, path: str) -> Any:
    n = fs.vget(fs.root_ino)
    for part in filter(None, path.split("/")):
        n = fs.vget(fs.lookup(n, part.encode()))
    return n


def parent(fs: Any, path: str) -> tuple[Any, bytes]:
    head, _, name = path.rpartition("/")
    return node(fs, head), name.encode()


def build_base(fstype: Any, features: str | None) -> bytes:
    """A small image with an indexed directory, a fragmented file (a depth-1 extent tree on
    ext4), a file with its xattrs in a block, and a few of everything else."""
    dev = MemoryDevice(24 << 20)
    opts = {"features": features} if features else {}
    fstype.newfs(dev, timestamp=1_700_000_000, block_size=1024, **opts)
    fs = mount(dev, fstype)
    root = fs.vget(2)
    a = fs.vget(fs.mkdir(root, b"a", 0o755, 0, 0))
    b = fs.vget(fs.mkdir(root, b"b", 0o755, 0, 0))
    fs.mkdir(b, b"sub", 0o755, 0, 0)
    for i in range(120):
        f = fs.vget(fs.create(a, f"file-{i:03d}-{'n' * 30}".encode(), REG, 0, 0, 0))
        fs.write(f, 0, bytes([i]) * (i * 37))
    frag = fs.vget(fs.create(root, b"frag", REG, 0, 0, 0))
    other = fs.vget(fs.create(root, b"other", REG, 0, 0, 0))
    for i in range(12):                           # interleaved: many extents
        fs.write(frag, i * 1024, b"F" * 1024)
        fs.write(other, i * 1024, b"O" * 1024)
    x = fs.vget(fs.create(b, b"victim", REG, 0, 0, 0))
    fs.write(x, 0, b"victim data" * 300)
    fs.setxattr(x, b"user.big", b"v" * 700, 0)
    fs.setxattr(x, b"user.small", b"s", 0)
    fs.link(root, b"hard", x)
    fs.unmount()
    return bytes(dev.data)


def state(data: bytes, fstype: Any) -> dict[str, tuple]:
    fs = mount(MemoryDevice(bytearray(data), readonly=True), fstype)
    out: dict[str, tuple] = {}
    stack = [("", fs.vget(fs.root_ino))]
    while stack:
        path, d = stack.pop()
        for e in fs.readdir(d, 0):
            if e.name in (b".", b".."):
                continue
            n = fs.vget(e.ino)
            a = fs.getattr(n)
            p = f"{path}/{e.name.decode()}"
            content: Any = None
            if n.is_dir:
                stack.append((p, n))
            elif n.is_lnk:
                content = fs.readlink(n)
            else:
                content = hashlib.sha256(fs.read(n, 0, a.size)).hexdigest()
            xattrs = tuple(sorted((k, fs.getxattr(n, k)) for k in fs.listxattr(n)))
            out[p] = (e.ino, a.mode, a.nlink, a.size, a.blocks, a.uid, content, xattrs)
    fs.unmount()
    return out


def fsck_clean(data: bytes, tmp_path: Path) -> str:
    img = tmp_path / "check.img"
    img.write_bytes(data)
    res = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    return "" if res.returncode == 0 else res.stdout[-1500:]


def go_cold(fs: Any) -> None:
    """Write everything back and forget every cache, so the operation reads from the device."""
    fs.sync()
    vol = fs.vol
    vol.bio.invalidate()
    vol._bbm.clear()
    vol._ibm.clear()
    for n in fs.inodes.values():
        n.dcache = n.xcache = None
        n.emap = None


# Each operation: (look up what it needs) -> (do it).  The lookup runs before the cache goes cold.
def _rename_across(fs):
    a, b = node(fs, "/a"), node(fs, "/b")
    s = node(fs, "/a/file-005-" + "n" * 30)
    return lambda: fs.rename(a, s_name(5), s, b, b"moved", None)


def s_name(i: int) -> bytes:
    return f"file-{i:03d}-{'n' * 30}".encode()


def _rename_over(fs):
    root = node(fs, "/")
    s, t = node(fs, "/frag"), node(fs, "/other")

    def op():
        fs.rename(root, b"frag", s, root, b"other", t)
        fs.inactive(t)
    return op


def _rename_dir(fs):
    a, b, sub = node(fs, "/a"), node(fs, "/b"), node(fs, "/b/sub")
    return lambda: fs.rename(b, b"sub", sub, a, b"sub-moved", None)


def _unlink_last(fs):
    root, f = node(fs, "/"), node(fs, "/frag")

    def op():
        fs.unlink(root, b"frag", f)
        fs.inactive(f)
    return op


def _unlink_linked(fs):
    b, x = node(fs, "/b"), node(fs, "/b/victim")
    return lambda: fs.unlink(b, b"victim", x)


def _rmdir(fs):
    b, sub = node(fs, "/b"), node(fs, "/b/sub")

    def op():
        fs.rmdir(b, b"sub", sub)
        fs.inactive(sub)
    return op


def _truncate(fs):
    f = node(fs, "/frag")
    return lambda: fs.setattr(f, SetAttr(size=2500))


def _setxattr(fs):
    x = node(fs, "/b/victim")
    return lambda: fs.setxattr(x, b"user.more", b"m" * 200, 0)


def _removexattr(fs):
    x = node(fs, "/b/victim")
    return lambda: fs.removexattr(x, b"user.big")


def _create(fs):
    a = node(fs, "/a")
    return lambda: fs.create(a, b"brand-new-name", REG, 0, 0, 0)


def _mkdir(fs):
    a = node(fs, "/a")
    return lambda: fs.mkdir(a, b"new-dir", 0o755, 0, 0)


def _symlink(fs):
    b = node(fs, "/b")
    return lambda: fs.symlink(b, b"slow-link", b"t" * 300, 0, 0)


def _link(fs):
    a, f = node(fs, "/a"), node(fs, "/other")
    return lambda: fs.link(a, b"other-link", f)


def _write(fs):
    f = node(fs, "/other")
    return lambda: fs.write(f, 30_000, b"w" * 5000)


OPS: dict[str, Callable] = {
    "rename-across": _rename_across, "rename-over": _rename_over, "rename-dir": _rename_dir,
    "unlink-last": _unlink_last, "unlink-linked": _unlink_linked, "rmdir": _rmdir,
    "truncate": _truncate, "setxattr": _setxattr, "removexattr": _removexattr,
    "create": _create, "mkdir": _mkdir, "symlink": _symlink, "link": _link, "write": _write,
}

VARIANTS = {"ext4": (Ext4Type, None), "ext2": (Ext2Type, None)}
_bases: dict[str, bytes] = {}


def base_for(variant: str) -> bytes:
    if variant not in _bases:
        _bases[variant] = build_base(*VARIANTS[variant])
    return _bases[variant]


def run_op(base: bytes, fstype: Any, make_op: Callable, fail_at: int | None,
           ) -> tuple[bytes, int, KernelError | None]:
    mem = MemoryDevice(bytearray(base))
    dev = FaultDevice(mem)
    fs = mount(dev, fstype)
    op = make_op(fs)
    go_cold(fs)
    dev.arm(10**9 if fail_at is None else fail_at)
    err = None
    try:
        op()
        fs.sync()
    except KernelError as e:
        err = e
    n = dev.count
    dev.disarm()
    fs.unmount()                         # the retried write-back must succeed
    return bytes(mem.data), n, err


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("opname", list(OPS))
def test_every_failing_io_leaves_before_or_after(tmp_path, variant, opname):
    fstype = VARIANTS[variant][0]
    base = base_for(variant)
    before = state(base, fstype)
    done, n, err = run_op(base, fstype, OPS[opname], None)
    assert err is None and n > 0
    after = state(done, fstype)
    assert after != before
    assert not fsck_clean(done, tmp_path)
    seen = set()
    for fail_at in range(n):                 # 0-based: the (fail_at+1)-th device call
        data, _, err = run_op(base, fstype, OPS[opname], fail_at)
        assert err is not None and err.errno == Errno.EIO, (fail_at, err)
        got = state(data, fstype)
        assert got in (before, after), f"{opname}: I/O {fail_at} of {n}: half-done"
        seen.add("before" if got == before else "after")
        if got == before:                # a failed operation leaves the image byte-identical
            assert data == base, f"{opname}: I/O {fail_at} of {n}: image rewritten"
        problems = fsck_clean(data, tmp_path)
        assert not problems, f"{opname}: I/O {fail_at} of {n}:\n{problems}"
    assert "before" in seen          # some failure happened inside the operation itself


# -- the defects the rule came from ----------------------------------------------------------------
def test_defect02_rename_whose_removal_fails_changes_nothing():
    """The old name cannot be removed (its directory's leaves are corrupt): the new name must
    not stay linked, and the target must keep its link and its data."""
    base = base_for("ext4")
    before = state(base, Ext4Type)
    leaves = _blocks_of(base, "/a")[1:]              # all but the index root
    mem = MemoryDevice(bytearray(base))
    fs = mount(mem)
    a, b = node(fs, "/a"), node(fs, "/b")
    s, t = node(fs, "/a/" + s_name(7).decode()), node(fs, "/b/victim")
    go_cold(fs)
    for blk in leaves:
        mem.data[blk * 1024 + 30] ^= 0xFF
    with pytest.raises(KernelError) as exc:
        fs.rename(a, s_name(7), s, b, b"victim", t)
    assert exc.value.errno == Errno.EUCLEAN
    assert (t.links, s.links, fs.lookup(b, b"victim")) == (2, 1, t.ino)
    fs.inactive(t)                                    # still linked: nothing is freed
    fs.unmount()
    for blk in leaves:
        mem.data[blk * 1024 + 30] ^= 0xFF
    assert state(bytes(mem.data), Ext4Type) == before


def _blocks_of(base: bytes, path: str) -> list[int]:
    fs = mount(MemoryDevice(bytearray(base), readonly=True))
    d = node(fs, path)
    out = [p + k for _, p, n in fs.bmap(d).runs(0, d.size // 1024) for k in range(n)]
    fs.unmount()
    return out


def test_defect16_unlink_meeting_a_corrupt_bitmap_changes_nothing(tmp_path):
    base = base_for("ext4")
    mem = MemoryDevice(bytearray(base))
    fs = mount(mem)
    root, f = node(fs, "/"), node(fs, "/frag")
    go_cold(fs)
    first = fs.bmap(f).runs(0, 1)[0][1]
    group = fs.vol.geo.group_of_block(first)
    bb = fs.vol.gd_block_bitmap(fs.vol._gds[group])
    mem.data[bb * 1024 + 1000] ^= 0x01               # the bitmap's checksum no longer matches
    with pytest.raises(KernelError) as exc:
        fs.unlink(root, b"frag", f)
    assert exc.value.errno == Errno.EUCLEAN
    assert f.links == 1 and fs.lookup(root, b"frag") == f.ino
    fs.inactive(f)
    fs.unmount()
    mem.data[bb * 1024 + 1000] ^= 0x01
    got = state(bytes(mem.data), Ext4Type)
    assert got == state(base, Ext4Type)
