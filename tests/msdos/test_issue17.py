"""Issue #17, the FAT defects: each test fails on the code before its fix.

11  files unlinked while open give their clusters back at unmount/halt (last-close semantics)
12  a full directory (65,536 slots) fails at once with EFBIG naming the directory
20  an operation that fails before changing anything leaves the image byte-identical
"""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

import rumpkernel
from rumpkernel.fs.msdos import MsdosType
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.bio import MemoryDevice
from rumpkernel.vfs.vattr import S_IFREG, SetAttr

from .helpers import HAVE_TOOLS, MiniVfs, fsck, mkfs, mount_dev

needs_tools = pytest.mark.skipif(not HAVE_TOOLS, reason="dosfstools/mtools")


def _dev(fat_type: int = 32, size: int = 40 << 20, spc: int = 1) -> MemoryDevice:
    dev = MemoryDevice(size)
    MsdosType.newfs(dev, fat_type=fat_type, sectors_per_cluster=spc, label="I17")
    return dev


def _err(fn, *a) -> KernelError:
    with pytest.raises(KernelError) as ei:
        fn(*a)
    return ei.value


# -- defect 11 -------------------------------------------------------------------------------
@needs_tools
def test_halt_frees_a_file_unlinked_while_open(tmp_path) -> None:
    img = mkfs(tmp_path / "d11.img", 40000, "-F", "32")
    k = rumpkernel.boot()
    try:
        k.mount_image(str(img), "/mnt")
        s = k.sys
        fd = s.open("/mnt/victim", os.O_CREAT | os.O_RDWR, 0o644)
        s.write(fd, b"x" * 100_000)
        s.unlink("/mnt/victim")
        keep = s.open("/mnt/kept", os.O_CREAT | os.O_RDWR, 0o644)
        s.write(keep, b"k" * 5000)
        s.close(keep)
    finally:
        k.halt()                        # the victim is still open: halt must free it
    r = fsck(img)
    assert r.returncode == 0, r.stdout
    out = r.stdout.decode()
    assert "Reclaimed" not in out and "wrong" not in out, out
    assert "1 files" in out


def test_unmount_frees_unlinked_open_file_driver_level() -> None:
    dev = _dev()
    fs = mount_dev(dev)
    vfs = MiniVfs(fs)
    free0 = fs.statfs().bfree
    n = vfs.create("a", b"y" * 20_000)
    d, name = vfs.split("a")
    fs.unlink(d, name, n)               # still referenced: no inactive
    fs.unmount()
    fs = mount_dev(dev)
    assert fs.statfs().bfree == free0


# -- defect 12 -------------------------------------------------------------------------------
def _fill_dir(vfs: MiniVfs, path: str) -> int:
    i = 0
    with pytest.raises(KernelError) as ei:
        while True:
            vfs.create(f"{path}/{i:06d}" + "x" * 249)
            i += 1
    e = ei.value
    assert e.errno == Errno.EFBIG, e
    assert "/big dir" in str(e) and "65536" in str(e)
    return i


def test_full_directory_is_efbig_naming_it_and_writes_nothing() -> None:
    dev = _dev(spc=8)
    fs = mount_dev(dev)
    vfs = MiniVfs(fs)
    vfs.mkdir("big dir")
    made = _fill_dir(vfs, "big dir")
    assert made == 65536 // 21
    fs.sync()
    before = bytes(dev.data)
    # a short name may still fit in the last free slots; a long one must not grow anything
    e = _err(vfs.create, "big dir/" + "z" * 200)
    assert e.errno == Errno.EFBIG
    e = _err(vfs.mkdir, "big dir/" + "q" * 200)
    assert e.errno == Errno.EFBIG
    vfs.create("outside")
    vfs.unlink("outside")
    fs.sync()
    assert _changed(before, dev.data) <= _meta_sectors(fs)


