"""Write oracle: after writes through the driver, e2fsck is clean and Linux reads back exactly
the tree we wrote."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rumpkernel.fs.ext2 import Ext2Type, Ext4Type, dirs
from rumpkernel.testing.hostdev import HostFileDevice
from rumpkernel.vfs.vattr import SetAttr

from .conftest import (
    assert_fsck_clean,
    loop_mount,
    make_source_tree,
    mke2fs,
    mounted,
    run,
    walk_fs,
    walk_host,
)
from .workload import node_of, write_tree

pytestmark = [pytest.mark.oracle, pytest.mark.root]

MKE2FS = {
    "ext2-1k": ("ext2", "96M", []),
    "ext3-2k": ("ext3", "96M", ["-b", "2048"]),
    "ext4-4k": ("ext4", "96M", ["-b", "4096"]),
    "ext4-1k-no64-nocsum": ("ext4", "96M", ["-b", "1024", "-O", "^64bit,^metadata_csum"]),
    "ext4-uninit_bg": ("ext4", "96M", ["-O", "^metadata_csum,uninit_bg"]),
    "ext4-meta_bg": ("ext4", "96M", ["-O", "meta_bg,^resize_inode"]),
    "ext4-orphan_file": ("ext4", "96M", ["-O", "orphan_file", "-b", "4096"]),
    "ext4-csum_seed": ("ext4", "96M", ["-O", "metadata_csum_seed"]),
    "ext4-inline_data": ("ext4", "96M", ["-O", "inline_data"]),
}
NEWFS = {"newfs-ext2": Ext2Type, "newfs-ext4": Ext4Type}


def _make(tmp_path: Path, config: str) -> Path:
    img = tmp_path / f"{config}.img"
    if config in NEWFS:
        with open(img, "wb") as f:
            f.truncate(96 << 20)
        with HostFileDevice(img) as dev:
            NEWFS[config].newfs(dev, timestamp=1_700_000_000)
        return img
    fstype, size, opts = MKE2FS[config]
    return mke2fs(img, fstype, size, None, *opts)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISCHR(mode):
        return "c"
    if stat.S_ISFIFO(mode):
        return "p"
    return "f"


def check_kernel_view(mnt: Path, expect: dict[str, tuple]) -> None:
    for path, (kind, content, perm, uid, gid) in expect.items():
        full = mnt / path.lstrip("/")
        st = os.lstat(full)
        assert _kind(st.st_mode) == kind, path
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (perm, uid, gid), path
        if kind == "f":
            assert st.st_size == len(content), path
            assert full.read_bytes() == content, path
        elif kind == "l":
            assert os.readlink(os.fsencode(full)) == content, path
        elif kind == "c":
            assert st.st_rdev == content, path


@pytest.mark.parametrize("config", list(MKE2FS) + list(NEWFS))
def test_workload_is_fsck_clean_and_kernel_readable(tmp_path, config):
    img = _make(tmp_path, config)
    with mounted(img) as fs:
        expect = write_tree(fs).tree
        fs.sync()
    assert_fsck_clean(img)
    with loop_mount(img) as mnt:
        check_kernel_view(mnt, expect)
        kernel_tree = walk_host(mnt)
        assert os.stat(mnt / "a" / "b" / "hard").st_nlink == 2
        xnode = mnt / "a" / "b" / "big"
        assert os.getxattr(xnode, "user.small") == b"s"
        assert len(os.getxattr(xnode, "user.large")) > 100
        assert "trusted.gone" not in os.listxattr(xnode)
        assert os.stat(mnt / "a" / "size100000").st_size == 1
    with mounted(img, readonly=True) as fs:
        assert walk_fs(fs) == kernel_tree
        many = node_of(fs, "/many")                # grew past one block: now an htree
        assert many.flags & 0x1000 and dirs.dx_info(fs, many) is not None
    dump = run("dumpe2fs", "-h", str(img)).stdout
    assert "clean" in dump.split("Filesystem state:")[1].splitlines()[0]


@pytest.mark.parametrize("added,levels", [(2000, 0), (9000, 1)])
def test_writes_into_htree_directories(tmp_path, added, levels):
    """Directories indexed by e2fsck -D keep their index: entries go to the leaf their hash
    selects, full leaves split, and a full one-level root grows a second level.  e2fsck
    checks the index; Linux lists and finds every name."""
    src = make_source_tree(tmp_path / "src", nfiles=900, big_sparse=False, xattrs=False)
    img = mke2fs(tmp_path / "h.img", "ext4", "64M", src)
    run("e2fsck", "-fyD", str(img), check=False)
    with mounted(img) as fs:
        d = node_of(fs, "/dir0")
        assert d.flags & 0x1000
        for i in range(0, 900, 12):
            name = f"file{i:04d}.dat".encode()
            node = fs.vget(fs.lookup(d, name))
            fs.unlink(d, name, node)
            fs.inactive(node)
        for i in range(added):
            fs.create(d, f"added-{i}".encode(), 0o100644, 0, 0, 0)
        assert d.flags & 0x1000
        assert dirs.dx_info(fs, d).indirect_levels == levels
    assert_fsck_clean(img)
    with loop_mount(img) as mnt:
        names = set(os.listdir(mnt / "dir0"))
        assert (mnt / "dir0" / f"added-{added - 1}").exists()
    assert {f"added-{i}" for i in range(added)} <= names
    assert not any(f"file{i:04d}.dat" in names for i in range(0, 900, 12))
    assert "file0006.dat" in names and "file0019.dat" not in names  # 19 lives in dir1
    assert len(names) == 150 - 75 + added
    with mounted(img, readonly=True) as fs:
        d = node_of(fs, "/dir0")
        for i in range(0, added, 37):
            assert dirs._dx_lookup(fs, d, f"added-{i}".encode())
        assert d.dcache is None


def test_damaged_htree_index_is_dropped(tmp_path):
    """An index that does not check out is not trusted: lookups scan the directory and the
    first insertion turns the directory linear."""
    src = make_source_tree(tmp_path / "src", nfiles=600, big_sparse=False, xattrs=False)
    img = mke2fs(tmp_path / "d.img", "ext4", "64M", src, "-O", "^metadata_csum")
    run("e2fsck", "-fyD", str(img), check=False)
    with mounted(img, readonly=True) as fs:
        d = node_of(fs, "/dir0")
        root_blk = dirs.dir_blocks(fs, d)[0]
    with open(img, "r+b") as f:                # break the root's limit field
        f.seek(root_blk * 1024 + 0x20)
        f.write(b"\x07\x00")
    with mounted(img) as fs:
        d = node_of(fs, "/dir0")
        assert fs.lookup(d, b"file0006.dat")
        fs.create(d, b"after-damage", 0o100644, 0, 0, 0)
        assert not d.flags & 0x1000
    assert_fsck_clean(img)
    with loop_mount(img) as mnt:
        assert (mnt / "dir0" / "after-damage").exists()
        assert len(os.listdir(mnt / "dir0")) == 101


def test_remount_sees_writes_and_state(tmp_path):
    img = mke2fs(tmp_path / "s.img", "ext4", "32M")
    before = run("dumpe2fs", "-h", str(img)).stdout
    count = int(before.split("Mount count:")[1].split()[0])
    with mounted(img) as fs:
        fs.write(fs.vget(fs.create(fs.vget(2), b"f", 0o100644, 0, 0, 0)), 0, b"x" * 5000)
        during = run("dumpe2fs", "-h", str(img)).stdout
        assert "not clean" in during.split("Filesystem state:")[1].splitlines()[0]
    after = run("dumpe2fs", "-h", str(img)).stdout
    assert int(after.split("Mount count:")[1].split()[0]) == count + 1
    assert "clean" in after.split("Filesystem state:")[1].splitlines()[0]
    assert "Last write time" in after
    with mounted(img, readonly=True) as fs:
        assert fs.read(node_of(fs, "/f"), 0, 10_000) == b"x" * 5000


def test_write_into_unwritten_extents(tmp_path):
    """Blocks preallocated by fallocate (unwritten extents) read as zeros and convert when
    written; the result stays fsck-clean and Linux reads our data."""
    img = mke2fs(tmp_path / "u.img", "ext4", "64M", None)
    with loop_mount(img, readonly=False) as mnt:
        with open(mnt / "pre", "wb") as f:
            os.posix_fallocate(f.fileno(), 0, 1 << 20)
        (mnt / "immutable").write_bytes(b"i")
        run("chattr", "+i", str(mnt / "immutable"))
    with mounted(img) as fs:
        node = node_of(fs, "/pre")
        assert fs.read(node, 0, 1 << 20) == bytes(1 << 20)
        fs.write(node, 5000, b"inside an unwritten extent")
        immutable = fs.getattr(node_of(fs, "/immutable")).flags
    assert_fsck_clean(img)
    with loop_mount(img) as mnt:
        data = (mnt / "pre").read_bytes()
    assert data[5000:5026] == b"inside an unwritten extent"
    assert data.count(0) == (1 << 20) - 26 + b"inside an unwritten extent".count(0)
    assert immutable == 0x20000                    # SF_IMMUTABLE


def test_workload_on_64k_blocks(tmp_path):
    """64 KiB blocks (rec_len encoding of 65536); Linux on 4 KiB pages cannot mount these, so
    e2fsck and our own remount are the oracles."""
    img = mke2fs(tmp_path / "b64.img", "ext4", "256M", None, "-b", "65536")
    with mounted(img) as fs:
        expect = write_tree(fs, big=False).tree
    assert_fsck_clean(img)
    with mounted(img, readonly=True) as fs:
        for path, (kind, content, perm, uid, gid) in expect.items():
            attr = fs.getattr(node_of(fs, path))
            assert (attr.mode & 0o7777, attr.uid, attr.gid) == (perm, uid, gid), path
            if kind == "f":
                assert fs.read(node_of(fs, path), 0, len(content) + 1) == content, path
            elif kind == "l":
                assert fs.readlink(node_of(fs, path)) == content, path


def test_changes_to_inline_data_inodes(tmp_path):
    """Inline files and directories made by mke2fs -d are moved into blocks when changed."""
    src = tmp_path / "src"
    (src / "idir").mkdir(parents=True)
    for i in range(4):
        (src / "idir" / f"e{i}").write_bytes(b"tiny %d" % i)
    (src / "small").write_bytes(b"inline contents")
    (src / "shrink").write_bytes(b"s" * 100)
    (src / "xa").write_bytes(b"x")
    (src / "untouched").write_bytes(b"stays inline")
    img = mke2fs(tmp_path / "i.img", "ext4", "32M", src, "-O", "inline_data")
    with mounted(img) as fs:
        small, idir = node_of(fs, "/small"), node_of(fs, "/idir")
        assert small.inline and idir.inline and node_of(fs, "/untouched").inline
        fs.write(small, 15, b" and now much more" * 500)
        fs.setattr(node_of(fs, "/shrink"), SetAttr(size=10))
        fs.setxattr(node_of(fs, "/xa"), b"user.k", b"v", 0)
        fs.create(idir, b"added", 0o100644, 0, 0, 0)
        e1 = node_of(fs, "/idir/e1")
        fs.unlink(idir, b"e1", e1)
        fs.inactive(e1)
        assert not small.inline and not idir.inline
    assert_fsck_clean(img)
    with loop_mount(img) as mnt:
        assert (mnt / "small").read_bytes() == b"inline contents" + b" and now much more" * 500
        assert (mnt / "shrink").read_bytes() == b"s" * 10
        assert os.getxattr(mnt / "xa", "user.k") == b"v"
        assert (mnt / "xa").read_bytes() == b"x"
        assert sorted(os.listdir(mnt / "idir")) == ["added", "e0", "e2", "e3"]
        assert (mnt / "idir" / "e2").read_bytes() == b"tiny 2"
        assert (mnt / "untouched").read_bytes() == b"stays inline"
