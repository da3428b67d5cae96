"""Vnode-operation semantics of the driver: errno values, link counts, freeing, cookies,
xattr flags, read-only refusals, ENOSPC, corruption detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from rumpkernel.fs.ext2 import Ext2Type, Ext4Type
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.testing.hostdev import HostFileDevice
from rumpkernel.vfs.bio import MemoryDevice
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.vattr import S_IFDIR, S_IFREG, SetAttr

from .conftest import assert_fsck_clean, mounted

REG = S_IFREG | 0o644


def fresh(fstype=Ext4Type, size: int = 16 << 20, **opts):
    dev = MemoryDevice(size)
    fstype.newfs(dev, timestamp=1_700_000_000, **opts)
    return dev, fstype.mount(MountContext(dev=dev, now_ns=lambda: 1_800_000_000 * 10**9))


def errno_of(fn, *args) -> Errno:
    with pytest.raises(KernelError) as exc:
        fn(*args)
    return exc.value.errno


@pytest.fixture(params=[Ext2Type, Ext4Type], ids=["ext2", "ext4"])
def fs(request):
    _, fs = fresh(request.param)
    yield fs
    fs.unmount()


def test_name_errors(fs):
    root = fs.vget(2)
    fs.create(root, b"f", REG, 0, 0, 0)
    assert errno_of(fs.create, root, b"f", REG, 0, 0, 0) == Errno.EEXIST
    assert errno_of(fs.mkdir, root, b"f", 0o755, 0, 0) == Errno.EEXIST
    assert errno_of(fs.lookup, root, b"nope") == Errno.ENOENT
    d = fs.vget(fs.mkdir(root, b"d", 0o755, 0, 0))
    fs.create(d, b"inner", REG, 0, 0, 0)
    assert errno_of(fs.rmdir, root, b"d", d) == Errno.ENOTEMPTY
    e = fs.vget(fs.mkdir(root, b"e", 0o755, 0, 0))
    assert errno_of(fs.rename, root, b"e", e, root, b"d", d) == Errno.ENOTEMPTY
    assert fs.lookup(d, b"..") == 2 and fs.lookup(d, b".") == d.ino
    assert errno_of(fs.vget, 10**9) == Errno.ENOENT
    assert errno_of(fs.vget, 50) == Errno.ENOENT       # never allocated


def test_link_counts_and_freeing(fs):
    root = fs.vget(2)
    before = fs.statfs()
    d = fs.vget(fs.mkdir(root, b"d", 0o755, 0, 0))
    assert fs.getattr(root).nlink == 4 and fs.getattr(d).nlink == 2
    f = fs.vget(fs.create(d, b"f", REG, 0, 0, 0))
    fs.write(f, 0, b"z" * 100_000)
    fs.link(root, b"g", f)
    assert fs.getattr(f).nlink == 2
    fs.unlink(d, b"f", f)
    assert fs.getattr(f).nlink == 1 and fs.read(f, 0, 5) == b"zzzzz"
    fs.unlink(root, b"g", f)
    assert fs.getattr(f).nlink == 0
    assert fs.read(f, 99_995, 10) == b"zzzzz"          # still open: data still there
    fs.inactive(f)
    fs.rmdir(root, b"d", d)
    fs.inactive(d)
    assert fs.getattr(root).nlink == 3
    after = fs.statfs()
    assert (after.bfree, after.ffree) == (before.bfree, before.ffree)


def test_truncate_frees_blocks_and_zero_fills(fs):
    root = fs.vget(2)
    f = fs.vget(fs.create(root, b"f", REG, 0, 0, 0))
    free0 = fs.statfs().bfree
    fs.write(f, 0, b"a" * 300_000)
    assert fs.statfs().bfree < free0 - 250_000 // fs.vol.block_size
    fs.setattr(f, SetAttr(size=10))
    assert fs.statfs().bfree >= free0 - 2
    fs.setattr(f, SetAttr(size=50_000))
    assert fs.read(f, 0, 50_000) == b"a" * 10 + bytes(49_990)
    assert fs.getattr(f).size == 50_000


def test_sparse_seek_and_blocks(fs):
    root = fs.vget(2)
    f = fs.vget(fs.create(root, b"s", REG, 0, 0, 0))
    bs = fs.vol.block_size
    fs.write(f, 100 * bs, b"data")
    a = fs.getattr(f)
    assert a.size == 100 * bs + 4 and 0 < a.blocks <= 8 * (bs // 512)
    assert fs.seek_data(f, 0) == 100 * bs
    assert fs.seek_hole(f, 0) == 0
    assert fs.seek_hole(f, 100 * bs) == a.size
    assert errno_of(fs.seek_data, f, a.size) == Errno.ENXIO
    assert fs.read(f, 0, 10) == bytes(10)


def test_readdir_cookies_survive_removal(fs):
    root = fs.vget(2)
    d = fs.vget(fs.mkdir(root, b"d", 0o755, 0, 0))
    names = [f"entry{i:03d}".encode() for i in range(300)]
    for n in names:
        fs.create(d, n, REG, 0, 0, 0)
    first = fs.readdir(d, 0)
    seen = [e.name for e in first[:50]]
    cookie = first[49].cookie
    for n in names[::2]:                            # remove half, including unseen ones
        node = fs.vget(fs.lookup(d, n))
        fs.unlink(d, n, node)
        fs.inactive(node)
    while ents := fs.readdir(d, cookie):
        seen += [e.name for e in ents]
        cookie = ents[-1].cookie
    assert len(seen) == len(set(seen))
    assert set(names[1::2]) <= set(seen)
    assert seen[:2] == [b".", b".."]


def test_xattr_flags(fs):
    root = fs.vget(2)
    f = fs.vget(fs.create(root, b"x", REG, 0, 0, 0))
    fs.setxattr(f, b"user.a", b"1", 1)
    assert errno_of(fs.setxattr, f, b"user.a", b"2", 1) == Errno.EEXIST
    assert errno_of(fs.setxattr, f, b"user.b", b"2", 2) == Errno.ENOATTR
    fs.setxattr(f, b"user.a", b"3", 2)
    fs.setxattr(f, b"security.selinux", b"ctx" * 200, 0)
    assert sorted(fs.listxattr(f)) == [b"security.selinux", b"user.a"]
    assert fs.getxattr(f, b"user.a") == b"3"
    fs.removexattr(f, b"security.selinux")
    assert errno_of(fs.removexattr, f, b"security.selinux") == Errno.ENOATTR
    assert errno_of(fs.setxattr, f, b"weird.name", b"", 0) == Errno.EOPNOTSUPP
    assert errno_of(fs.setxattr, f, b"user.huge", b"h" * 100_000, 0) == Errno.ENOSPC


def test_link_max_and_efbig():
    _, fs = fresh(Ext2Type)
    root = fs.vget(2)
    f = fs.vget(fs.create(root, b"f", REG, 0, 0, 0))
    f.links = fs.link_max
    assert errno_of(fs.link, root, b"g", f) == Errno.EMLINK
    f.links = 1
    assert errno_of(fs.write, f, fs.max_file_size, b"x") == Errno.EFBIG
    assert errno_of(fs.symlink, root, b"l", b"t" * 5000, 0, 0) == Errno.ENAMETOOLONG
    fs.unmount()


def test_read_only_mount_refuses_writes():
    dev, fs = fresh()
    fs.unmount()
    ro = Ext4Type.mount(MountContext(dev=dev, readonly=True))
    root = ro.vget(2)
    assert errno_of(ro.create, root, b"x", REG, 0, 0, 0) == Errno.EROFS
    assert errno_of(ro.setattr, root, SetAttr(mode=0o700)) == Errno.EROFS
    assert ro.lookup(root, b"lost+found") == 11
    ro.unmount()


def test_enospc_leaves_clean_fs(tmp_path: Path):
    img = tmp_path / "full.img"
    with open(img, "wb") as f:
        f.truncate(4 << 20)
    with HostFileDevice(img) as dev:
        Ext4Type.newfs(dev, features="^has_journal", timestamp=1)
    with mounted(img) as fs:
        root = fs.vget(2)
        f = fs.vget(fs.create(root, b"big", REG, 0, 0, 0))
        written = 0
        with pytest.raises(KernelError) as exc:
            while True:
                written += fs.write(f, written, b"y" * 65536)
        assert exc.value.errno == Errno.ENOSPC
        assert written % 65536                        # the last write stored a prefix
        assert fs.statfs().bfree == 0
        assert fs.getattr(f).size == written
        fs.create(root, b"still-works", REG, 0, 0, 0)
    assert_fsck_clean(img)


def test_unlinked_open_file_freed_at_unmount(tmp_path: Path):
    img = tmp_path / "o.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    with HostFileDevice(img) as dev:
        Ext2Type.newfs(dev)
    with mounted(img) as fs:
        root = fs.vget(2)
        f = fs.vget(fs.create(root, b"open", REG, 0, 0, 0))
        fs.write(f, 0, b"q" * 20_000)
        fs.unlink(root, b"open", f)                    # the VFS never calls inactive
    assert_fsck_clean(img)


def test_corrupt_inode_checksum_is_euclean():
    dev, fs = fresh()
    root = fs.vget(2)
    ino = fs.create(root, b"victim", REG, 0, 0, 0)
    fs.unmount()
    fs2 = Ext4Type.mount(MountContext(dev=dev))
    blk, off = fs2.vol.inode_block(ino)
    fs2.unmount()
    bs = 1024
    dev.data[blk * bs + off + 0x20] ^= 0x40              # flip a bit in i_flags
    fs3 = Ext4Type.mount(MountContext(dev=dev, readonly=True))
    assert errno_of(fs3.vget, ino) == Errno.EUCLEAN
    fs3.unmount()


def test_statfs_and_info(fs):
    st = fs.statfs()
    assert st.bsize == fs.vol.block_size and st.namemax == 255
    assert 0 < st.bavail <= st.bfree < st.blocks
    info = fs.info()
    assert info["type"] in ("ext2", "ext4") and "filetype" in info["features"]
    assert fs.getattr(fs.vget(2)).mode & S_IFDIR


def test_corruption_on_writable_mount_sets_error_state(tmp_path: Path):
    from rumpkernel.fs.ext2 import layout as L

    img = tmp_path / "e.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    with HostFileDevice(img) as dev:
        Ext4Type.newfs(dev)
    with mounted(img) as fs:
        ino = fs.create(fs.vget(2), b"victim", REG, 0, 0, 0)
        blk, off = fs.vol.inode_block(ino)
    with open(img, "r+b") as f:
        f.seek(blk * 1024 + off + 0x20)
        f.write(b"\xff")
    log: list[str] = []
    with mounted(img, log=log) as fs:
        assert errno_of(fs.vget, ino) == Errno.EUCLEAN
    with mounted(img, readonly=True) as fs:
        sb = fs.vol.sb
        assert sb.s_state & L.STATE_ERROR and sb.s_error_count == 1
        assert not sb.s_state & L.STATE_VALID or sb.s_state & L.STATE_ERROR
    assert any("error" in m for m in log)


@pytest.mark.oracle
@pytest.mark.parametrize("fstype", [Ext4Type, Ext2Type])
def test_deep_maps_grow_and_shrink(tmp_path: Path, fstype):
    """Thousands of extents (a depth-2 tree) or triple-indirect blocks, then truncation."""
    img = tmp_path / "deep.img"
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    with HostFileDevice(img) as dev:
        fstype.newfs(dev, block_size=1024)
    with mounted(img) as fs:
        f = fs.vget(fs.create(fs.vget(2), b"holes", REG, 0, 0, 0))
        for k in range(3000):
            fs.write(f, 2 * k * 1024, bytes([k % 251 + 1]) * 1024)
        fs.write(f, 3 << 30, b"far")                  # triple indirect on ext2
        fs.sync()
        if fstype is Ext4Type:
            assert int.from_bytes(bytes(f.iblock[6:8]), "little") == 2     # tree depth
    assert_fsck_clean(img)
    with mounted(img) as fs:
        f = fs.vget(fs.lookup(fs.vget(2), b"holes"))
        for k in (0, 1, 1234, 2999):
            assert fs.read(f, 2 * k * 1024, 1024) == bytes([k % 251 + 1]) * 1024
            assert fs.read(f, (2 * k + 1) * 1024, 1024) == bytes(1024)
        assert fs.read(f, 3 << 30, 10) == b"far"
        fs.setattr(f, SetAttr(size=100 * 1024))
    assert_fsck_clean(img)
    with mounted(img, readonly=True) as fs:
        f = fs.vget(fs.lookup(fs.vget(2), b"holes"))
        assert fs.getattr(f).blocks <= 60 * 2


def test_mount_and_failed_mount_return_cache_memory():
    from rumpkernel.kern.kmem import KMem

    kmem = KMem(64 << 20)
    dev, fs = fresh()
    fs.unmount()
    ok = Ext4Type.mount(MountContext(dev=dev, kmem=kmem))
    ok.write(ok.vget(ok.create(ok.vget(2), b"f", REG, 0, 0, 0)), 0, b"x" * 100_000)
    assert kmem.in_use > 0
    ok.unmount()
    assert kmem.in_use == 0 and not kmem.reclaimers
    from rumpkernel.fs.ext2.mount import _backup_super

    _, backup = _backup_super(dev)
    bs = len(dev.data) // Ext4Type.mount(MountContext(dev=dev)).vol.geo.blocks_count
    dev.data[1024 + 0x3FC] ^= 1                          # superblock checksum now wrong
    dev.data[backup * bs + 0x3FC] ^= 1                   # and its backup's
    with pytest.raises(KernelError):
        Ext4Type.mount(MountContext(dev=dev, kmem=kmem))
    assert kmem.in_use == 0 and not kmem.reclaimers


def test_damaged_primary_superblock_falls_back_to_a_backup():
    """As e2fsck does: a torn or damaged primary superblock, a good backup -> mounted
    read-only, saying why (journal replay restores the primary when it holds it)."""
    dev, fs = fresh()
    fs.create(fs.vget(2), b"kept", REG, 0, 0, 0)
    fs.unmount()
    dev.data[1024 + 0x3FC] ^= 1
    fs = Ext4Type.mount(MountContext(dev=dev))
    assert fs.readonly and fs.ro_reason == "primary superblock damaged (run e2fsck)"
    assert fs.lookup(fs.vget(2), b"kept")
    fs.unmount()
