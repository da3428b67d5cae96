"""newfs: images e2fsck accepts, Linux mounts, byte-identical for identical options."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rumpkernel.fs.ext2 import Ext2Type, Ext3Type, Ext4Type
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.testing.hostdev import HostFileDevice
from rumpkernel.vfs.bio import MemoryDevice

from .conftest import assert_fsck_clean, loop_mount, mounted, run
from .workload import write_tree

pytestmark = pytest.mark.oracle
TYPES = {"ext2": Ext2Type, "ext3": Ext3Type, "ext4": Ext4Type}


def newfs(path: Path, fstype: str, size: int, **opts) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    with HostFileDevice(path) as dev:
        TYPES[fstype].newfs(dev, **opts)
    return path


@pytest.mark.parametrize("fstype,size,opts", [
    ("ext2", 8 << 20, {}),
    ("ext2", 96 << 20, {"block_size": 4096, "label": "two"}),
    ("ext3", 40 << 20, {"block_size": 2048}),
    ("ext4", 96 << 20, {}),
    ("ext4", 600 << 20, {"inode_ratio": 65536}),
    ("ext4", 64 << 20, {"features": "^metadata_csum,^64bit", "block_size": 1024}),
    ("ext4", 64 << 20, {"features": "^has_journal", "inodes": 5000, "reserved_percent": 0}),
    ("ext4", 2 << 20, {}),
])
def test_newfs_fsck_clean(tmp_path, fstype, size, opts):
    img = newfs(tmp_path / "n.img", fstype, size, timestamp=1_700_000_000, **opts)
    assert_fsck_clean(img)
    dump = run("dumpe2fs", "-h", str(img)).stdout
    if "label" in opts:
        assert "Filesystem volume name:   two" in dump
    if fstype == "ext4" and "features" not in opts and size > 4 << 20:
        for feat in ("has_journal", "extent", "64bit", "flex_bg", "metadata_csum", "dir_nlink"):
            assert feat in dump.split("Filesystem features:")[1].splitlines()[0]
    if "inodes" in opts:
        assert int(dump.split("Inode count:")[1].split()[0]) >= 5000


@pytest.mark.root
@pytest.mark.parametrize("fstype", ["ext2", "ext4"])
def test_newfs_kernel_mount_and_workload(tmp_path, fstype):
    img = newfs(tmp_path / "n.img", fstype, 96 << 20, timestamp=1_700_000_000,
                uuid="12345678-1234-5678-1234-567812345678", label="rump")
    with loop_mount(img, readonly=False) as mnt:
        assert os.listdir(mnt) == ["lost+found"]
        (mnt / "kernel-wrote").write_bytes(b"k" * 10000)
    assert_fsck_clean(img)
    with mounted(img) as fs:
        write_tree(fs, seed=3)
    assert_fsck_clean(img)
    with loop_mount(img) as mnt:
        assert (mnt / "kernel-wrote").read_bytes() == b"k" * 10000
        assert (mnt / "a" / "b" / "big").stat().st_size == 3 * (1 << 20) + 77
    assert "12345678-1234-5678-1234-567812345678" in run("dumpe2fs", "-h", str(img)).stdout


@pytest.mark.parametrize("fstype", ["ext2", "ext4"])
def test_newfs_deterministic(fstype):
    digests = set()
    for _ in range(2):
        dev = MemoryDevice(32 << 20)
        TYPES[fstype].newfs(dev, timestamp=1_650_000_000, label="same")
        digests.add(hashlib.sha256(dev.data).hexdigest())
    assert len(digests) == 1
    other = MemoryDevice(32 << 20)
    TYPES[fstype].newfs(other, timestamp=1_650_000_001, label="same")
    assert hashlib.sha256(other.data).hexdigest() not in digests


def test_newfs_rejects_bad_options():
    with pytest.raises(KernelError) as exc:
        Ext4Type.newfs(MemoryDevice(8 << 20), block_size=3000)
    assert exc.value.errno == Errno.EINVAL
    with pytest.raises(KernelError):
        Ext4Type.newfs(MemoryDevice(8 << 20), features="bigalloc")
    with pytest.raises(KernelError):
        Ext2Type.newfs(MemoryDevice(8 << 20), uuid="not-a-uuid")
    with pytest.raises(KernelError) as exc:
        Ext2Type.newfs(MemoryDevice(8 << 20, readonly=True))
    assert exc.value.errno == Errno.EROFS


def test_probe():
    dev = MemoryDevice(8 << 20)
    assert not Ext2Type.probe(dev)
    Ext4Type.newfs(dev)
    assert Ext2Type.probe(dev) and Ext3Type.probe(dev) and Ext4Type.probe(dev)
    assert not Ext2Type.probe(MemoryDevice(512))
