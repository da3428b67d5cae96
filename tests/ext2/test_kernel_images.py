"""Images the Linux kernel made (through a root loop mount), read and changed through our
kernel, compared with what the Linux kernel shows; and one test per defect of issue #17 that
such images exposed (each failed before its fix)."""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

import rumpkernel

from . import kimages
from .conftest import KernelImages, assert_fsck_clean, mke2fs, run
from .kimages import DATES, INT64_MAX, NS, host_view, loop_mounted, rump_view

pytestmark = [pytest.mark.oracle, pytest.mark.root]
EXT4_MAX_SEC = (1 << 34) - (1 << 31) - 1


@contextlib.contextmanager
def booted(img: Path, readonly: bool = True) -> Iterator[rumpkernel.Kernel]:
    k = rumpkernel.boot()
    try:
        k.mount_image(str(img), "/mnt", readonly=readonly)
        yield k
    finally:
        k.halt()


def assert_same_view(got: dict, want: dict) -> None:
    diffs = [p for p in sorted(set(got) | set(want)) if got.get(p) != want.get(p)]
    detail = "".join(f"\n{p}\n  ours:   {str(got.get(p))[:240]}\n  kernel: {str(want.get(p))[:240]}"
                     for p in diffs[:8])
    assert not diffs, f"{len(diffs)} paths differ:{detail}"


def kernel_names(img: Path, path: str) -> set[str]:
    with loop_mounted(img) as mnt:
        return set(os.listdir(mnt / path.lstrip("/")))


def fs_state(img: Path) -> str:
    out = run("dumpe2fs", "-h", str(img)).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.startswith("Filesystem state:"))


# -- the kernel's view, variant by variant -------------------------------------------------------
@pytest.mark.parametrize("variant", list(KernelImages.VARIANTS))
def test_kernel_made_image_reads_as_the_kernel_shows_it(kernel_images, variant):
    """Every node: inode, mode, links, owner, size, st_blocks, device number, ns times, xattrs
    (ACLs in Linux's format), symlink target, data and hole map."""
    img = kernel_images.image(variant)
    with loop_mounted(img) as mnt:
        want = host_view(mnt)
        want_vfs = statvfs_tuple(os.statvfs(mnt))
    with booted(img) as k:
        got = rump_view(k, "/mnt")
        got_vfs = statvfs_tuple(k.sys.statvfs("/mnt"))
    assert_same_view(got, want)
    assert len(want) > 3300
    assert got_vfs == want_vfs


@pytest.mark.parametrize("opts", [["-b", "4096"], ["-b", "1024", "-O", "^dir_index"]])
def test_encrypted_image_reads_as_linux_without_the_key(tmp_path, opts):
    """No-key names (htree hashes of the ciphertext; long names by SHA-256) that look up
    again, no-key symlink targets, stat of everything, ENOKEY for encrypted contents, plain
    files as they are; mounted read-only, saying why."""
    img = kimages.build_encrypted(tmp_path / "e.img", opts)
    with loop_mounted(img) as mnt:
        want = host_view(mnt)
    with booted(img, readonly=False) as k:
        got = rump_view(k, "/mnt")
        info = k.sys.fsinfo("/mnt")
    assert_same_view(got, want)
    assert info["readonly"] and "encrypt" in info["info"]["ro_reason"]
    assert {v[-1] for p, v in got.items() if p.startswith("/secret/") and v[1] & 0o100000
            and not v[1] & 0o020000} == {"ENOKEY"}
    assert got["/plain/clear.txt"][-1] != "ENOKEY"


def statvfs_tuple(s: os.statvfs_result) -> tuple[int, ...]:
    return (s.f_bsize, s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree,
            s.f_favail, s.f_namemax)


@pytest.mark.parametrize("opts", [["-O", "bigalloc", "-C", "16384"],
                                  ["-O", "bigalloc", "-b", "4096", "-C", "65536"],
                                  ["-O", "^has_journal", "-b", "2048"]])
def test_statvfs_like_linux_bigalloc_too(tmp_path, opts):
    """Block counts in blocks, not clusters (an empty bigalloc file system is not full)."""
    img = mke2fs(tmp_path / "s.img", "ext4", "256M", None, *opts)
    with loop_mounted(img) as mnt:
        want = statvfs_tuple(os.statvfs(mnt))
    with booted(img) as k:
        got = statvfs_tuple(k.sys.statvfs("/mnt"))
    assert got == want
    assert got[3] > got[2] * 0.9


