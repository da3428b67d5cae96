"""Hostile images: hand-made corruptions and seeded mutants.  Every outcome must be success or
KernelError -- never another exception, never a hang, never a file bigger than its chain."""

from __future__ import annotations

import random
import struct
import time

import pytest

from rumpkernel.fs.msdos.layout import BootSector
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.bio import MemoryDevice
from rumpkernel.vfs.vattr import S_ISDIR

from .helpers import HAVE_TOOLS, MiniVfs, make_tree, mount_dev, mtools_image

pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="dosfstools/mtools")
TIME_BOUND_S = 20.0   # a hang guard, not a speed test


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    tree = base / "tree"
    make_tree(tree, 512, big_dir=20, depth=3)
    out = {}
    for bits, size in ((12, 1440), (16, 8192), (32, 40000)):
        img = base / f"fat{bits}.img"
        mtools_image(img, tree, ["-F", str(bits), "-s", "1"], size)
        out[bits] = img.read_bytes()
    return out


def _meta_ranges(image: bytes) -> list[tuple[int, int]]:
    """Byte ranges holding metadata: boot region, FATs, every directory's sectors."""
    fs = mount_dev(MemoryDevice(bytearray(image)), readonly=True)
    vfs = MiniVfs(fs)
    bps = fs.geo.sector_size
    ranges = [(0, fs.geo.data_start * bps if fs.geo.fat_bits != 32 else fs.geo.root_start * bps)]
    stack = [vfs.node("")]
    while stack:
        n = stack.pop()
        d = fs.dir_of(n)
        ranges.extend((s * bps, (s + 1) * bps) for s in d.sectors)
        for s in d.entries_from(0, 10_000):
            if s.is_dir:
                stack.append(fs.vget(fs.inos.ino_for(d.epos(s.index))))
    return ranges


def _mutate(image: bytes, ranges, rnd: random.Random) -> bytearray:
    img = bytearray(image)
    for _ in range(rnd.randint(1, 12)):
        lo, hi = rnd.choice(ranges)
        pos = rnd.randrange(lo, hi)
        kind = rnd.random()
        if kind < 0.6:
            img[pos] = rnd.randrange(256)
        elif kind < 0.8:
            img[pos] ^= 1 << rnd.randrange(8)
        else:
            pos -= pos % 4
            img[pos : pos + 4] = struct.pack("<I", rnd.choice(
                [0, 1, 2, 3, 0xFFFFFFFF, 0x0FFFFFF7, rnd.randrange(2**32), rnd.randrange(64)]))
    return img


def _walk_all(fs) -> int:
    """Visit everything; return how many nodes were read.  Files must not outgrow chains."""
    vfs = MiniVfs(fs)
    count = 0
    stack = [(fs.vget(fs.root_ino), 0)]
    while stack:
        d, depth = stack.pop()
        cookie = 0
        while True:
            batch = fs.readdir(d, cookie)
            if not batch:
                break
            cookie = batch[-1].cookie
            for e in batch:
                if e.name in (b".", b".."):
                    continue
                n = fs.vget(fs.lookup(d, e.name))
                st = fs.getattr(n)
                count += 1
                if S_ISDIR(st.mode):
                    if depth < 40:
                        stack.append((n, depth + 1))
                else:
                    data = fs.read(n, 0, st.size + 10)
                    assert len(data) == st.size
                    assert st.size <= len(fs.chain_of(n)) * fs.geo.cluster_size
    del vfs
    return count


def _rw_workload(fs, rnd: random.Random) -> None:
    root = fs.vget(fs.root_ino)
    names = [e.name for e in fs.readdir(root, 0) if e.name not in (b".", b"..")]
    ops = 0
    for i in range(8):
        try:
            ino = fs.create(root, f"new file {i}.txt".encode(), 0o100644, 0, 0, 0)
            n = fs.vget(ino)
            fs.write(n, rnd.randrange(0, 3000), rnd.randbytes(rnd.randrange(1, 5000)))
            d = fs.vget(fs.mkdir(root, f"new dir {i}".encode(), 0o755, 0, 0))
            fs.create(d, b"inner", 0o100644, 0, 0, 0)
            if names:
                victim = rnd.choice(names)
                vn = fs.vget(fs.lookup(root, victim))
                if not S_ISDIR(fs.getattr(vn).mode):
                    fs.write(vn, 0, b"overwrite")
                    fs.rename(root, victim, vn, d, b"moved", None)
            ops += 1
        except KernelError:
            pass
    fs.sync()


