"""POSIX-facing behaviour where FAT has its own rules: owners, modes, links, inode numbers,
unlinked-but-open files, readdir cookies, times, the dirty bit, statfs, label."""

from __future__ import annotations

import pytest

from rumpkernel.fs.msdos import FSTYPES, MsdosType
from rumpkernel.fs.msdos.vfsops import FAT_FEATURES
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.bio import MemoryDevice
from rumpkernel.vfs.vattr import S_IFCHR, S_IFIFO, S_IFREG, SetAttr

from .helpers import MiniVfs, mount_dev


def _dev(fat_type=32, size=40 << 20, **kw) -> MemoryDevice:
    dev = MemoryDevice(size)
    opts = dict(fat_type=fat_type, label="SEM", **kw)
    if fat_type == 32:
        opts.setdefault("sectors_per_cluster", 1)
    MsdosType.newfs(dev, **opts)
    return dev


@pytest.fixture
def vfs():
    return MiniVfs(mount_dev(_dev()))


def _err(fn, *a) -> Errno:
    with pytest.raises(KernelError) as ei:
        fn(*a)
    return ei.value.errno


def test_registration():
    assert [t.name for t in FSTYPES] == ["msdos", "vfat", "fat"]
    assert all(t.probe(_dev(16, 8 << 20, sectors_per_cluster=1)) for t in FSTYPES)
    assert not MsdosType.probe(MemoryDevice(1 << 20))
    f = FAT_FEATURES
    assert not (f.symlinks or f.hardlinks or f.special_files or f.owners or f.sparse)
    assert f.case_insensitive and f.name_max == 255 and f.max_file_size == 2**32 - 1
    assert f.time_resolution_ns == 2 * 10**9


def test_no_symlinks_links_or_special_files(vfs):
    fs, root = vfs.fs, vfs.node("")
    f = vfs.create("f")
    assert _err(fs.symlink, root, b"l", b"target", 0, 0) == Errno.EPERM
    assert _err(fs.link, root, b"l", f) == Errno.EPERM
    for kind in (S_IFIFO, S_IFCHR):
        assert _err(fs.create, root, b"dev", kind | 0o644, 0, 0, 0) == Errno.EPERM


def test_owners_fixed_by_mount_options():
    fs = mount_dev(_dev(), uid="1000", gid="100", umask="077")
    vfs = MiniVfs(fs)
    n = vfs.create("f")
    st = fs.getattr(n)
    assert (st.uid, st.gid, st.mode) == (1000, 100, S_IFREG | 0o700)
    assert _err(fs.setattr, n, SetAttr(uid=0)) == Errno.EPERM
    fs.setattr(n, SetAttr(uid=1000, gid=100))       # no change: fine
    quiet = MiniVfs(mount_dev(_dev(), quiet=""))
    q = quiet.create("g")
    quiet.fs.setattr(q, SetAttr(uid=5, mode=0o4777))  # ignored silently
    assert quiet.fs.getattr(q).uid == 0 and quiet.fs.getattr(q).mode == S_IFREG | 0o755
    quiet.fs.setattr(q, SetAttr(mode=0o555))
    assert quiet.fs.getattr(q).mode == S_IFREG | 0o555


def test_fmask_dmask():
    fs = mount_dev(_dev(), fmask="133", dmask="022")
    vfs = MiniVfs(fs)
    assert fs.getattr(vfs.create("f")).mode == S_IFREG | 0o644
    assert fs.getattr(vfs.mkdir("d")).mode & 0o777 == 0o755


def test_chmod_toggles_read_only_only(vfs):
    # like Linux vfat: files show r and x for everyone the mask allows (0755 with umask 022);
    # only "all allowed write bits" <-> "none" can change, stored as the read-only attribute
    fs = vfs.fs
    n = vfs.create("f")
    assert fs.getattr(n).mode == S_IFREG | 0o755
    fs.setattr(n, SetAttr(mode=0o555))
    assert fs.getattr(n).mode == S_IFREG | 0o555
    assert n.entry.attr & 0x01
    fs.setattr(n, SetAttr(mode=0o755))
    assert fs.getattr(n).mode == S_IFREG | 0o755 and not n.entry.attr & 0x01
    assert _err(fs.setattr, n, SetAttr(mode=0o700)) == Errno.EPERM
    assert _err(fs.setattr, n, SetAttr(mode=0o444)) == Errno.EPERM
    assert _err(fs.setattr, n, SetAttr(mode=0o4755)) == Errno.EPERM
    d = vfs.mkdir("d")
    assert _err(fs.setattr, d, SetAttr(mode=0o555)) == Errno.EPERM
    fs.setattr(d, SetAttr(mode=0o755))
    ro = vfs.create("ro", mode=0o444)
    assert fs.getattr(ro).mode == S_IFREG | 0o555