# -- one test per defect -------------------------------------------------------------------------
def test_defect01_kernel_indexed_directories_list_and_change(kernel_images, tmp_path):
    """Linux leaves a stale leaf tail at the end of the dx root: it is not a leaf checksum."""
    img = kernel_images.copy("ext4", tmp_path / "k.img")
    with booted(img, readonly=False) as k:
        s = k.sys
        assert len(s.listdir("/mnt/idx200")) == 201
        for i in range(400):
            s.close(s.open(f"/mnt/idx200/new-{i:04d}", os.O_CREAT | os.O_WRONLY, 0o644))
        for i in range(0, 200, 3):
            s.unlink(f"/mnt/idx200/entry-{i:06d}{'-x' * (i % 20)}")
        s.rename("/mnt/idx200/new-0001", "/mnt/idx200/renamed")
        s.rename("/mnt/idx200/new-0002", "/mnt/idx3000/moved-in")
        want = set(s.listdir("/mnt/idx200"))
    assert fs_state(img) == "clean"         # no false error recorded
    assert_fsck_clean(img)
    assert kernel_names(img, "/idx200") == want and "renamed" in want
    assert "moved-in" in kernel_names(img, "/idx3000")


def test_defect06_dotdot_in_indexed_directories(kernel_images):
    img = kernel_images.image("ext4")
    with booted(img) as k:
        s = k.sys
        top = s.stat("/mnt").st_ino
        for d in ("idx200", "idx3000", "idx50000"):
            assert s.lstat(f"/mnt/{d}/..").st_ino == top
            assert s.stat(f"/mnt/{d}/sub/..").st_ino == s.stat(f"/mnt/{d}").st_ino
            # a relative ../ symlink out of an indexed directory's subdirectory
            assert s.stat(f"/mnt/{d}/sub/up").st_ino == \
                s.stat("/mnt/idx200/entry-000001-x").st_ino
        s.chdir("/mnt/idx3000/sub")
        s.chdir("..")
        s.chdir("..")
        assert s.getcwd() == "/mnt"


def test_defect14_move_indexed_dir_between_indexed_dirs(kernel_images, tmp_path):
    """``..`` of a moved htree directory lives in its index root: the index checksum, not a
    leaf tail, must be rewritten; and the move's ancestor check looks ``..`` up."""
    img = kernel_images.copy("ext4", tmp_path / "k.img")
    with booted(img, readonly=False) as k:
        s = k.sys
        s.rename("/mnt/idx200", "/mnt/idx3000/moved")
        assert s.stat("/mnt/idx3000/moved/..").st_ino == s.stat("/mnt/idx3000").st_ino
        s.rename("/mnt/idx-emptied", "/mnt/idx3000/moved/emptied")
    assert_fsck_clean(img)
    with booted(img, readonly=False) as k:
        s = k.sys
        gone = "/mnt/idx3000/moved/emptied"
        for name in s.listdir(gone):
            s.unlink(f"{gone}/{name}")
        s.rmdir(gone)
    assert_fsck_clean(img)
    assert "emptied" not in kernel_names(img, "/idx3000/moved")


def test_defect04_files_with_many_extents_free_their_tree(kernel_images, tmp_path):
    img = kernel_images.copy("ext4", tmp_path / "k.img")
    with booted(img, readonly=False) as k:
        k.sys.unlink("/mnt/holes")                       # ~300 extents, a depth-1 tree
        k.sys.rename("/mnt/inter-a", "/mnt/inter-b")     # over a fragmented file
        a = k.sys.open("/mnt/ours-a", os.O_CREAT | os.O_WRONLY, 0o644)
        b = k.sys.open("/mnt/ours-b", os.O_CREAT | os.O_WRONLY, 0o644)
        for _ in range(40):                              # fragmented by our own driver
            k.sys.write(a, b"a" * 4096)
            k.sys.fsync(a)
            k.sys.write(b, b"b" * 4096)
            k.sys.fsync(b)
        k.sys.close(a)
        k.sys.close(b)
    with booted(img, readonly=False) as k:
        k.sys.unlink("/mnt/ours-a")
        k.sys.rename("/mnt/ours-b", "/mnt/inter-b")
    assert_fsck_clean(img)