def _changed(a: bytes, b: bytes) -> set[int]:
    return {i // 512 for i in range(0, len(a), 512) if a[i : i + 512] != b[i : i + 512]}


def _meta_sectors(fs) -> set[int]:
    """Sectors a create + unlink in the root may touch: FATs, FSInfo, the root directory."""
    g = fs.geo
    out = set(range(g.reserved + g.num_fats * g.fat_sectors))
    out |= set(fs.dir_of(fs.root).sectors)
    return out


# -- defect 20 -------------------------------------------------------------------------------
class _Snapshot:
    """The device bytes after a sync; ``same()`` syncs again and compares."""

    def __init__(self, fs, dev: MemoryDevice) -> None:
        self.fs, self.dev = fs, dev
        fs.sync()
        self.data = bytes(dev.data)

    def same(self) -> bool:
        self.fs.sync()
        return bytes(self.dev.data) == self.data


def _nearly_full(fat_type: int = 32):
    """A volume whose root directory's clusters are all used and one free cluster remains."""
    dev = _dev(fat_type, 8 << 20 if fat_type != 32 else 34 << 20)
    fs = mount_dev(dev)
    vfs = MiniVfs(fs)
    d = fs.dir_of(fs.root)
    filler = vfs.create("filler")
    i = 0
    while 0 in d.used:
        vfs.create(f"F{i}")
        i += 1
    fs.write(filler, 0, bytes((fs.fat.free_count - 1) * fs.geo.cluster_size))
    assert fs.fat.free_count == 1
    return dev, fs, vfs


def test_refused_mkdir_names_leave_image_identical() -> None:
    dev = _dev()
    fs = mount_dev(dev)
    vfs = MiniVfs(fs)
    root = vfs.node("")
    snap = _Snapshot(fs, dev)
    for bad, want in ((b"a" * 256, Errno.ENAMETOOLONG), (b"x:y", Errno.EINVAL),
                      (b"trailing ", Errno.EINVAL), (b"\xff\xfe", Errno.EILSEQ)):
        assert _err(fs.mkdir, root, bad, 0o755, 0, 0).errno == want
        assert _err(fs.create, root, bad, S_IFREG | 0o644, 0, 0, 0).errno == want
    assert snap.same()


@pytest.mark.parametrize("fat_type", [16, 32])
def test_mkdir_without_room_changes_nothing(fat_type: int) -> None:
    dev, fs, vfs = _nearly_full(fat_type)
    snap = _Snapshot(fs, dev)
    # FAT32: the root must grow (1 cluster) and the new directory needs one: ENOSPC first
    # FAT16: the fixed root is full: ENOSPC before the new directory's cluster is touched
    e = _err(vfs.mkdir, "new directory")
    assert e.errno == Errno.ENOSPC
    assert snap.same()
    assert fs.fat.free_count == 1


def test_create_in_full_fixed_root_changes_nothing() -> None:
    dev, fs, vfs = _nearly_full(16)
    snap = _Snapshot(fs, dev)
    assert _err(vfs.create, "one more").errno == Errno.ENOSPC
    assert snap.same()


def test_extending_truncate_and_far_write_without_room_change_nothing() -> None:
    dev, fs, vfs = _nearly_full(32)
    n = vfs.node("F0")
    snap = _Snapshot(fs, dev)
    big = 10 * fs.geo.cluster_size
    assert _err(fs.setattr, n, SetAttr(size=big)).errno == Errno.ENOSPC
    assert _err(fs.write, n, big, b"!").errno == Errno.ENOSPC
    assert snap.same()
    assert fs.getattr(n).size == 0


def test_rename_into_full_directory_changes_nothing() -> None:
    dev = _dev(spc=8)
    fs = mount_dev(dev)
    vfs = MiniVfs(fs)
    vfs.mkdir("big dir")
    _fill_dir(vfs, "big dir")
    vfs.create("mover", b"data")
    snap = _Snapshot(fs, dev)
    e = _err(vfs.rename, "mover", "big dir/" + "m" * 200)
    assert e.errno == Errno.EFBIG
    assert _err(vfs.rename, "mover", "bad:name").errno == Errno.EINVAL
    assert snap.same()
    assert vfs.read("mover") == b"data"


@needs_tools
def test_failed_commands_leave_a_kernel_mounted_image_identical(tmp_path) -> None:
    img = mkfs(tmp_path / "d20.img", 1440, "-F", "12")
    k = rumpkernel.boot()
    try:
        k.mount_image(str(img), "/mnt")
        k.sys.mkdir("/mnt/d", 0o755)
    finally:
        k.halt()
    before = img.read_bytes()
    k = rumpkernel.boot()
    try:
        k.mount_image(str(img), "/mnt")
        s = k.sys
        for call in (lambda: s.mkdir("/mnt/" + "n" * 300, 0o755),
                     lambda: s.mkdir("/mnt/bad|name", 0o755),
                     lambda: s.open("/mnt/d/x?", os.O_CREAT | os.O_WRONLY, 0o644),
                     lambda: s.rename("/mnt/d", "/mnt/a*b"),
                     lambda: s.symlink("t", "/mnt/link")):
            with pytest.raises(OSError):
                call()
    finally:
        k.halt()
    assert img.read_bytes() == before
    assert subprocess.run(["fsck.fat", "-n", str(img)], capture_output=True).returncode == 0


@needs_tools
@pytest.mark.parametrize("fat", ["12", "32"])
def test_unlink_after_enospc_frees_clusters(tmp_path, fat) -> None:
    img = mkfs(tmp_path / "full.img", 1440 if fat == "12" else 34000, "-F", fat, "-s", "1")
    k = rumpkernel.boot()
    try:
        k.mount_image(str(img), "/mnt")
        s = k.sys
        fd = s.open("/mnt/other", os.O_CREAT | os.O_RDWR, 0o644)
        s.write(fd, b"o" * 100_000)
        s.close(fd)
        fd = s.open("/mnt/filler", os.O_CREAT | os.O_RDWR, 0o644)
        with pytest.raises(OSError) as ei:
            while True:
                s.write(fd, b"z" * 65536)
        assert ei.value.errno == errno.ENOSPC
        assert s.statvfs("/mnt").f_bfree == 0
        s.unlink("/mnt/other")
        freed = s.statvfs("/mnt").f_bfree
        assert freed >= 100_000 // 512
        s.write(fd, b"z" * (freed * 512))      # the freed clusters are usable at once
        s.close(fd)
    finally:
        k.halt()
    r = fsck(img)
    assert r.returncode == 0 and b"Reclaimed" not in r.stdout, r.stdout
