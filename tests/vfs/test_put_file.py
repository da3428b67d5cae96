"""``Kernel.put_file``: one new regular file, whole, in one kernel entry (what makefs uses per
file), on every writable disk file system and on rumpfs; its errors as creat(2)/write(2)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import rumpkernel
from rumpkernel.testing.plugin import halt_report

T_A, T_M = 1_500_000_000_123_456_789, 1_600_000_000_987_654_321


@pytest.fixture
def k():
    k = rumpkernel.boot(components=("vfs", "ext2", "msdos"))
    yield k
    if not k.dead:
        k.halt()
        assert not halt_report(k)


def _mounted(k, tmp_path: Path, fstype: str) -> str:
    if fstype == "rumpfs":
        k.sys.mkdir("/w", 0o755)
        return "/w"
    img = tmp_path / f"{fstype}.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    k.newfs(fstype, str(img))
    k.mount_image(str(img), "/w", fstype=fstype)
    return "/w"


@pytest.mark.parametrize("fstype", ["ext4", "ext2", "msdos", "rumpfs"])
def test_put_file_creates_whole_files(k, tmp_path: Path, fstype: str) -> None:
    top = _mounted(k, tmp_path, fstype)
    dfd = k.sys.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        k.put_file(dfd, b"empty", 0o644, 0, 0, b"", 0, T_A, T_M)
        k.put_file(dfd, b"data", 0o640, 7, 8, b"x" * 5000 + b"end", 5003, T_A, T_M)
        k.put_file(dfd, b"sparse", 0o600, 0, 0, b"head", 100_000, T_A, T_M)
        st = k.sys.stat(f"{top}/data")
        fd = k.sys.open(f"{top}/data", os.O_RDONLY)
        assert k.sys.read(fd, 10_000) == b"x" * 5000 + b"end"
        k.sys.close(fd)
        assert st.st_size == 5003 and st.st_mtime_ns // 10**9 == T_M // 10**9
        if fstype != "msdos":                # FAT keeps neither owners nor these bits
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (7, 8, 0o640)
            assert st.st_atime_ns == T_A and st.st_mtime_ns == T_M
        fd = k.sys.open(f"{top}/sparse", os.O_RDONLY)
        assert k.sys.read(fd, 200_000) == b"head" + bytes(100_000 - 4)
        k.sys.close(fd)
        assert k.sys.stat(f"{top}/empty").st_size == 0
        with pytest.raises(FileExistsError):
            k.put_file(dfd, b"data", 0o644, 0, 0, b"again", 5, T_A, T_M)
        for bad in (b"", b"a/b", b".", b"..", b"nul\0"):
            with pytest.raises(OSError) as exc:
                k.put_file(dfd, bad, 0o644, 0, 0, b"", 0, T_A, T_M)
            assert exc.value.errno == errno.EINVAL
        with pytest.raises(OSError) as exc:
            k.put_file(dfd, b"short", 0o644, 0, 0, b"abc", 2, T_A, T_M)
        assert exc.value.errno == errno.EINVAL
        with pytest.raises(OSError) as exc:
            k.put_file(dfd, b"n" * 300, 0o644, 0, 0, b"", 0, T_A, T_M)
        assert exc.value.errno == errno.ENAMETOOLONG
    finally:
        k.sys.close(dfd)
    if fstype != "rumpfs":
        k.sys.unmount(top)


def test_put_file_needs_a_directory_and_the_superuser(k, tmp_path: Path) -> None:
    top = _mounted(k, tmp_path, "ext4")
    k.put_file(dfd := k.sys.open(top, os.O_RDONLY), b"f", 0o644, 0, 0, b"1", 1, T_A, T_M)
    ffd = k.sys.open(f"{top}/f", os.O_RDONLY)
    with pytest.raises(NotADirectoryError):
        k.put_file(ffd, b"g", 0o644, 0, 0, b"", 0, T_A, T_M)
    k.sys.setuid(1000)
    with pytest.raises(PermissionError):
        k.put_file(dfd, b"g", 0o644, 0, 0, b"", 0, T_A, T_M)
    k.sys.close(ffd)
    k.sys.close(dfd)


def test_put_file_on_a_read_only_mount(k, tmp_path: Path) -> None:
    img = tmp_path / "ro.img"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    k.newfs("ext4", str(img))
    k.mount_image(str(img), "/ro", fstype="ext4", readonly=True)
    dfd = k.sys.open("/ro", os.O_RDONLY | os.O_DIRECTORY)
    with pytest.raises(OSError) as exc:
        k.put_file(dfd, b"f", 0o644, 0, 0, b"", 0, T_A, T_M)
    assert exc.value.errno == errno.EROFS
    k.sys.close(dfd)
