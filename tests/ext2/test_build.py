"""Mount option ``build`` (what ``fsu makefs`` uses on the image it has just made): nothing
is written before unmount, the unmount writes every block once and flushes once, and the
result is an e2fsck-clean image whose journal is still empty and valid."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rumpkernel.fs.ext2 import Ext2Type, Ext3Type, Ext4Type
from rumpkernel.kern.errno import KernelError
from rumpkernel.testing.hostdev import HostFileDevice
from rumpkernel.vfs.fstype import MountContext

from .conftest import NOW_NS, assert_fsck_clean, mounted, read_all, resolve, run

pytestmark = pytest.mark.oracle
REG = 0o100644
TYPES = {"ext2": Ext2Type, "ext3": Ext3Type, "ext4": Ext4Type}


class CountingDevice:
    """A host file device that counts writes and flushes."""

    def __init__(self, dev: HostFileDevice) -> None:
        self.dev = dev
        self.name, self.size, self.sector_size = dev.name, dev.size, dev.sector_size
        self.readonly = dev.readonly
        self.writes: list[tuple[int, int]] = []
        self.flushes: list[int] = []        # how many writes had been made at each flush

    def pread(self, offset: int, length: int) -> bytes:
        return self.dev.pread(offset, length)

    def pwrite(self, offset: int, data: bytes) -> None:
        self.writes.append((offset, len(data)))
        self.dev.pwrite(offset, data)

    def flush(self) -> None:
        self.flushes.append(len(self.writes))
        self.dev.flush()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def new_image(path: Path, fstype: str) -> Path:
    with open(path, "wb") as f:
        f.truncate(16 << 20)
    with HostFileDevice(path) as dev:
        TYPES[fstype].newfs(dev, timestamp=NOW_NS // 10**9)
    return path


@pytest.mark.parametrize("fstype", ["ext2", "ext3", "ext4"])
def test_build_mount_writes_once_at_unmount(tmp_path: Path, fstype: str) -> None:
    img = new_image(tmp_path / "b.img", fstype)
    before = digest(img)
    payload = {f"f{i:03d}".encode(): bytes([i % 251]) * (i * 37 % 9000) for i in range(300)}
    with HostFileDevice(img) as host:
        dev = CountingDevice(host)
        ctx = MountContext(dev=dev, now_ns=lambda: NOW_NS, options={"build": ""})
        fs = TYPES[fstype].mount(ctx)
        root = fs.vget(2)
        sub = fs.vget(fs.mkdir(root, b"sub", 0o755, 0, 0))
        for name, data in payload.items():
            node = fs.vget(fs.create(sub, name, REG, 0, 0, 0))
            fs.write(node, 0, data)
        metadata_writes = [w for w in dev.writes if w[1] and w[0] < 4096]
        assert not dev.flushes and not metadata_writes   # nothing but file data so far
        fs.unmount()
        assert dev.flushes == [len(dev.writes)]          # one flush, after the last write
        offsets = [off for off, _ in dev.writes]
        assert len(offsets) == len(set(offsets))         # no block written twice
    assert digest(img) != before
    assert_fsck_clean(img)
    info = run("dumpe2fs", "-h", str(img)).stdout
    assert "Filesystem state:         clean" in info
    assert "Mount count:              0" in info
    if fstype != "ext2":
        assert "Journal start:            0" in info
        assert "needs_recovery" not in info
    with mounted(img) as fs:
        for name, data in payload.items():
            assert read_all(fs, resolve(fs, "/sub/" + name.decode())) == data


def test_build_mount_keeps_no_undo_log(tmp_path: Path) -> None:
    """Without the undo log a failing operation is not rolled back; what build promises is
    only that an operation that succeeds is complete (makefs discards a failed image)."""
    img = new_image(tmp_path / "u.img", "ext4")
    with HostFileDevice(img) as host:
        ctx = MountContext(dev=host, now_ns=lambda: NOW_NS, options={"build": ""})
        fs = Ext4Type.mount(ctx)
        assert fs.build
        root = fs.vget(2)
        fs.create(root, b"once", REG, 0, 0, 0)
        with pytest.raises(KernelError):
            fs.create(root, b"once", REG, 0, 0, 0)
        assert fs.vol.txn is None
        fs.unmount()
    assert_fsck_clean(img)


def test_build_is_ignored_read_only(tmp_path: Path) -> None:
    img = new_image(tmp_path / "r.img", "ext4")
    before = digest(img)
    with HostFileDevice(img, readonly=True) as host:
        ctx = MountContext(dev=host, readonly=True, now_ns=lambda: NOW_NS,
                           options={"build": ""})
        fs = Ext4Type.mount(ctx)
        assert not fs.build
        fs.unmount()
    assert digest(img) == before


@pytest.mark.parametrize("fstype", ["ext3", "ext4"])
def test_newfs_zeroed_skips_only_zeros(tmp_path: Path, fstype: str) -> None:
    """newfs ``zeroed=True`` on a new sparse file: the same bytes, far fewer written."""
    sizes = {}
    for zeroed in (False, True):
        img = tmp_path / f"z{int(zeroed)}.img"
        with open(img, "wb") as f:
            f.truncate(16 << 20)
        with HostFileDevice(img) as host:
            dev = CountingDevice(host)
            TYPES[fstype].newfs(dev, timestamp=NOW_NS // 10**9, uuid="0" * 32, zeroed=zeroed)
        sizes[zeroed] = sum(n for _, n in dev.writes)
    assert (tmp_path / "z0.img").read_bytes() == (tmp_path / "z1.img").read_bytes()
    assert sizes[True] * 4 < sizes[False]
    assert_fsck_clean(tmp_path / "z1.img")


def test_build_unmount_frees_what_was_unlinked(tmp_path: Path) -> None:
    img = new_image(tmp_path / "x.img", "ext4")
    with HostFileDevice(img) as host:
        ctx = MountContext(dev=host, now_ns=lambda: NOW_NS, options={"build": ""})
        fs = Ext4Type.mount(ctx)
        root = fs.vget(2)
        node = fs.vget(fs.create(root, b"gone", REG, 0, 0, 0))
        fs.write(node, 0, b"g" * 10000)
        fs.create(root, b"kept", REG, 0, 0, 0)
        fs.unlink(root, b"gone", node)
        fs.unmount()                 # "gone" is still cached with no links: freed here
    assert_fsck_clean(img)
