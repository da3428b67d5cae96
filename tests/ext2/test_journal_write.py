"""Journaled writes (issue #15, ext part): our JBD2 transactions replay -- by our driver, by
e2fsck and by a Linux loop mount -- to the state of the last commit, at every flush of a
workload (a power cut lands between two barriers); a clean unmount leaves an empty journal;
ext2 is marked not clean while it is being changed."""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rumpkernel.fs.ext2 import Ext2Type, Ext3Type, Ext4Type
from rumpkernel.fs.ext2 import layout as L
from rumpkernel.vfs.bio import MemoryDevice
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.vattr import S_IFREG, SetAttr

from .conftest import run
from .kimages import loop_mounted

pytestmark = pytest.mark.oracle
REG = S_IFREG | 0o644
NOW = 1_800_000_000 * 10**9
TYPES = {"ext4": Ext4Type, "ext3": Ext3Type, "ext2": Ext2Type}


class FlushSnapshots(MemoryDevice):
    """A memory device that keeps the image as it stands at every flush (each barrier is a
    point a power cut may follow; writes between barriers are taken as all-or-nothing)."""

    def __init__(self, data: bytearray) -> None:
        super().__init__(data)
        self.snapshots: list[bytes] = []

    def flush(self) -> None:
        self.snapshots.append(bytes(self.data))


def mount(dev: Any, fstype: Any = Ext4Type, readonly: bool = False) -> Any:
    return fstype.mount(MountContext(dev=dev, readonly=readonly, now_ns=lambda: NOW))


def tree(fs: Any) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    stack = [("", fs.vget(fs.root_ino))]
    while stack:
        path, d = stack.pop()
        cookie = 0
        while ents := fs.readdir(d, cookie):
            cookie = ents[-1].cookie
            for e in ents:
                if e.name in (b".", b"..") or (not path and e.name == b"lost+found"):
                    continue
                n = fs.vget(e.ino)
                p = f"{path}/{e.name.decode()}"
                if n.is_dir:
                    stack.append((p, n))
                    body: Any = None
                elif n.is_lnk:
                    body = fs.readlink(n)
                else:
                    body = hashlib.sha256(fs.read(n, 0, n.size)).hexdigest()
                out[p] = (n.mode, n.links, n.size, body)
    return out


def node(fs: Any, path: str) -> Any:
    n = fs.vget(fs.root_ino)
    for part in filter(None, path.split("/")):
        n = fs.vget(fs.lookup(n, part.encode()))
    return n


def workload(fs: Any, states: list[dict], flushes: list[int], dev: FlushSnapshots) -> None:
    """Changes with a sync after each step; the tree and the flush count after each sync."""
    root = fs.vget(fs.root_ino)

    def synced() -> None:                 # fsync: a commit; every third a sync: checkpoint
        if len(states) % 3:
            fs.fsync(root, False)
        else:
            fs.sync()
        states.append(tree(fs))
        flushes.append(len(dev.snapshots))

    d = fs.vget(fs.mkdir(root, b"dir", 0o755, 0, 0))
    for i in range(40):
        f = fs.vget(fs.create(d, f"file-{i:03d}".encode(), REG, 0, 0, 0))
        fs.write(f, 0, bytes([i]) * (i * 300))
    synced()
    log = fs.vget(fs.create(root, b"log", REG, 0, 0, 0))
    for i in range(6):                                     # an appending log, fsync'd
        fs.write(log, log.size, f"entry {i}\n".encode() * 50)
        synced()
    for i in range(0, 40, 3):
        n = node(fs, f"/dir/file-{i:03d}")
        fs.unlink(d, f"file-{i:03d}".encode(), n)
        fs.inactive(n)
    synced()
    fs.rename(d, b"file-001", node(fs, "/dir/file-001"), root, b"moved", None)
    fs.setattr(node(fs, "/dir/file-002"), SetAttr(size=10))
    sub = fs.vget(fs.mkdir(d, b"sub", 0o700, 0, 0))
    fs.symlink(sub, b"link", b"../../moved", 0, 0)
    synced()
    held = node(fs, "/dir/file-004")                      # unlinked while open
    fs.unlink(d, b"file-004", held)
    synced()
    fs.inactive(held)
    synced()


def e2fsck_after_replay(image: bytes, tmp: Path) -> str:
    img = tmp / "replay.img"
    img.write_bytes(image)
    subprocess.run(["e2fsck", "-E", "journal_only", "-y", str(img)], capture_output=True)
    res = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    return "" if res.returncode == 0 else res.stdout[-1200:]


