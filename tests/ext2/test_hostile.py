"""Hostile images: seeded mutants of a small ext4 image (bit flips and byte stomps in the
superblock, descriptors, inode table, extent nodes, directory and htree blocks, xattr block and
journal).  Each mutant either mounts and walks completely, or fails with KernelError, with
bounded work; a read-write workload on mutants that mount behaves the same way."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from rumpkernel.fs.ext2 import Ext4Type
from rumpkernel.fs.ext2 import dirs as D
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.bio import MemoryDevice
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.vattr import DT_DIR, DT_LNK, DT_REG, S_IFREG, SetAttr

from .conftest import mke2fs, mounted, resolve, run

pytestmark = pytest.mark.oracle
MUTANTS = 240
MAX_DEVICE_READS = 200_000
MAX_BYTES_READ = 32 << 20


class CountingDevice(MemoryDevice):
    def pread(self, offset: int, length: int) -> bytes:
        if self.reads > MAX_DEVICE_READS:
            raise AssertionError("unbounded work: too many device reads")
        return super().pread(offset, length)


@pytest.fixture(scope="module", params=["ext4", "ext4-nocsum", "ext3", "ext4-inline"])
def base(request, tmp_path_factory) -> tuple[bytes, dict[str, list[int]]]:
    tmp = tmp_path_factory.mktemp("hostile")
    fstype, opts = {"ext4": ("ext4", []), "ext4-nocsum": ("ext4", ["-O", "^metadata_csum"]),
                    "ext3": ("ext3", []),
                    "ext4-inline": ("ext4", ["-O", "inline_data,^metadata_csum"])}[request.param]
    src = tmp / "src"
    (src / "big").mkdir(parents=True)
    for i in range(300):
        (src / "big" / f"name-{i:03d}").write_bytes(bytes([i % 251]) * (i * 7))
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "deeper" / "leaf").write_bytes(b"leaf\n" * 100)
    with open(src / "frag", "wb") as f:          # many extents: a depth-1 extent tree
        for k in range(12):
            f.seek(k * 8192)
            f.write(bytes([k + 1]) * 1024)
    (src / "slow").symlink_to("s" * 120)
    (src / "fast").symlink_to("big/name-001")
    (src / "xattr").write_bytes(b"x")
    img = mke2fs(tmp / "h.img", fstype, "4M", src, "-b", "1024", "-N", "512", *opts)
    run("e2fsck", "-fyD", str(img), check=False)
    run("debugfs", "-w", "-R", "ea_set /xattr user.blockvalue " + "q" * 700, str(img))
    run("debugfs", "-w", "-R", "ea_set /xattr user.inl small", str(img))
    blob = tmp / "blob"
    blob.write_bytes(b"J" * 1024)
    (tmp / "script").write_text(f"jo\njw -b 3000 {blob}\njc\n")
    run("debugfs", "-w", "-f", str(tmp / "script"), str(img))
    return img.read_bytes(), _regions(img)


def _regions(img: Path) -> dict[str, list[int]]:
    """Byte ranges worth mutating, located through the driver itself."""
    bs = 1024
    out: dict[str, list[int]] = {"super": list(range(1024, 2048)),
                                 "gdt": list(range(2 * bs, 2 * bs + 128))}
    with mounted(img, readonly=True) as fs:
        vol = fs.vol
        itable = vol.gd_inode_table(vol.gd(0))
        out["inodes"] = list(range(itable * bs, itable * bs + 20 * 256))
        frag = resolve(fs, "frag")
        fmap = fs.bmap(frag)
        tree = getattr(fmap, "tree_blocks", None) or [fmap._root(12)]
        out["extent"] = [b * bs + i for b in tree for i in range(bs)]
        big = resolve(fs, "big")
        blocks = D.dir_blocks(fs, big)
        out["htree"] = [blocks[0] * bs + i for i in range(bs)]
        out["dirblock"] = [b * bs + i for b in blocks[1:4] for i in range(bs)]
        root_blocks = D.dir_blocks(fs, fs.vget(2))
        out["rootdir"] = [b * bs + i for b in root_blocks for i in range(bs)]
        out["xattr"] = [resolve(fs, "xattr").file_acl * bs + i for i in range(bs)]
        _jnode, jmap = fs._load_journal()
        jblocks = [p for _, p, n in jmap.runs(0, 4) for p in range(p, p + n)]
        out["journal"] = [b * bs + i for b in jblocks for i in range(bs)]
    return out


def mutate(image: bytes, regions: dict[str, list[int]], seed: int) -> bytearray:
    rng = random.Random(seed)
    data = bytearray(image)
    kind = sorted(regions)[seed % len(regions)]
    for _ in range(rng.randint(1, 4)):
        pos = rng.choice(regions[kind])
        how = rng.random()
        if how < 0.6:
            data[pos] ^= 1 << rng.randrange(8)
        elif how < 0.8:
            data[pos] = rng.choice([0, 0xFF, 0x7F, 0x80, 1])
        else:
            data[pos:pos + 4] = rng.randbytes(4)
    return data


def walk(fs) -> int:
    """Touch every reachable node: lookup, getattr, readdir, read, readlink, xattrs."""
    seen = {fs.root_ino}
    stack = [fs.vget(fs.root_ino)]
    budget = MAX_BYTES_READ
    nodes = 0
    while stack:
        dnode = stack.pop()
        cookie = 0
        while ents := fs.readdir(dnode, cookie):
            if ents[-1].cookie <= cookie:
                raise AssertionError("readdir cookie did not advance")
            cookie = ents[-1].cookie
            for e in ents:
                if e.name in (b".", b".."):
                    continue
                assert b"/" not in e.name and b"\0" not in e.name
                fs.lookup(dnode, e.name)
                node = fs.vget(e.ino)
                attr = fs.getattr(node)
                nodes += 1
                fs.listxattr(node)
                if e.dtype == DT_DIR and e.ino not in seen:
                    seen.add(e.ino)
                    stack.append(node)
                elif e.dtype == DT_LNK:
                    fs.readlink(node)
                elif e.dtype == DT_REG and attr.size:
                    budget -= _read_data(fs, node, attr.size, budget)
    return nodes


def _read_data(fs, node, size: int, budget: int) -> int:
    off, used = 0, 0
    while off < size and used < budget:
        try:
            off = fs.seek_data(node, off)
        except KernelError as err:
            if err.errno == Errno.ENXIO:
                break
            raise
        hole = fs.seek_hole(node, off)
        data = fs.read(node, off, min(hole - off, 1 << 20, budget - used))
        assert len(data) <= size
        if not data:
            break
        used += len(data)
        off += len(data)
    return used


def rw_workload(fs) -> None:
    root = fs.vget(fs.root_ino)
    ino = fs.create(root, b"hostile-new", S_IFREG | 0o644, 0, 0, 0)
    node = fs.vget(ino)
    fs.write(node, 0, b"w" * 5000)
    fs.mkdir(root, b"hostile-dir", 0o755, 0, 0)
    fs.setxattr(node, b"user.k", b"v" * 100, 0)
    for e in fs.readdir(root, 0)[:6]:
        if e.name in (b".", b"..") or e.dtype != DT_REG:
            continue
        victim = fs.vget(e.ino)
        fs.setattr(victim, SetAttr(size=10))
        fs.unlink(root, e.name, victim)
        fs.inactive(victim)
    fs.sync()


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout("mutant took too long (hang?)")


def _run_mutant(data: bytearray, writable: bool) -> str:
    dev = CountingDevice(data, readonly=not writable)
    ctx = MountContext(dev=dev, readonly=not writable)
    try:
        fs = Ext4Type.mount(ctx)
    except KernelError:
        return "refused"
    try:
        if writable and not fs.readonly:
            rw_workload(fs)
        walk(fs)
        fs.unmount()
        return "ok"
    except KernelError:
        return "error"


@pytest.mark.parametrize("chunk", range(8))
def test_mutants_read_and_write(base, chunk):
    image, regions = base
    old = signal.signal(signal.SIGALRM, _alarm)
    outcomes: dict[str, int] = {}
    try:
        for seed in range(chunk, MUTANTS, 8):
            for writable in (False, True):
                signal.alarm(10)
                try:
                    result = _run_mutant(mutate(image, regions, seed), writable)
                finally:
                    signal.alarm(0)
                outcomes[result] = outcomes.get(result, 0) + 1
    finally:
        signal.signal(signal.SIGALRM, old)
    assert sum(outcomes.values()) == 2 * len(range(chunk, MUTANTS, 8))
    # the mutants bite (some are refused or fail) yet the driver still does real work on
    # damaged images (some sessions complete); every seed is fixed, so this is stable
    assert outcomes.get("ok", 0) > 0, outcomes
    assert outcomes.get("refused", 0) + outcomes.get("error", 0) > 0, outcomes



def test_unmutated_base_walks(base):
    image, _ = base
    fs = Ext4Type.mount(MountContext(dev=MemoryDevice(bytearray(image), readonly=True),
                                     readonly=True))
    assert fs.info()["replayed_journal"]
    assert walk(fs) >= 300
    fs.unmount()


def test_mutants_hit_every_region(base):
    _image, regions = base
    kinds = {sorted(regions)[s % len(regions)] for s in range(MUTANTS)}
    assert kinds == set(regions)
    assert len(regions) >= 9


@pytest.mark.slow
def test_mutant_soak(base):
    image, regions = base
    for seed in range(1000, 4000):
        for writable in (False, True):
            _run_mutant(mutate(image, regions, seed), writable)


def test_mutants_memory_is_bounded(base):
    """Python allocations while mounting and walking a mutant stay small (the image is 4 MiB;
    nothing a hostile field says may make the driver allocate far beyond that)."""
    import tracemalloc

    image, regions = base
    peaks = []
    for seed in range(0, MUTANTS, 12):
        tracemalloc.start()
        try:
            _run_mutant(mutate(image, regions, seed), False)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert max(peaks) < 48 << 20
