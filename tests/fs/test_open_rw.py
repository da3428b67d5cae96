"""open, read, write, pread/pwrite, lseek, truncate: success paths and errno cases."""

from __future__ import annotations

import os
import stat

from tests.fs.helpers import CREAT, E, err, mkfile, need, readfile


def test_create_write_read(fs) -> None:
    s = fs.sys
    fd = s.open(fs.p("f"), CREAT, 0o644)
    assert s.write(fd, b"hello ") == 6
    assert s.write(fd, b"world") == 5
    assert s.lseek(fd, 0, os.SEEK_SET) == 0
    assert s.read(fd, 100) == b"hello world"
    assert s.read(fd, 100) == b""
    s.close(fd)
    st = s.stat(fs.p("f"))
    assert stat.S_ISREG(st.st_mode) and st.st_size == 11 and st.st_nlink == 1


def test_open_nonexistent(fs) -> None:
    assert err(fs.sys.open, fs.p("nope"), os.O_RDONLY) == E.ENOENT
    assert err(fs.sys.open, fs.p("nodir", "f"), CREAT) == E.ENOENT


def test_open_excl(fs) -> None:
    mkfile(fs.sys, fs.p("f"))
    assert err(fs.sys.open, fs.p("f"), CREAT | os.O_EXCL, 0o644) == E.EEXIST


def test_open_through_file_is_enotdir(fs) -> None:
    mkfile(fs.sys, fs.p("f"))
    assert err(fs.sys.open, fs.p("f", "x"), os.O_RDONLY) == E.ENOTDIR
    assert err(fs.sys.open, fs.p("f", "x"), CREAT) == E.ENOTDIR
    assert err(fs.sys.open, fs.p("f") + "/", os.O_RDONLY) == E.ENOTDIR


def test_open_directory_for_writing(fs) -> None:
    fs.sys.mkdir(fs.p("d"))
    assert err(fs.sys.open, fs.p("d"), os.O_WRONLY) == E.EISDIR
    assert err(fs.sys.open, fs.p("d"), os.O_RDWR) == E.EISDIR
    fd = fs.sys.open(fs.p("d"), os.O_RDONLY | os.O_DIRECTORY)
    assert err(fs.sys.read, fd, 10) == E.EISDIR
    fs.sys.close(fd)


def test_o_directory_on_file(fs) -> None:
    mkfile(fs.sys, fs.p("f"))
    assert err(fs.sys.open, fs.p("f"), os.O_RDONLY | os.O_DIRECTORY) == E.ENOTDIR


