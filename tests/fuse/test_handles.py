"""The VFS additions the FUSE server stands on, through local and remote clients: O_PATH handles,
AT_EMPTY_PATH on the *at calls, reopen, renameat2, the *xattrat calls, and set-id bits cleared
by a write or truncate from anyone but root."""

from __future__ import annotations

import errno
import os
import stat

import pytest

import rumpkernel
from rumpkernel import SimHost
from rumpkernel.kern import abi as K
from rumpkernel.kern.syscall.structs import STAT, TIMESPEC

E = errno


@pytest.fixture(params=["local", "remote"])
def k(request, tmp_path):
    if request.param == "remote":
        from tests.remote.harness import RemoteView

        view = RemoteView(rumpkernel.boot(), tmp_path)
        _setup(view.sys)
        yield view
        if not view.k.dead:
            assert view.k.statistics()["open_files"] == 0, "test leaked descriptors"
            view.halt()
        return
    kern = rumpkernel.boot(SimHost(11))
    _setup(kern.sys)
    yield kern
    if not kern.dead:
        assert kern.statistics()["open_files"] == 0, "test leaked descriptors"
        kern.halt()


def _setup(s) -> None:
    s.mkdir("/t", 0o755)
    s.mount("tmpfs", "/t", 0, {"mode": "755"})


def err(fn, *args) -> int:
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


def kstat(s, fd: int, path: bytes = b"", flag: int = K.AT_EMPTY_PATH) -> dict:
    buf = bytearray(STAT.size)
    s.sys_fstatat(fd, path, buf, flag)
    return dict(zip(STAT.names, STAT.unpack(buf)))


def mkfile(s, path: str, data: bytes = b"", mode: int = 0o644) -> None:
    fd = s.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
    s.write(fd, data)
    s.close(fd)