def _run_mutant(image: bytes, ranges, seed: int, write: bool) -> str:
    rnd = random.Random(seed)
    img = _mutate(image, ranges, rnd)
    start = time.monotonic()
    outcome = "ok"
    try:
        fs = mount_dev(MemoryDevice(img), readonly=not write)
        _walk_all(fs)
        if write:
            _rw_workload(fs, rnd)
            _walk_all(fs)
            fs.unmount()
    except KernelError as e:
        outcome = Errno(e.errno).name
    assert time.monotonic() - start < TIME_BOUND_S, f"seed {seed} too slow"
    return outcome


@pytest.mark.parametrize("bits,count", [(32, 240), (16, 60), (12, 60)])
def test_mutants_read(images, bits, count):
    image = images[bits]
    ranges = _meta_ranges(image)
    outcomes = [_run_mutant(image, ranges, 1000 * bits + s, False) for s in range(count)]
    assert "ok" in outcomes and len(set(outcomes)) > 1   # the mutants did bite


@pytest.mark.parametrize("bits,count", [(32, 80), (16, 30), (12, 30)])
def test_mutants_read_write(images, bits, count):
    image = images[bits]
    ranges = _meta_ranges(image)
    for s in range(count):
        _run_mutant(image, ranges, 7 * bits + 100_000 + s, True)


# -- hand-made corruptions -----------------------------------------------------------------
def _fs(image: bytes, log=None, readonly=True):
    return mount_dev(MemoryDevice(bytearray(image)), readonly=readonly, log=log)


def _set_fat32(image: bytearray, fs, cluster: int, value: int) -> None:
    geo = fs.geo
    for k in range(geo.num_fats):
        off = (geo.reserved + k * geo.fat_sectors) * geo.sector_size + 4 * cluster
        image[off : off + 4] = struct.pack("<I", value)


def test_cycle_in_chain(images):
    img = bytearray(images[32])
    fs = _fs(img)
    path = "x.y.z.tar.gz"   # 513 bytes in make_tree: two 512-byte clusters
    n = MiniVfs(fs).node(path)
    chain = fs.chain_of(n)
    assert len(chain) == 2
    _set_fat32(img, fs, chain[1], chain[0])
    with pytest.raises(KernelError) as ei:
        MiniVfs(_fs(img)).read(path)
    assert ei.value.errno == Errno.EUCLEAN


def test_chain_past_end_of_volume(images):
    img = bytearray(images[32])
    fs = _fs(img)
    chain = fs.chain_of(MiniVfs(fs).node("x.y.z.tar.gz"))
    _set_fat32(img, fs, chain[0], fs.geo.max_cluster + 7)
    with pytest.raises(KernelError) as ei:
        MiniVfs(_fs(img)).read("x.y.z.tar.gz")
    assert ei.value.errno == Errno.EUCLEAN


def test_size_beyond_chain_is_clamped(images):
    img = bytearray(images[32])
    fs = _fs(img)
    n = MiniVfs(fs).node("x.y.z.tar.gz")
    off = n.epos * 32 + 28
    img[off : off + 4] = struct.pack("<I", 10**9)
    log: list[str] = []
    fs2 = _fs(img, log)
    data = MiniVfs(fs2).read("x.y.z.tar.gz")
    assert len(data) == 2 * 512
    assert any("clamped" in m for m in log)


def test_clusters_shared_by_two_files(images):
    img = bytearray(images[32])
    fs = _fs(img)
    vfs = MiniVfs(fs)
    a, b = vfs.node("README2.TXT"), vfs.node("x.y.z.tar.gz")
    assert a.entry.cluster and b.entry.cluster
    off = a.epos * 32
    img[off + 20 : off + 22] = struct.pack("<H", b.entry.cluster >> 16)
    img[off + 26 : off + 28] = struct.pack("<H", b.entry.cluster & 0xFFFF)
    vfs2 = MiniVfs(_fs(img))
    vfs2.node("x.y.z.tar.gz")
    with pytest.raises(KernelError) as ei:
        vfs2.node("README2.TXT")
    assert ei.value.errno == Errno.EUCLEAN