def test_inode_numbers_stable_across_rename(vfs):
    fs = vfs.fs
    a = vfs.create("a", b"A")
    ino = a.ino
    vfs.mkdir("d")
    vfs.rename("a", "d/renamed with a long name")
    assert fs.lookup(vfs.node("d"), b"renamed with a long name") == ino
    assert fs.vget(ino) is a
    b = vfs.create("a", b"B")           # may reuse the freed slot: must get a new number
    assert b.ino != ino
    assert fs.read(fs.vget(ino), 0, 10) == b"A"
    fs.reclaim(a)
    assert fs.read(vfs.node("d/renamed with a long name"), 0, 10) == b"A"


def test_unlinked_open_file_readable_until_inactive(vfs):
    fs = vfs.fs
    free0 = fs.statfs().bfree
    d, name = vfs.split("victim")
    n = vfs.create("victim", b"x" * 5000)
    used = free0 - fs.statfs().bfree
    assert used >= 5000 // fs.geo.cluster_size
    fs.unlink(d, name, n)
    assert _err(fs.lookup, d, name) == Errno.ENOENT
    assert fs.read(n, 0, 6000) == b"x" * 5000
    assert fs.getattr(n).nlink == 0
    fs.write(n, 5000, b"more")                 # still writable while open
    assert fs.statfs().bfree < free0
    other = vfs.create("victim", b"new")       # the name is free again
    assert other.ino != n.ino
    fs.inactive(n)
    fs.reclaim(n)
    assert fs.statfs().bfree == free0 - len(fs.chain_of(other))
    assert vfs.read("victim") == b"new"


def test_readdir_cookies_survive_removals(vfs):
    fs = vfs.fs
    vfs.mkdir("d")
    for i in range(40):
        vfs.create(f"d/entry {i}")
    d = vfs.node("d")
    first = fs.readdir(d, 0)[:12]
    cookie = first[-1].cookie
    for e in first[2:11]:
        vfs.unlink(f"d/{e.name.decode()}")
    rest = []
    while batch := fs.readdir(d, cookie):
        rest.extend(e.name.decode() for e in batch)
        cookie = batch[-1].cookie
    seen = [e.name.decode() for e in first[2:]] + rest
    assert sorted(seen) == sorted(f"entry {i}" for i in range(40))
    assert [e.name for e in first[:2]] == [b".", b".."]


def test_dot_dot_follows_directory_moves(vfs):
    fs = vfs.fs
    a = vfs.mkdir("a")
    b = vfs.mkdir("b")
    c = vfs.mkdir("a/c")
    assert fs.lookup(c, b"..") == a.ino
    vfs.rename("a/c", "b/c")
    assert fs.lookup(c, b"..") == b.ino
    assert c.dir.dotdot == b.entry.cluster
    fs.sync()
    fresh = MiniVfs(mount_dev(fs.ctx.dev))      # from disk, without hints
    fc = fresh.node("b/c")
    assert fresh.fs.lookup(fc, b"..") == fresh.node("b").ino
    assert fresh.fs.lookup(fresh.node("b"), b"..") == fresh.fs.root_ino


def test_names_case_insensitive_and_limits(vfs):
    fs, root = vfs.fs, vfs.node("")
    vfs.create("Hello.TXT")
    assert _err(fs.create, root, b"hello.txt", S_IFREG | 0o644, 0, 0, 0) == Errno.EEXIST
    assert vfs.node("HELLO.txt") is vfs.node("Hello.TXT")
    assert vfs.listdir("") == ["Hello.TXT"]
    assert _err(fs.create, root, b"x" * 256, S_IFREG | 0o644, 0, 0, 0) == Errno.ENAMETOOLONG
    vfs.rename("Hello.TXT", "hello.txt")          # case-only rename
    assert vfs.listdir("") == ["hello.txt"]