def user(k, uid: int = 1000, gid: int = 1000):
    """A context running the body as an unprivileged process (local) or connection (remote)."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        k.lwproc.rfork()
        try:
            k.sys.setgid(gid)
            k.sys.setuid(uid)
            yield
        finally:
            k.lwproc.release()
    return ctx()


def test_o_path_needs_no_permission_and_gives_no_io(k) -> None:
    s = k.sys
    mkfile(s, "/t/secret", b"data", 0o000)
    s.chmod("/t/secret", 0o000)
    with user(k):
        assert err(s.open, "/t/secret", os.O_RDONLY) == E.EACCES
        h = s.open("/t/secret", os.O_PATH)
        try:
            assert err(s.read, h, 1) == E.EBADF
            assert err(s.write, h, b"x") == E.EBADF
            assert err(s.fchmod, h, 0o644) == E.EBADF
            assert err(s.fsync, h) == E.EBADF
            assert s.fstat(h).st_size == 4
            assert kstat(s, h)["size"] == 4
        finally:
            s.close(h)


def test_o_path_nofollow_holds_the_symlink_itself(k) -> None:
    s = k.sys
    s.symlink("target", "/t/l")
    h = s.open("/t/l", os.O_PATH | os.O_NOFOLLOW)
    try:
        assert stat.S_ISLNK(kstat(s, h)["mode"])
        buf = bytearray(100)
        n = s.sys_readlinkat(h, b"", buf, len(buf))
        assert bytes(buf[:n]) == b"target"
        assert err(s.sys_reopen, h, K.O_RDONLY) == E.ELOOP
    finally:
        s.close(h)
    assert err(s.sys_readlinkat, K.AT_FDCWD, b"", bytearray(10), 10) == E.ENOENT


def test_o_path_directory_serves_as_dirfd_and_fchdir(k) -> None:
    s = k.sys
    s.mkdir("/t/d")
    mkfile(s, "/t/d/f", b"abc")
    h = s.open("/t/d", os.O_PATH | os.O_DIRECTORY)
    try:
        assert s.stat("f", dir_fd=h).st_size == 3
        assert err(s.getdents, h) == E.EBADF
        s.fchdir(h)
        assert s.getcwd() == "/t/d"
        s.chdir("/")
        assert s.statvfs(h).f_bsize > 0
    finally:
        s.close(h)
    mkfile(s, "/t/plain")
    assert err(s.open, "/t/plain", os.O_PATH | os.O_DIRECTORY) == E.ENOTDIR


def test_at_empty_path_on_the_attribute_calls(k) -> None:
    s = k.sys
    mkfile(s, "/t/f", b"x")
    h = s.open("/t/f", os.O_PATH)
    try:
        s.sys_fchmodat(h, b"", 0o600, K.AT_EMPTY_PATH)
        s.sys_fchownat(h, b"", 12, 34, K.AT_EMPTY_PATH)
        times = TIMESPEC.pack(5, 6) + TIMESPEC.pack(7, 8)
        s.sys_utimensat(h, b"", times, K.AT_EMPTY_PATH)
        st = s.stat("/t/f")
        assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (12, 34)
        assert (st.st_atime_ns, st.st_mtime_ns) == (5_000_000_006, 7_000_000_008)
        s.sys_faccessat(h, b"", K.R_OK, K.AT_EMPTY_PATH)
        assert err(s.sys_fstatat, h, b"", bytearray(STAT.size), 0) == E.ENOENT  # no flag
        assert err(s.sys_fchmodat, h, b"", 0o600, 0x8000) == E.EINVAL
    finally:
        s.close(h)


def test_linkat_empty_path_and_removed_files(k) -> None:
    s = k.sys
    mkfile(s, "/t/a", b"body")
    h = s.open("/t/a", os.O_PATH)
    try:
        s.sys_linkat(h, b"", K.AT_FDCWD, b"/t/b", K.AT_EMPTY_PATH)
        assert s.stat("/t/b").st_nlink == 2
        s.unlink("/t/a")
        s.unlink("/t/b")
        assert kstat(s, h)["nlink"] == 0
        assert err(s.sys_linkat, h, b"", K.AT_FDCWD, b"/t/c", K.AT_EMPTY_PATH) == E.ENOENT
        assert "c" not in s.listdir("/t")
    finally:
        s.close(h)


def test_reopen_checks_permissions_like_open(k) -> None:
    s = k.sys
    mkfile(s, "/t/f", b"0123456789", 0o644)
    s.chmod("/t/f", 0o644)
    s.mkdir("/t/d")
    h = s.open("/t/f", os.O_PATH)
    d = s.open("/t/d", os.O_PATH)
    try:
        fd = s.sys_reopen(h, K.O_RDONLY)
        assert s.pread(fd, 4, 2) == b"2345"
        s.close(fd)
        assert err(s.sys_reopen, d, K.O_WRONLY) == E.EISDIR
        assert err(s.sys_reopen, h, K.O_RDONLY | K.O_CREAT) == E.EINVAL
        with user(k):
            hu = s.open("/t/f", os.O_PATH)
            assert err(s.sys_reopen, hu, K.O_WRONLY) == E.EACCES
            fd = s.sys_reopen(hu, K.O_RDONLY)
            s.close(fd)
            s.close(hu)
        fd = s.sys_reopen(h, K.O_WRONLY | K.O_TRUNC)
        s.close(fd)
        assert s.stat("/t/f").st_size == 0
        io = s.open("/t/f", os.O_RDWR)
        h2 = s.sys_reopen(io, K.O_PATH)            # a handle from an open file
        s.close(io)
        assert err(s.read, h2, 1) == E.EBADF
        assert kstat(s, h2)["ino"] == s.stat("/t/f").st_ino
        s.close(h2)
    finally:
        s.close(h)
        s.close(d)


def test_reopen_reaches_an_unlinked_file(k) -> None:
    s = k.sys
    mkfile(s, "/t/f", b"kept")
    h = s.open("/t/f", os.O_PATH)
    s.unlink("/t/f")
    fd = s.sys_reopen(h, K.O_RDWR)
    s.close(h)
    assert s.pread(fd, 10, 0) == b"kept"
    s.close(fd)


def test_renameat2_noreplace_and_exchange(k) -> None:
    s = k.sys
    mkfile(s, "/t/a", b"A")
    mkfile(s, "/t/b", b"B")
    NR = K.RENAME_NOREPLACE
    assert err(s.sys_renameat2, K.AT_FDCWD, b"/t/a", K.AT_FDCWD, b"/t/b", NR) == E.EEXIST
    assert err(s.sys_renameat2, K.AT_FDCWD, b"/t/a", K.AT_FDCWD, b"/t/a", NR) == E.EEXIST
    s.sys_renameat2(K.AT_FDCWD, b"/t/a", K.AT_FDCWD, b"/t/c", NR)
    assert sorted(s.listdir("/t")) == ["b", "c"]
    assert err(s.sys_renameat2, K.AT_FDCWD, b"/t/b", K.AT_FDCWD, b"/t/c",
               K.RENAME_EXCHANGE) == E.EINVAL
    assert err(s.sys_renameat2, K.AT_FDCWD, b"/t/b", K.AT_FDCWD, b"/t/d", 0x80) == E.EINVAL
    s.sys_renameat2(K.AT_FDCWD, b"/t/b", K.AT_FDCWD, b"/t/c", 0)
    assert sorted(s.listdir("/t")) == ["c"]


def test_xattr_at_calls(k) -> None:
    s = k.sys
    mkfile(s, "/t/f")
    h = s.open("/t/f", os.O_PATH)
    EP = K.AT_EMPTY_PATH
    try:
        s.sys_setxattrat(h, b"", b"user.k", b"value", 5, EP | K.XATTR_CREATE)
        assert err(s.sys_setxattrat, h, b"", b"user.k", b"v", 1, EP | K.XATTR_CREATE) == E.EEXIST
        assert err(s.sys_setxattrat, h, b"", b"user.k", b"v", 1, EP | 3) == E.EINVAL
        assert s.sys_getxattrat(h, b"", b"user.k", None, 0, EP) == 5
        buf = bytearray(5)
        assert s.sys_getxattrat(h, b"", b"user.k", buf, 5, EP) == 5 and buf == b"value"
        n = s.sys_listxattrat(h, b"", None, 0, EP)
        buf = bytearray(n)
        s.sys_listxattrat(h, b"", buf, n, EP)
        assert bytes(buf) == b"user.k\0"
        assert s.getxattr("/t/f", "user.k") == b"value"    # the path calls agree
        s.sys_removexattrat(K.AT_FDCWD, b"/t/f", b"user.k", 0)
        assert err(s.sys_getxattrat, h, b"", b"user.k", None, 0, EP) == E.ENODATA
        assert err(s.sys_getxattrat, h, b"", b"user.k", None, 0, 0x4000) == E.EINVAL
    finally:
        s.close(h)


@pytest.mark.parametrize("how", ["write", "truncate", "ftruncate", "o_trunc"])
def test_set_id_bits_cleared_by_unprivileged_write(k, how: str) -> None:
    s = k.sys
    mkfile(s, "/t/f", b"abc", 0o666)
    s.chown("/t/f", 0, 0)
    s.chmod("/t/f", 0o6777)
    s.chmod("/t", 0o777)
    with user(k):
        if how == "write":
            fd = s.open("/t/f", os.O_WRONLY)
            s.write(fd, b"x")
            s.close(fd)
        elif how == "truncate":
            s.truncate("/t/f", 1)
        elif how == "ftruncate":
            fd = s.open("/t/f", os.O_WRONLY)
            s.ftruncate(fd, 1)
            s.close(fd)
        else:
            fd = s.open("/t/f", os.O_WRONLY | os.O_TRUNC)
            s.close(fd)
    assert stat.S_IMODE(s.stat("/t/f").st_mode) == 0o777


def test_set_gid_without_group_execute_stays_and_root_keeps_bits(k) -> None:
    s = k.sys
    mkfile(s, "/t/f", b"abc", 0o666)
    s.chmod("/t/f", 0o2666)                          # set-gid, no group x: mandatory locking
    s.chmod("/t", 0o777)
    with user(k):
        fd = s.open("/t/f", os.O_WRONLY)
        s.write(fd, b"x")
        s.close(fd)
    assert stat.S_IMODE(s.stat("/t/f").st_mode) == 0o2666
    s.chmod("/t/f", 0o6777)
    fd = s.open("/t/f", os.O_WRONLY)                 # root writes: bits stay
    s.write(fd, b"y")
    s.close(fd)
    assert stat.S_IMODE(s.stat("/t/f").st_mode) == 0o6777


def test_symlink_targets_up_to_symlink_max(k) -> None:
    s = k.sys
    long = "x" * K.SYMLINK_MAX                        # 4,095 bytes, as Linux allows
    s.symlink(long, "/t/long")
    assert s.readlink("/t/long") == long
    assert err(s.symlink, long + "y", "/t/longer") == E.ENAMETOOLONG
