"""A read-write mount that is refused, or whose commands all fail, leaves the image
byte-identical (issue #17, defect 20); one that changes something marks the superblock as
Linux does.  A read-only fallback says why (``ro_reason``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import rumpkernel
from rumpkernel.kern.errno import KernelError

from .conftest import assert_fsck_clean, mke2fs, run

pytestmark = pytest.mark.oracle


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def super_field(img: Path, name: str) -> str:
    out = run("dumpe2fs", "-h", str(img)).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.startswith(name + ":"))


@pytest.fixture
def image(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "dir" / "inner").mkdir(parents=True)
    (src / "file").write_bytes(b"contents\n")
    return mke2fs(tmp_path / "u.img", "ext4", "16M", src)


def test_defect20_refused_rw_mount_leaves_image_identical(image):
    run("debugfs", "-w", "-R", "set_inode_field <2> mode 0100644", str(image))
    before = digest(image)
    k = rumpkernel.boot()
    try:
        with pytest.raises((OSError, KernelError)) as exc:
            k.mount_image(str(image), "/mnt")
        assert "root" in str(exc.value)
    finally:
        k.halt()
    assert digest(image) == before


def test_defect20_failing_commands_leave_image_identical(image):
    before = digest(image)
    k = rumpkernel.boot()
    try:
        k.mount_image(str(image), "/mnt")
        s = k.sys
        failing = [
            lambda: s.mkdir("/mnt/dir"),
            lambda: s.rename("/mnt/missing", "/mnt/x"),
            lambda: s.rmdir("/mnt/dir"),
            lambda: s.unlink("/mnt/dir"),
            lambda: s.setxattr("/mnt/file", "user.huge", b"h" * 70000),
            lambda: s.symlink("t" * 5000, "/mnt/long"),
            lambda: s.open("/mnt/file", os.O_CREAT | os.O_EXCL | os.O_WRONLY),
            lambda: s.mkdir("/mnt/" + "n" * 256),
            lambda: s.rename("/mnt/dir", "/mnt/dir/inner/loop"),
            lambda: s.link("/mnt/dir", "/mnt/dirlink"),
        ]
        for call in failing:
            with pytest.raises(OSError):
                call()
        assert s.listdir("/mnt/dir") == ["inner"]
        fd = s.open("/mnt/file", os.O_RDONLY)
        assert s.read(fd, 100) == b"contents\n"
        s.close(fd)
        s.sync()
    finally:
        k.halt()
    assert digest(image) == before


def test_a_change_marks_the_superblock_like_linux(image):
    count = int(super_field(image, "Mount count"))
    k = rumpkernel.boot()
    try:
        k.mount_image(str(image), "/mnt")
        k.sys.mkdir("/mnt/new")
        assert super_field(image, "Filesystem state") == "not clean"   # before any change
    finally:
        k.halt()
    assert int(super_field(image, "Mount count")) == count + 1
    assert super_field(image, "Filesystem state") == "clean"
    assert_fsck_clean(image)


@pytest.mark.parametrize("mkfs,reason", [
    (["-O", "bigalloc", "-C", "16384"], "features not supported for writing: bigalloc"),
    (["-O", "quota"], "features not supported for writing: quota"),
])
def test_read_only_fallback_says_why(tmp_path, mkfs, reason):
    img = mke2fs(tmp_path / "ro.img", "ext4", "64M", None, *mkfs)
    before = digest(img)
    k = rumpkernel.boot()
    try:
        k.mount_image(str(img), "/mnt")
        info = k.sys.fsinfo("/mnt")
        assert info["readonly"] and info["info"]["ro_reason"] == reason
        with pytest.raises(OSError) as exc:
            k.sys.mkdir("/mnt/x")
        assert exc.value.errno == 30
    finally:
        k.halt()
    assert digest(img) == before


def test_error_state_fallback_says_why(image):
    run("debugfs", "-w", "-R", "ssv state 3", str(image))       # valid | error
    k = rumpkernel.boot()
    try:
        k.mount_image(str(image), "/mnt")
        assert k.sys.fsinfo("/mnt")["info"]["ro_reason"] == \
            "file system has errors (run e2fsck)"
    finally:
        k.halt()
    k = rumpkernel.boot()
    try:
        k.mount_image(str(image), "/mnt", readonly=True)      # asked for: no reason to give
        assert k.sys.fsinfo("/mnt")["info"]["ro_reason"] == ""
    finally:
        k.halt()