def test_times(vfs):
    fs = vfs.fs
    n = vfs.create("t")
    st = fs.getattr(n)
    assert st.mtime_ns % (2 * 10**9) == 0 and st.ctime_ns == st.mtime_ns
    assert st.birthtime_ns % 10**7 == 0 and st.birthtime_ns >= st.mtime_ns - 2 * 10**9
    when = 1_500_000_001 * 10**9
    fs.setattr(n, SetAttr(mtime_ns=when, atime_ns=when))
    st = fs.getattr(n)
    assert st.mtime_ns == when - 10**9                # 2 s resolution
    assert st.atime_ns == (when // 86400 // 10**9) * 86400 * 10**9   # date only
    fs.sync()
    shifted = mount_dev(fs.ctx.dev, time_offset="60")
    st2 = shifted.getattr(MiniVfs(shifted).node("t"))
    assert st2.mtime_ns == st.mtime_ns - 3600 * 10**9


def test_efbig(vfs):
    n = vfs.create("big")
    assert _err(vfs.fs.write, n, 2**32 - 1, b"x") == Errno.EFBIG
    assert _err(vfs.fs.setattr, n, SetAttr(size=2**32)) == Errno.EFBIG


def test_dirty_bit_and_read_only_mount():
    dev = _dev(16, 16 << 20, sectors_per_cluster=1)
    fat1 = dev.size and 512 * 1 + 2     # FAT16 FAT[1] lives at offset 2 of the first FAT sector
    assert dev.data[fat1 + 1] & 0x80
    fs = mount_dev(dev)
    assert not dev.data[fat1 + 1] & 0x80        # dirty while mounted read-write
    MiniVfs(fs).create("x", b"1")
    fs.unmount()
    assert dev.data[fat1 + 1] & 0x80
    before = bytes(dev.data)
    ro = mount_dev(dev, readonly=True)
    MiniVfs(ro).walk()
    ro.unmount()
    assert bytes(dev.data) == before
    dev.data[fat1 + 1] &= 0x7F                  # crashed earlier: stays dirty after our unmount
    log: list[str] = []
    fs = mount_dev(dev, log=log)
    fs.unmount()
    assert not dev.data[fat1 + 1] & 0x80 and any("not properly unmounted" in m for m in log)


def test_statfs_and_label():
    dev = _dev(32, 40 << 20)
    fs = mount_dev(dev)
    s = fs.statfs()
    assert fs.label == "SEM" and s.namemax == 255 and s.bsize == 512
    assert s.bfree == s.blocks - 1              # the root directory's cluster
    MiniVfs(fs).create("f", bytes(10_000))
    assert fs.statfs().bfree == s.bfree - 20
    fs.unmount()
    fs2 = mount_dev(dev)
    assert fs2.statfs().bfree == s.bfree - 20
    assert fs2.fat.next_free > 2


def test_bad_mount_options():
    for opts in ({"shortname": "weird"}, {"umask": "999"}, {"uid": "x"}, {"bogus": "1"},
                 {"tz": "CET"}, {"codepage": "77777"}):
        with pytest.raises(KernelError) as ei:
            mount_dev(_dev(), **opts)
        assert ei.value.errno == Errno.EINVAL


def test_fat32_mirroring_off_writes_only_the_active_fat():
    dev = _dev(32, 40 << 20)
    fs = mount_dev(dev)
    geo = fs.geo
    fs.unmount()
    dev.data[40:42] = (0x80 | 1).to_bytes(2, "little")     # ext_flags: mirroring off, FAT #1
    bps = geo.sector_size
    fat0 = slice(geo.reserved * bps, (geo.reserved + geo.fat_sectors) * bps)
    fat1 = slice(fat0.stop, fat0.stop + geo.fat_sectors * bps)
    before0, before1 = bytes(dev.data[fat0]), bytes(dev.data[fat1])
    fs = mount_dev(dev)
    assert fs.geo.active_fat == 1
    MiniVfs(fs).create("f", bytes(5000))
    fs.unmount()
    assert bytes(dev.data[fat0]) == before0 and bytes(dev.data[fat1]) != before1


@pytest.mark.parametrize("mode,want", [
    ("mixed", ["README.TXT", "lower.txt", "Mixed.Txt"]),
    ("winnt", ["README.TXT", "lower.txt", "Mixed.Txt"]),
    ("win95", ["README.TXT", "LOWER.TXT", "Mixed.Txt"]),
    ("lower", ["readme.txt", "lower.txt", "Mixed.Txt"]),
])
def test_shortname_display_modes(mode, want):
    dev = _dev()
    fs = mount_dev(dev, shortname="winnt")      # lower.txt: NT flag, no LFN; Mixed: LFN
    vfs = MiniVfs(fs)
    for name in ("README.TXT", "lower.txt", "Mixed.Txt"):
        vfs.create(name)
    fs.unmount()
    shown = MiniVfs(mount_dev(dev, shortname=mode)).listdir("")
    assert shown == want


def test_failed_mount_releases_cache_and_memory():
    from rumpkernel.kern.kmem import KMem
    from rumpkernel.vfs.fstype import MountContext

    dev = _dev()
    kmem = KMem()
    good = MsdosType.mount(MountContext(dev=dev, kmem=kmem))
    good.unmount()
    assert kmem.stats()["by_tag"] == {} and kmem.reclaimers == []
    geo = good.geo
    off = geo.reserved * geo.sector_size + 4 * geo.root_cluster
    dev.data[off : off + 4] = (geo.root_cluster).to_bytes(4, "little")   # root chain loops
    with pytest.raises(KernelError) as ei:
        MsdosType.mount(MountContext(dev=dev, kmem=kmem))
    assert ei.value.errno == Errno.EUCLEAN
    assert kmem.stats()["by_tag"] == {} and kmem.reclaimers == []
