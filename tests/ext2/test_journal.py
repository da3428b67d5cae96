"""Journal recovery: images whose journal needs replay, made honestly by debugfs's journal
writer and by copying an image while Linux has it mounted."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rumpkernel.fs.ext2 import layout as L

from .conftest import assert_fsck_clean, loop_mount, mke2fs, mounted, run, walk_fs, walk_host

pytestmark = pytest.mark.oracle


def _needs_recovery(img: Path) -> bool:
    return "needs_recovery" in run("dumpe2fs", "-h", str(img)).stdout


def _journal_image(tmp_path: Path, fstype: str, opts: list[str], block: int,
                   revoke_first: bool = False) -> tuple[Path, bytes]:
    img = mke2fs(tmp_path / "j.img", fstype, "32M", None, *opts)
    payload = (b"journal payload " * 512)[:4096]
    blob = tmp_path / "blob"
    blob.write_bytes(payload)
    script = ["jo"]
    if revoke_first:   # an older copy of another block, revoked by the next transaction
        script += [f"jw -b {block + 1} {blob}", "jc", "jo", f"jw -r {block + 1}", "jc", "jo"]
    script += [f"jw -b {block} {blob}", "jc"]
    (tmp_path / "script").write_text("\n".join(script) + "\n")
    run("debugfs", "-w", "-f", str(tmp_path / "script"), str(img))
    assert _needs_recovery(img)
    return img, payload


@pytest.mark.parametrize("fstype,opts", [
    ("ext4", []),                                   # 64bit, csum v3
    ("ext4", ["-O", "^64bit,^metadata_csum"]),      # 32-bit tags, no checksums
    ("ext3", ["-b", "4096"]),
    ("ext4", ["-b", "2048"]),
])
def test_replay_debugfs_transactions(tmp_path, fstype, opts):
    img, payload = _journal_image(tmp_path, fstype, opts, 6000, revoke_first=True)
    pristine = img.read_bytes()
    # read-only: replayed into memory, the device is untouched
    log: list[str] = []
    with mounted(img, readonly=True, log=log) as fs:
        bs = fs.vol.block_size
        assert fs.info()["replayed_journal"]
        assert fs.vol.read(6000) == payload[:bs]
        assert fs.vol.read(6001) == bytes(bs)      # revoked: the logged copy is not applied
    assert img.read_bytes() == pristine
    assert any("replayed" in m for m in log)
    # read-write: replayed into the device, journal emptied, needs_recovery cleared
    with mounted(img) as fs:
        assert fs.vol.read(6000) == payload[:fs.vol.block_size]
    assert not _needs_recovery(img)
    assert "Journal start:            0" in run("dumpe2fs", "-h", str(img)).stdout
    assert_fsck_clean(img)
    fixed = tmp_path / "fixed.img"
    fixed.write_bytes(pristine)
    run("e2fsck", "-fy", str(fixed), check=False)   # e2fsck's own recovery as the oracle
    with open(fixed, "rb") as a, open(img, "rb") as b:
        a.seek(6000 * bs)
        b.seek(6000 * bs)
        assert a.read(2 * bs) == b.read(2 * bs)


@pytest.mark.root
def test_replay_copy_of_mounted_image(tmp_path):
    """Copy an image while Linux has it mounted after sync: the copy needs recovery and holds
    committed transactions; after our replay it matches what Linux wrote."""
    img = mke2fs(tmp_path / "live.img", "ext4", "64M", None)
    copy = tmp_path / "copy.img"
    with loop_mount(img, readonly=False) as mnt:
        for i in range(40):
            (mnt / f"f{i}").write_bytes(os.urandom(1000 + 37 * i))
        (mnt / "d").mkdir()
        (mnt / "d" / "x").write_bytes(b"hello")
        os.symlink("f1", mnt / "lnk")
        subprocess.run(["sync"], check=True)
        shutil.copyfile(img, copy)
        expect = walk_host(mnt)
    assert _needs_recovery(copy)
    with mounted(copy, readonly=True) as fs:
        assert walk_fs(fs) == expect
    with mounted(copy) as fs:
        assert fs.info()["replayed_journal"]
        assert walk_fs(fs) == expect
    assert_fsck_clean(copy)


def test_refuses_unreadable_incompat(tmp_path):
    from rumpkernel.kern.errno import Errno, KernelError

    img = mke2fs(tmp_path / "u.img", "ext4", "16M", None, "-O", "^metadata_csum")
    with open(img, "r+b") as f:
        f.seek(1024 + 0x60)
        incompat = int.from_bytes(f.read(4), "little") | L.INCOMPAT_DIRDATA
        f.seek(1024 + 0x60)
        f.write(incompat.to_bytes(4, "little"))
    with pytest.raises(KernelError) as exc:
        mounted(img).__enter__()
    assert exc.value.errno == Errno.EOPNOTSUPP
    assert "dirdata" in str(exc.value)


@pytest.mark.root
def test_orphans_after_crash_are_cleaned(tmp_path):
    """A file unlinked while open when the 'crash' happened sits on the orphan list; a
    read-write mount frees it, like Linux does."""
    img = mke2fs(tmp_path / "live.img", "ext4", "64M", None)
    copy = tmp_path / "copy.img"
    with loop_mount(img, readonly=False) as mnt:
        (mnt / "keep").write_bytes(b"k" * 3000)
        fh = open(mnt / "doomed", "wb")  # noqa: SIM115
        fh.write(os.urandom(200_000))
        fh.flush()
        os.unlink(mnt / "doomed")
        subprocess.run(["sync"], check=True)
        shutil.copyfile(img, copy)
        fh.close()
    log: list[str] = []
    with mounted(copy, log=log) as fs:
        assert fs.vol.sb.s_last_orphan == 0
        assert fs.statfs().ffree == fs.vol.geo.inodes_count - 12
    assert any("orphan" in m for m in log)
    assert_fsck_clean(copy)
    with loop_mount(copy) as mnt:
        assert sorted(os.listdir(mnt)) == ["keep", "lost+found"]


@pytest.mark.root
def test_fast_commit_journal_refuses_write_mount(tmp_path):
    from rumpkernel.kern.errno import Errno, KernelError

    img = mke2fs(tmp_path / "fc.img", "ext4", "64M", None, "-O", "fast_commit")
    copy = tmp_path / "copy.img"
    with loop_mount(img, readonly=False) as mnt:
        with open(mnt / "synced", "wb") as f:
            f.write(b"s" * 5000)
            os.fsync(f.fileno())
        subprocess.run(["sync"], check=True)
        shutil.copyfile(img, copy)
    assert _needs_recovery(copy)
    with pytest.raises(KernelError) as exc:
        mounted(copy).__enter__()
    assert exc.value.errno == Errno.EOPNOTSUPP and "fast commit" in str(exc.value)
    log: list[str] = []
    with mounted(copy, readonly=True, log=log) as fs:
        fs.vget(2)
    assert any("fast commits" in m for m in log)