@pytest.mark.parametrize("source", ["ours", "kernel"])
def test_defect15_emptied_indexed_dir_removed_after_remount(kernel_images, tmp_path, source):
    if source == "kernel":
        img, d = kernel_images.copy("ext4", tmp_path / "k.img"), "/mnt/idx3000"
    else:
        img, d = mke2fs(tmp_path / "o.img", "ext4", "64M"), "/mnt/big"
        with booted(img, readonly=False) as k:
            k.sys.mkdir(d)
            for i in range(3000):    # file data between directory blocks: many extents
                fd = k.sys.open(f"{d}/file-{i:05d}", os.O_CREAT | os.O_WRONLY)
                k.sys.write(fd, b"d" * 3000)
                k.sys.close(fd)
    with booted(img, readonly=False) as k:
        for name in k.sys.listdir(d):
            if name == "sub":
                k.sys.unlink(f"{d}/sub/up")
                k.sys.rmdir(f"{d}/sub")
            else:
                k.sys.unlink(f"{d}/{name}")
    with booted(img, readonly=False) as k:
        k.sys.rmdir(d)
    assert_fsck_clean(img)


def test_defect05_shared_xattr_block_copied_on_write(kernel_images, tmp_path):
    img = kernel_images.copy("ext4", tmp_path / "k.img")
    with booted(img, readonly=False) as k:
        before = k.sys.stat("/mnt/shared-a").st_blocks
        k.sys.setxattr("/mnt/shared-a", "user.new", b"x")
        assert k.sys.stat("/mnt/shared-a").st_blocks == before
        with pytest.raises(OSError) as exc:          # does not fit in one block
            k.sys.setxattr("/mnt/shared-b", "user.huge", os.urandom(5000))
        assert exc.value.errno in (28, 7)            # ENOSPC (Linux) or E2BIG
        assert k.sys.stat("/mnt/shared-b").st_blocks == before
    assert_fsck_clean(img)
    with loop_mounted(img) as mnt:
        assert os.getxattr(mnt / "shared-a", "user.new") == b"x"
        assert os.getxattr(mnt / "shared-a", "user.shared") == \
            os.getxattr(mnt / "shared-b", "user.shared")
        assert "user.huge" not in os.listxattr(mnt / "shared-b")


