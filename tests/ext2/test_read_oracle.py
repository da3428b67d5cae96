"""Read oracle: trees made by ``mke2fs -d`` read back byte-exact with correct metadata."""

from __future__ import annotations

import os

import pytest

from rumpkernel.fs.ext2 import dirs
from rumpkernel.fs.ext2 import layout as L
from rumpkernel.kern.abi import makedev
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.vattr import S_IFCHR, S_IFMT

from .conftest import loop_mount, mke2fs, mounted, resolve, run, walk_fs, walk_host

pytestmark = pytest.mark.oracle

CONFIGS = {
    "ext2-1k": ("ext2", "96M", []),
    "ext3-2k": ("ext3", "96M", ["-b", "2048"]),
    "ext4-4k": ("ext4", "96M", ["-b", "4096"]),
    "ext4-1k": ("ext4", "96M", ["-b", "1024"]),
    "ext4-no64-nocsum": ("ext4", "96M", ["-O", "^64bit,^metadata_csum"]),
    "ext4-uninit_bg": ("ext4", "96M", ["-O", "^metadata_csum,uninit_bg"]),
    "ext4-inline": ("ext4", "96M", ["-O", "inline_data"]),
    "ext4-128inode": ("ext4", "96M", ["-I", "128"]),
    "ext4-orphan_file": ("ext4", "96M", ["-O", "orphan_file"]),
    "ext4-meta_bg": ("ext4", "96M", ["-O", "meta_bg,^resize_inode"]),
    "ext4-noflex": ("ext4", "96M", ["-O", "^flex_bg", "-b", "2048"]),
    "ext2-nofiletype": ("ext2", "96M", ["-O", "^filetype", "-b", "4096"]),
    "ext4-csum_seed": ("ext4", "96M", ["-O", "metadata_csum_seed"]),
    "ext4-bigalloc": ("ext4", "256M", ["-O", "bigalloc", "-C", "16384"]),
    "ext4-64k": ("ext4", "512M", ["-b", "65536"]),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory, source_tree):
    base = tmp_path_factory.mktemp("readimg")
    out = {}
    for name, (fstype, size, opts) in CONFIGS.items():
        out[name] = mke2fs(base / f"{name}.img", fstype, size, source_tree, *opts)
    return out


@pytest.mark.parametrize("config", list(CONFIGS))
def test_tree_matches_source(images, source_tree, config):
    """mke2fs -d keeps whole seconds only and stamps directories with its own clock."""
    want = walk_host(source_tree, ns=False)
    with mounted(images[config], readonly=True) as fs:
        got = walk_fs(fs, ns=False)
    assert set(got) == set(want)
    for path in want:
        w, g = want[path], got[path]
        if w[6] is None:   # directories: size and mtime are mke2fs's own
            assert g[:3] == w[:3] and g[4] == w[4], path
            continue
        assert g == w, path


@pytest.mark.root
@pytest.mark.parametrize("config", ["ext2-1k", "ext4-4k", "ext4-128inode", "ext4-inline",
                                    "ext3-2k"])
def test_tree_matches_kernel_ns(images, config, tmp_path):
    """Nanosecond and pre-1970 times written by Linux read back exactly as Linux reads them."""
    img = tmp_path / "k.img"
    img.write_bytes(images[config].read_bytes())
    with loop_mount(img, readonly=False) as mnt:
        os.utime(mnt / "nano.txt", ns=(1_600_000_000_987_654_321, 1_600_000_000_987_654_321))
        os.utime(mnt / "old.txt", ns=(-315_619_199_876_543_211, -315_619_199_876_543_211))
        os.utime(mnt / "dir3", ns=(2_000_000_000_000_000_001, 4_000_000_000_500_000_000))
    with loop_mount(img) as mnt:
        want = walk_host(mnt, ns=True)
    with mounted(img, readonly=True) as fs:
        got = walk_fs(fs, ns=True)
        if "128" not in config:
            assert fs.getattr(resolve(fs, "old.txt")).mtime_ns == -315_619_199_876_543_211
    for path in want:
        if want[path][6] is None:
            want[path] = (*want[path][:3], None, *want[path][4:])
    assert got == want


@pytest.mark.parametrize("config", ["ext2-1k", "ext4-4k", "ext4-inline", "ext3-2k"])
def test_xattrs_and_special_files(images, source_tree, config, tmp_path):
    img = tmp_path / "x.img"
    img.write_bytes(images[config].read_bytes())
    run("debugfs", "-w", "-R", "mknod chardev c 1 3", str(img))
    run("debugfs", "-w", "-R", "mknod blockdev b 300 200", str(img))
    run("debugfs", "-w", "-R", "ea_set /old.txt user.fromdebugfs " + "v" * 500, str(img))
    with mounted(img, readonly=True) as fs:
        nano = resolve(fs, "nano.txt")
        assert fs.getxattr(nano, b"user.small") == b"tiny"
        medium = resolve(fs, "medium.bin")
        assert fs.getxattr(medium, b"user.big") == os.getxattr(source_tree / "medium.bin",
                                                               "user.big")
        assert b"user.dirattr" in fs.listxattr(resolve(fs, "dir2"))
        assert fs.getxattr(resolve(fs, "old.txt"), b"user.fromdebugfs") == b"v" * 500
        with pytest.raises(KernelError) as exc:
            fs.getxattr(nano, b"user.missing")
        assert exc.value.errno == Errno.ENOATTR
        chardev = fs.getattr(resolve(fs, "chardev"))
        assert chardev.mode & S_IFMT == S_IFCHR and chardev.rdev == makedev(1, 3)
        assert fs.getattr(resolve(fs, "blockdev")).rdev == makedev(300, 200)
        assert fs.getattr(resolve(fs, "blockdev")).rdev == os.makedev(300, 200)


def test_htree_lookup_uses_index(tmp_path):
    src = tmp_path / "src"
    big = src / "big"
    big.mkdir(parents=True)
    names = [f"entry-with-a-long-name-{i:05d}" for i in range(3000)]
    for n in names:
        (big / n).write_bytes(b"")
    img = mke2fs(tmp_path / "h.img", "ext4", "64M", src)
    run("e2fsck", "-fyD", str(img), check=False)
    with mounted(img, readonly=True) as fs:
        dnode = resolve(fs, "big")
        assert dnode.flags & L.INODE_INDEX_FL
        for n in names[::7]:
            ino = dirs._dx_lookup(fs, dnode, n.encode())
            assert ino, n
            assert dnode.dcache is None  # answered by the index, no full scan
        assert dirs._dx_lookup(fs, dnode, b"not-there") == 0
        listing = set()
        cookie = 0
        while ents := fs.readdir(dnode, cookie):
            listing.update(e.name for e in ents)
            cookie = ents[-1].cookie
        assert listing == {n.encode() for n in names} | {b".", b".."}


@pytest.mark.parametrize("config,feature", [("ext4-bigalloc", "bigalloc")])
def test_unwritable_features_mount_read_only(images, config, feature):
    log: list[str] = []
    with mounted(images[config], log=log) as fs:
        assert fs.readonly
        root = fs.vget(2)
        with pytest.raises(KernelError) as exc:
            fs.create(root, b"x", 0o100644, 0, 0, 0)
        assert exc.value.errno == Errno.EROFS
    assert any(feature in m and "read-only" in m for m in log)