def test_o_trunc_and_append(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"), b"0123456789")
    fd = s.open(fs.p("f"), os.O_WRONLY | os.O_APPEND)
    s.lseek(fd, 0, os.SEEK_SET)
    s.write(fd, b"AB")                # appends despite the seek
    s.close(fd)
    assert readfile(s, fs.p("f")) == b"0123456789AB"
    fd = s.open(fs.p("f"), os.O_WRONLY | os.O_TRUNC)
    s.close(fd)
    assert s.stat(fs.p("f")).st_size == 0


def test_read_only_and_write_only_descriptors(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"), b"data")
    fd = s.open(fs.p("f"), os.O_RDONLY)
    assert err(s.write, fd, b"x") == E.EBADF
    s.close(fd)
    fd = s.open(fs.p("f"), os.O_WRONLY)
    assert err(s.read, fd, 1) == E.EBADF
    assert err(s.ftruncate, fd + 100, 0) == E.EBADF
    s.close(fd)
    fd = s.open(fs.p("f"), os.O_RDONLY)
    assert err(s.ftruncate, fd, 0) == E.EINVAL
    s.close(fd)


def test_name_too_long(fs) -> None:
    limit = fs.features.name_max
    assert err(fs.sys.open, fs.p("x" * (limit + 1)), CREAT) == E.ENAMETOOLONG
    assert err(fs.sys.mkdir, fs.p("y" * 256)) == E.ENAMETOOLONG
    mkfile(fs.sys, fs.p("z" * min(limit, 255)))
    assert err(fs.sys.stat, "/" + "a/" * 2100) == E.ENAMETOOLONG   # > PATH_MAX (4,096)


def test_pread_pwrite_and_holes(fs) -> None:
    s = fs.sys
    fd = s.open(fs.p("f"), CREAT, 0o644)
    assert s.pwrite(fd, b"end", 100_000) == 3
    assert s.pread(fd, 10, 0) == bytes(10)               # a hole reads as zeros
    assert s.pread(fd, 10, 99_998) == b"\0\0end"
    assert s.pread(fd, 10, 200_000) == b""
    assert s.lseek(fd, 0, os.SEEK_CUR) == 0              # pread/pwrite leave the offset
    assert s.fstat(fd).st_size == 100_003
    assert err(s.pread, fd, 1, -1) == E.EINVAL
    s.close(fd)


def test_lseek(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"), b"x" * 50)
    fd = s.open(fs.p("f"), os.O_RDWR)
    assert s.lseek(fd, -10, os.SEEK_END) == 40
    assert s.lseek(fd, 5, os.SEEK_CUR) == 45
    assert err(s.lseek, fd, -100, os.SEEK_SET) == E.EINVAL
    assert s.lseek(fd, 1000, os.SEEK_SET) == 1000        # beyond the end is fine
    s.write(fd, b"y")
    assert s.fstat(fd).st_size == 1001
    s.close(fd)


def test_seek_data_hole(fs) -> None:
    need(fs.features.sparse, f"{fs.name} has no holes")
    s = fs.sys
    fd = s.open(fs.p("f"), CREAT, 0o644)
    s.pwrite(fd, b"a" * 10, 1 << 20)
    assert s.lseek(fd, 0, os.SEEK_DATA) >= 1 << 19       # skips the hole
    assert s.lseek(fd, 0, os.SEEK_HOLE) == 0
    assert s.lseek(fd, 1 << 20, os.SEEK_HOLE) == (1 << 20) + 10
    assert err(s.lseek, fd, 2 << 20, os.SEEK_DATA) == E.ENXIO
    s.close(fd)


def test_truncate_grow_and_shrink(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"), b"abcdefgh" * 1000)
    s.truncate(fs.p("f"), 3)
    assert readfile(s, fs.p("f")) == b"abc"
    s.truncate(fs.p("f"), 10)
    assert readfile(s, fs.p("f")) == b"abc" + bytes(7)
    fd = s.open(fs.p("f"), os.O_RDWR)
    s.ftruncate(fd, 0)
    assert s.fstat(fd).st_size == 0
    s.close(fd)
    assert err(s.truncate, fs.p("f"), -1) == E.EINVAL
    s.mkdir(fs.p("d"))
    assert err(s.truncate, fs.p("d"), 0) == E.EISDIR


def test_large_write_read_roundtrip(fs) -> None:
    s = fs.sys
    data = bytes(range(256)) * 8192 + b"tail"          # 2 MiB + 4, crosses many blocks
    fd = s.open(fs.p("big"), CREAT, 0o644)
    assert s.write(fd, data) == len(data)
    s.close(fd)
    assert readfile(s, fs.p("big")) == data


def test_unlinked_open_file_stays_readable(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"), b"still here")
    fd = s.open(fs.p("f"), os.O_RDONLY)
    s.unlink(fs.p("f"))
    assert err(s.stat, fs.p("f")) == E.ENOENT
    assert s.read(fd, 100) == b"still here"
    assert s.fstat(fd).st_nlink == 0
    s.close(fd)


def test_permission_denied_for_other_users(fs) -> None:
    need(fs.features.permissions and fs.features.owners, f"{fs.name} has no per-file owners")
    s = fs.sys
    mkfile(s, fs.p("secret"), b"x", 0o600)
    s.chmod(fs.p("secret"), 0o600)
    mkfile(s, fs.p("public"), b"y", 0o644)
    s.chmod(fs.p("public"), 0o644)
    s.chmod(fs.p(""), 0o755)
    with fs.user():
        assert err(s.open, fs.p("secret"), os.O_RDONLY) == E.EACCES
        assert err(s.open, fs.p("public"), os.O_WRONLY) == E.EACCES
        fd = s.open(fs.p("public"), os.O_RDONLY)
        s.close(fd)
        assert err(s.open, fs.p("new"), CREAT) == E.EACCES   # no write on the directory
        assert not s.access(fs.p("secret"), os.R_OK)
        assert s.access(fs.p("public"), os.R_OK)


def test_o_nofollow(fs) -> None:
    need(fs.features.symlinks, f"{fs.name} has no symlinks")
    mkfile(fs.sys, fs.p("f"))
    fs.sys.symlink("f", fs.p("l"))
    assert err(fs.sys.open, fs.p("l"), os.O_RDONLY | os.O_NOFOLLOW) == E.ELOOP
    fd = fs.sys.open(fs.p("l"), os.O_RDONLY)
    fs.sys.close(fd)


def test_open_create_through_dangling_symlink(fs) -> None:
    need(fs.features.symlinks, f"{fs.name} has no symlinks")
    s = fs.sys
    s.symlink("target", fs.p("dangling"))
    assert err(s.open, fs.p("dangling"), CREAT | os.O_EXCL) == E.EEXIST
    fd = s.open(fs.p("dangling"), CREAT, 0o644)          # creates the target
    s.close(fd)
    assert stat.S_ISREG(s.stat(fs.p("target")).st_mode)


def test_fsync_and_sync(fs) -> None:
    s = fs.sys
    fd = s.open(fs.p("f"), CREAT, 0o644)
    s.write(fd, b"durable")
    s.fsync(fd)
    s.fdatasync(fd)
    s.close(fd)
    s.sync()
    if fs.persistent:
        fs.remount()
        assert readfile(s, fs.p("f")) == b"durable"