def _acl(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def test_defect07_acls_in_linux_format_both_ways(kernel_images, tmp_path):
    img = kernel_images.copy("ext4", tmp_path / "k.img")
    with loop_mounted(img) as mnt:
        want = os.getxattr(mnt / "acl-file", "system.posix_acl_access")
    none = 0xFFFFFFFF
    value = _acl((1, 6, none), (2, 7, 1000), (4, 4, none), (8, 5, 42), (0x10, 5, none),
                 (0x20, 0, none))
    with booted(img, readonly=False) as k:
        s = k.sys
        assert s.getxattr("/mnt/acl-file", "system.posix_acl_access") == want
        s.close(s.open("/mnt/new-acl", os.O_CREAT | os.O_WRONLY, 0o644))
        s.setxattr("/mnt/new-acl", "system.posix_acl_access", value)
        assert s.getxattr("/mnt/new-acl", "system.posix_acl_access") == value
        assert s.stat("/mnt/new-acl").st_mode & 0o777 == 0o650     # group bits = mask
        for bad in (value[:-3], _acl((2, 7, 1), (1, 6, none)), b"\x01\0\0\0"):
            with pytest.raises(OSError) as exc:
                s.setxattr("/mnt/new-acl", "system.posix_acl_access", bad)
            assert exc.value.errno == 22
        with pytest.raises(OSError) as exc:
            s.setxattr("/mnt/new-acl", "system.posix_acl_default", value)
        assert exc.value.errno == 13
    assert_fsck_clean(img)
    with loop_mounted(img) as mnt:
        assert os.getxattr(mnt / "new-acl", "system.posix_acl_access") == value
        out = run("getfacl", "-n", str(mnt / "new-acl")).stdout
    assert "user:1000:rwx" in out and "group:42:r-x" in out and "mask::r-x" in out


@pytest.mark.parametrize("variant,limit", [("ext4", EXT4_MAX_SEC), ("ext4-128", 2**31 - 1)])
def test_defect03_dates_past_2262_and_the_format_limit(kernel_images, tmp_path, variant, limit):
    """stat saturates int64 ns (no panic); utimensat clamps to what the inode can hold, as
    Linux does (2446 with extra time fields, 2038 without)."""
    img = kernel_images.copy(variant, tmp_path / "k.img")
    with loop_mounted(img) as mnt:
        want = [os.stat(mnt / "dates" / f"t{i}").st_mtime_ns for i in range(len(DATES))]
    assert max(want) // NS == limit           # the kernel clamped what the inode cannot hold
    with booted(img, readonly=False) as k:
        s = k.sys
        got = [s.stat(f"/mnt/dates/t{i}").st_mtime_ns for i in range(len(DATES))]
        assert got == [min(t, INT64_MAX) for t in want]
        fd = s.open("/mnt/dates/t5", os.O_RDONLY)    # cat: open, fstat, read
        assert s.fstat(fd).st_size == 5 and s.read(fd, 100) == b"when\n"
        s.close(fd)
        y2100 = 4_102_444_800 * NS + 7
        set_to = {"t0": 2**40 * NS, "t1": -(2**40) * NS, "t2": y2100}
        for name, ns in set_to.items():
            s.utime(f"/mnt/dates/{name}", ns=(ns, ns))
        ours = {name: s.stat(f"/mnt/dates/{name}").st_mtime_ns for name in set_to}
    assert_fsck_clean(img)
    with loop_mounted(img) as mnt:
        theirs = {name: os.stat(mnt / "dates" / name).st_mtime_ns for name in set_to}
    assert theirs["t0"] // NS == limit and theirs["t1"] // NS == -(2**31)
    assert theirs["t2"] == (y2100 if limit > 2**32 else limit * NS)
    assert ours == {n: min(t, INT64_MAX) for n, t in theirs.items()}


def test_defect09_paths_and_symlinks_past_1024_bytes(kernel_images, tmp_path):
    img = kernel_images.copy("ext4", tmp_path / "k.img")
    small = kernel_images.copy("ext4-1k", tmp_path / "small.img")
    deep = "/mnt" + "".join(f"/{i:03d}-{'p' * 90}" for i in range(40))   # 3,844 bytes
    target = ("../" * 1400)[:4095]
    with booted(img, readonly=False) as k:
        s = k.sys
        k_path = ""
        for comp in deep.split("/")[2:]:
            k_path += "/" + comp
            s.mkdir("/mnt" + k_path)
        fd = s.open(deep + "/f", os.O_CREAT | os.O_WRONLY, 0o644)
        s.write(fd, b"deep")
        s.close(fd)
        s.symlink(target, "/mnt/long-link")
        assert s.readlink("/mnt/long-link") == target
        with pytest.raises(OSError) as exc:
            s.stat(deep + "/" + "q" * (4096 - len(deep)))
        assert exc.value.errno == 36
        with pytest.raises(OSError) as exc:
            s.symlink(target + "x", "/mnt/too-long")
        assert exc.value.errno == 36
    with booted(small, readonly=False) as k:
        k.sys.symlink("y" * 1023, "/mnt/fits")
        with pytest.raises(OSError) as exc:          # a 1 KiB block holds 1,023 bytes
            k.sys.symlink("y" * 1024, "/mnt/too-long")
        assert exc.value.errno == 36
    for im in (img, small):
        assert_fsck_clean(im)
    with loop_mounted(img) as mnt:
        assert (Path(str(mnt) + deep[4:]) / "f").read_bytes() == b"deep"
        assert os.readlink(mnt / "long-link") == target
    with loop_mounted(small) as mnt:
        assert os.readlink(mnt / "fits") == "y" * 1023


def test_inline_data_files_report_blocks_like_linux(kernel_images):
    img = kernel_images.image("ext4-inline")
    with booted(img) as k:
        blocks = {n: k.sys.stat(f"/mnt/small/{n}").st_blocks for n in ("s1", "s59", "s100")}
    assert blocks == {"s1": 1, "s59": 1, "s100": 1}