def test_directory_pointing_at_ancestor(images):
    img = bytearray(images[32])
    fs = _fs(img)
    vfs = MiniVfs(fs)
    top = vfs.node("level 0 directory")
    sub = vfs.node("level 0 directory/level 1 directory")
    off = sub.epos * 32
    c = top.entry.cluster
    img[off + 20 : off + 22] = struct.pack("<H", c >> 16)
    img[off + 26 : off + 28] = struct.pack("<H", c & 0xFFFF)
    with pytest.raises(KernelError) as ei:
        _walk_all(_fs(img))
    assert ei.value.errno == Errno.EUCLEAN


def test_zero_length_directory(images):
    img = bytearray(images[32])
    fs = _fs(img)
    sub = MiniVfs(fs).node("empty dir")
    off = sub.epos * 32
    img[off + 20 : off + 22] = b"\0\0"
    img[off + 26 : off + 28] = b"\0\0"
    with pytest.raises(KernelError) as ei:
        MiniVfs(_fs(img)).node("empty dir")
    assert ei.value.errno == Errno.EUCLEAN


def _lfn_slot_of(fs, path: str) -> int:
    vfs = MiniVfs(fs)
    parent, _, name = path.rpartition("/")
    d = fs.dir_of(vfs.node(parent))
    slot = d.lookup(name)
    assert slot.first < slot.index
    return d.epos(slot.first) * 32


@pytest.mark.parametrize("bad", ["a/b", "..", "."])
def test_bad_long_names_are_skipped(images, bad):
    img = bytearray(images[32])
    fs = _fs(img)
    path = "dot.in.middle"    # a one-slot long name (13 characters)
    off = _lfn_slot_of(fs, path)
    units = bad.encode("utf-16-le") + b"\0\0"
    units += b"\xff" * (26 - len(units))
    img[off + 1 : off + 11] = units[:10]
    img[off + 14 : off + 26] = units[10:22]
    img[off + 28 : off + 32] = units[22:26]
    img[off] = 0x41      # one slot, last
    # the checksum still matches, so only the name check can refuse it
    log: list[str] = []
    names = MiniVfs(_fs(img, log)).listdir("")
    assert bad not in names and "/" not in "".join(names)
    assert any("refused" in m or "skipped" in m for m in log)


def test_bad_short_name_skipped(images):
    img = bytearray(images[32])
    fs = _fs(img)
    vfs = MiniVfs(fs)
    off = vfs.node("UPPER").epos * 32
    img[off : off + 11] = b"A/B        "
    log: list[str] = []
    names = MiniVfs(_fs(img, log)).listdir("")
    assert "A/B" not in names and "UPPER" not in names
    assert any("skipped" in m for m in log)


def test_orphan_lfn_falls_back_to_short_name(images):
    img = bytearray(images[32])
    fs = _fs(img)
    path = "spaces in name .txt"
    off = _lfn_slot_of(fs, path)
    img[off + 13] ^= 0xFF      # break the checksum
    names = MiniVfs(_fs(img)).listdir("")
    assert path not in names
    assert "SPACES~1.TXT" in names


@pytest.mark.parametrize("field,value", [
    ("bytes_per_sector", 0), ("bytes_per_sector", 300), ("sectors_per_cluster", 0),
    ("sectors_per_cluster", 3), ("reserved_sectors", 0), ("num_fats", 0), ("num_fats", 200),
    ("total_sectors32", 0), ("fat_size32", 0), ("fat_size32", 0xFFFFFFFF),
    ("root_cluster", 0), ("root_cluster", 0x0FFFFFFF), ("root_entries", 512),
    ("total_sectors32", 0xFFFFFFFF), ("reserved_sectors", 0xFFFF),
])
def test_absurd_bpb(images, field, value):
    from dataclasses import replace

    img = bytearray(images[32])
    bs = replace(BootSector.parse(bytes(img[:512])), **{field: value})
    img[:512] = bs.emit()
    try:
        fs = _fs(img)
        _walk_all(fs)
    except KernelError as e:
        assert e.errno in (Errno.EINVAL, Errno.EUCLEAN, Errno.EIO)
    else:
        assert field == "total_sectors32"   # only a bigger claimed size may still mount


def test_not_fat_at_all():
    with pytest.raises(KernelError) as ei:
        _fs(bytes(1 << 20))
    assert ei.value.errno == Errno.EINVAL