def our_replay(image: bytes, fstype: Any) -> dict:
    fs = mount(MemoryDevice(bytearray(image), readonly=True), fstype, readonly=True)
    try:
        return tree(fs)
    finally:
        fs.unmount()


def base_image(fstype: str) -> bytearray:
    dev = MemoryDevice(32 << 20)
    TYPES[fstype].newfs(dev, timestamp=1_700_000_000, block_size=1024)
    return dev.data


@pytest.mark.parametrize("fstype", ["ext4", "ext3"])
def test_every_flush_point_replays_to_the_last_commit(tmp_path, fstype):
    dev = FlushSnapshots(base_image(fstype))
    fs = mount(dev, TYPES[fstype])
    assert fs.vol.journaled
    states: list[dict] = [tree(fs)]
    flushes: list[int] = [0]
    workload(fs, states, flushes, dev)
    fs.unmount()
    final = bytes(dev.data)
    checked_strict = 0
    for f, image in enumerate(dev.snapshots, 1):
        k = max(i for i, n in enumerate(flushes) if n <= f)   # last sync finished by then
        got = our_replay(image, TYPES[fstype])
        allowed = [states[k]] + ([states[k + 1]] if k + 1 < len(states) else [])
        assert got in allowed, f"flush {f}: not the state of a commit"
        if flushes[k] == f:
            assert got == states[k]
            checked_strict += 1
        problems = e2fsck_after_replay(image, tmp_path)
        assert not problems, f"flush {f} of {len(dev.snapshots)}:\n{problems}"
    assert checked_strict == len(states) - 1
    assert our_replay(final, TYPES[fstype]) == states[-1]
    sb = L.Superblock.parse(final[1024:2048])
    assert not sb.s_feature_incompat & L.INCOMPAT_RECOVER and sb.s_state & L.STATE_VALID
    assert "Journal start:            0" in _dumpe2fs(final, tmp_path)


def _dumpe2fs(image: bytes, tmp: Path) -> str:
    img = tmp / "dump.img"
    img.write_bytes(image)
    return run("dumpe2fs", "-h", str(img)).stdout


@pytest.mark.root
def test_linux_replays_our_journal(tmp_path):
    """A transaction committed but not yet written home: Linux's mount replays it."""
    dev = FlushSnapshots(base_image("ext4"))
    fs = mount(dev)
    root = fs.vget(fs.root_ino)
    for i in range(30):
        f = fs.vget(fs.create(root, f"f{i}".encode(), REG, 0, 0, 0))
        fs.write(f, 0, f"contents {i}\n".encode() * (i + 1))
    before = len(dev.snapshots)
    fs.fsync(root, False)
    want = tree(fs)
    fs.unmount()
    committed = dev.snapshots[before + 1]          # log, commit block | checkpoint
    sb = L.Superblock.parse(committed[1024:2048])
    assert sb.s_feature_incompat & L.INCOMPAT_RECOVER
    img = tmp_path / "crash.img"
    img.write_bytes(committed)
    assert our_replay(committed, Ext4Type) == want
    with loop_mounted(img, readonly=False) as mnt:
        names = sorted(p.name for p in mnt.iterdir() if p.name != "lost+found")
        contents = {p.name: p.read_bytes() for p in mnt.iterdir() if p.is_file()}
    assert names == sorted(f"f{i}" for i in range(30))
    assert contents["f7"] == b"contents 7\n" * 8
    assert not subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True).returncode


def test_ext2_is_not_clean_while_changed(tmp_path):
    img = tmp_path / "e2.img"
    img.write_bytes(bytes(base_image("ext2")))
    from rumpkernel.testing.hostdev import HostFileDevice

    dev = HostFileDevice(img)
    fs = mount(dev, Ext2Type)
    assert not fs.vol.journaled
    fs.mkdir(fs.vget(2), b"d", 0o755, 0, 0)
    state = L.Superblock.parse(img.read_bytes()[1024:2048]).s_state
    assert not state & L.STATE_VALID                   # a crash now: e2fsck -p checks it
    fs.unmount()
    dev.close()
    assert L.Superblock.parse(img.read_bytes()[1024:2048]).s_state & L.STATE_VALID
    assert shutil.which("e2fsck") and not subprocess.run(
        ["e2fsck", "-fn", str(img)], capture_output=True).returncode


@pytest.mark.parametrize("fstype", ["ext4", "ext3"])
def test_escaped_blocks_replay_exactly(fstype):
    """A block beginning with the JBD2 magic is stored escaped (first word zeroed, tag flag
    set) and comes back whole; its v3 checksum is the escaped copy's, as Linux computes it."""
    from rumpkernel.fs.ext2 import journal

    dev = FlushSnapshots(base_image(fstype))
    fs = mount(dev, TYPES[fstype])
    jw = fs.journal
    blk = fs.vol.geo.blocks_count - 5                 # free: nothing else will read it
    data = L.JBD2_MAGIC.to_bytes(4, "big") + bytes(range(256)) * 3 + bytes(1024 - 772)
    before = len(dev.snapshots)
    jw.commit({blk: data, blk - 1: bytes(1024)}, set(), NOW)
    crashed = dev.snapshots[before + 1]                # the commit block is durable
    fs.unmount()
    ro = mount(MemoryDevice(bytearray(crashed), readonly=True), TYPES[fstype], readonly=True)
    rec = journal.recover(ro.vol, ro._load_journal)
    ro.unmount()
    assert rec.transactions == 1 and rec.blocks[blk] == data


class WriteLog(MemoryDevice):
    """A memory device that logs its writes and the flush points between them, to rebuild
    the image at any flush (cheaper than a copy of the image at each)."""

    def __init__(self, data: bytearray) -> None:
        super().__init__(data)
        self.base = bytes(data)
        self.log: list[tuple[int, bytes]] = []
        self.flush_at: list[int] = []

    def pwrite(self, offset: int, data: bytes) -> None:
        super().pwrite(offset, data)
        self.log.append((offset, bytes(data)))

    def flush(self) -> None:
        self.flush_at.append(len(self.log))

    def image_at(self, flush: int) -> bytes:
        buf = bytearray(self.base)
        for off, data in self.log[:self.flush_at[flush - 1]]:
            buf[off:off + len(data)] = data
        return bytes(buf)


@pytest.mark.parametrize("points", [
    pytest.param(24, id="sampled"), pytest.param(None, id="every", marks=pytest.mark.slow)])
def test_wrapping_journal_with_block_reuse_replays(tmp_path, points):
    """Many small fsync'd transactions wrap the log twice while blocks freed by one are
    reused for file data by the next: revoke records keep replay from writing old copies
    over them (this fails without them).  A seeded sample of flush points by default."""
    dev = WriteLog(base_image("ext4"))
    fs = mount(dev)
    room = fs.journal.last - fs.journal.first
    root = fs.vget(fs.root_ino)
    states: list[dict] = [tree(fs)]
    flushes: list[int] = [0]
    commits_before = fs.journal.seq
    i = wraps = 0
    while wraps < 2:
        head = fs.journal.head
        data = fs.vget(fs.create(root, f"data{i}".encode(), REG, 0, 0, 0))
        fs.write(data, 0, bytes([i % 251]) * 5000)      # first into the blocks freed last
        d = fs.vget(fs.mkdir(root, f"d{i}".encode(), 0o755, 0, 0))
        for j in range(6):                     # directories grow extents; files fragment
            f = fs.vget(fs.create(d, f"f{j}".encode(), REG, 0, 0, 0))
            fs.write(f, 0, bytes([i % 251, j]) * (700 * (j + 1)))
        if i >= 2:                              # free an old tree: its blocks get reused
            old = node(fs, f"/d{i - 2}")
            for j in range(6):
                n = node(fs, f"/d{i - 2}/f{j}")
                fs.unlink(old, f"f{j}".encode(), n)
                fs.inactive(n)
            fs.rmdir(root, f"d{i - 2}".encode(), old)
            fs.inactive(old)
        if i >= 3:
            fs.unlink(root, f"data{i - 3}".encode(), node(fs, f"/data{i - 3}"))
        fs.fsync(root, False)                  # a commit, no checkpoint: the log fills
        wraps += fs.journal.head < head
        states.append(tree(fs))
        flushes.append(len(dev.flush_at))
        i += 1
        assert i < 1000
    fs.unmount()
    assert fs.journal.seq - commits_before > 40 and room
    picks = list(range(1, len(dev.flush_at) + 1))
    if points is not None:
        picks = sorted(random.Random(7).sample(picks, points))
    for f in picks:
        image = dev.image_at(f)
        k = max(n for n, at in enumerate(flushes) if at <= f)
        got = our_replay(image, Ext4Type)
        assert got in states[k:k + 2], f"flush {f}: not the state of a commit"
        if flushes[k] == f:
            assert got == states[k]
        problems = e2fsck_after_replay(image, tmp_path)
        assert not problems, f"flush {f} of {len(dev.flush_at)}:\n{problems}"
