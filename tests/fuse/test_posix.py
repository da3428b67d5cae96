"""pjdfstest-style cases through a FUSE mount, for what the FS-independent suite does not cover:
set-id bits cleared by writes and chown, times changed by every call, ENAMETOOLONG, permission
checks as other users (with and without default_permissions), FUSE inode semantics (hard links,
unlinked and renamed-over open files, stable inode numbers), renameat2 flags, fallocate."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import time
from pathlib import Path

import pytest

from tests.fuse.conftest import served
from tests.fuse.hostsys import host_user

_libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def err(fn, *args, **kw) -> int:
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    return ei.value.errno


def cerr(rc: int) -> int:
    return 0 if rc == 0 else ctypes.get_errno()


def write(path: Path, data: bytes = b"", mode: int = 0o644) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
    os.write(fd, data)
    os.close(fd)


@pytest.fixture(params=["default_permissions", "kernel_checks"])
def mnt(request, tmpfs_kernel):
    """The tmpfs at /mnt on the host, permissions checked by the host and the kernel, or by
    the kernel alone (each request runs with its caller's credentials)."""
    if request.param == "default_permissions":
        opts, ttl = ("allow_other", "default_permissions"), 1.0
    else:       # a cached name would skip the kernel's search-permission check: cache nothing
        opts, ttl = ("allow_other",), 0.0
    with served(tmpfs_kernel, options=opts, entry_ttl=ttl, attr_ttl=ttl,
                negative_ttl=ttl) as m:
        yield Path(m.mountpoint)


# ---- set-id bits ---------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["write", "truncate", "o_trunc"])
def test_setid_cleared_when_another_user_writes(mnt: Path, how: str) -> None:
    f = mnt / "suid"
    write(f, b"abc", 0o777)
    os.chmod(f, 0o6777)
    with host_user(1000, 1000, ()):
        if how == "write":
            fd = os.open(f, os.O_WRONLY)
            os.write(fd, b"x")
            os.close(fd)
        elif how == "truncate":
            os.truncate(f, 1)
        else:
            os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o777


def test_setid_kept_for_root_and_cleared_by_chown(mnt: Path) -> None:
    f = mnt / "suid"
    write(f, b"abc", 0o755)
    os.chmod(f, 0o6755)
    fd = os.open(f, os.O_WRONLY)
    os.write(fd, b"root writes")
    os.close(fd)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o6755
    os.chown(f, 1000, 1000)                  # root's chown of an executable clears both bits
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o755
    os.chmod(f, 0o6755)
    with host_user(1000, 1000, ()):
        os.chown(f, -1, 1000)                # the owner's chown too
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o755


# ---- times --------------------------------------------------------------------------------------
def _times(p: Path) -> tuple[int, int, int]:
    st = os.lstat(p)
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns


def _tick() -> None:
    time.sleep(0.002)                        # times are ns: make "later" unambiguous


def test_times_on_every_call(mnt: Path) -> None:
    d, f = mnt / "d", mnt / "d" / "f"
    os.mkdir(d)
    checks: list[tuple[str, Path, str, bool]] = []

    def after(what: str, path: Path, field: str, changed: bool, fn) -> None:
        before = _times(path)
        _tick()
        fn()
        now = _times(path)
        i = "amc".index(field)
        got = now[i] > before[i]
        checks.append((what, path, field, got == changed))

    after("create: dir mtime", d, "m", True, lambda: write(f, b"x"))
    after("create: dir ctime", d, "c", True, lambda: write(d / "g"))
    after("write: mtime", f, "m", True, lambda: write(f, b"yy"))
    after("write: ctime", f, "c", True, lambda: write(f, b"zzz"))
    after("chmod: ctime", f, "c", True, lambda: os.chmod(f, 0o600))
    after("chmod: mtime kept", f, "m", False, lambda: os.chmod(f, 0o644))
    after("chown: ctime", f, "c", True, lambda: os.chown(f, 5, 5))
    after("truncate: mtime", f, "m", True, lambda: os.truncate(f, 1))
    after("link: file ctime", f, "c", True, lambda: os.link(f, d / "h"))
    after("link: dir mtime", d, "m", True, lambda: os.link(f, d / "i"))
    after("unlink: file ctime", f, "c", True, lambda: os.unlink(d / "h"))
    after("unlink: dir mtime", d, "m", True, lambda: os.unlink(d / "i"))
    after("rename: dir mtime", d, "m", True, lambda: os.rename(d / "g", d / "g2"))
    after("mkdir: dir mtime", d, "m", True, lambda: os.mkdir(d / "sub"))
    after("rmdir: dir ctime", d, "c", True, lambda: os.rmdir(d / "sub"))
    after("symlink: dir mtime", d, "m", True, lambda: os.symlink("f", d / "l"))
    after("setxattr: ctime", f, "c", True, lambda: os.setxattr(f, "user.t", b"1"))
    after("read: mtime kept", f, "m", False, f.read_bytes)
    os.utime(f, ns=(1_000_000_001, 2_000_000_002))
    assert _times(f)[:2] == (1_000_000_001, 2_000_000_002)
    bad = [c[:3] for c in checks if not c[3]]
    assert not bad, f"times not as POSIX says: {bad}"


# ---- names --------------------------------------------------------------------------------------
def test_enametoolong(mnt: Path) -> None:
    write(mnt / ("n" * 255))
    assert err(write, mnt / ("n" * 256)) == errno.ENAMETOOLONG
    assert err(os.mkdir, mnt / ("d" * 256)) == errno.ENAMETOOLONG
    deep = str(mnt) + "/x" * 2100
    assert err(os.stat, deep) == errno.ENAMETOOLONG


def test_renameat2_flags(mnt: Path) -> None:
    write(mnt / "a", b"A")
    write(mnt / "b", b"B")

    def renameat2(src: str, dst: str, flags: int) -> int:
        return cerr(_libc.renameat2(-100, os.fsencode(mnt / src), -100,
                                    os.fsencode(mnt / dst), flags))

    assert renameat2("a", "b", RENAME_NOREPLACE) == errno.EEXIST
    assert renameat2("a", "c", RENAME_NOREPLACE) == 0
    assert renameat2("b", "c", RENAME_EXCHANGE) == errno.EINVAL
    assert sorted(os.listdir(mnt)) == ["b", "c"] and (mnt / "c").read_bytes() == b"A"


def test_fallocate_is_eopnotsupp_and_posix_fallocate_still_works(mnt: Path) -> None:
    fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
        assert cerr(_libc.fallocate(fd, 0, 0, 8192)) == errno.EOPNOTSUPP
        os.posix_fallocate(fd, 0, 8192)      # glibc writes zeros instead
        assert os.fstat(fd).st_size == 8192
    finally:
        os.close(fd)


# ---- FUSE inodes are kernel vnodes --------------------------------------------------------------
def test_inode_semantics(mnt: Path, tmpfs_kernel) -> None:
    k = tmpfs_kernel
    write(mnt / "a", b"one")
    os.link(mnt / "a", mnt / "b")
    sa, sb = os.stat(mnt / "a"), os.stat(mnt / "b")
    assert sa.st_ino == sb.st_ino == k.sys.stat("/mnt/a").st_ino and sa.st_nlink == 2
    fd = os.open(mnt / "a", os.O_RDWR)
    os.unlink(mnt / "a")
    os.unlink(mnt / "b")
    os.pwrite(fd, b"still", 0)               # unlinked but open: still a file
    assert os.pread(fd, 10, 0) == b"still" and os.fstat(fd).st_nlink == 0
    os.close(fd)
    write(mnt / "old", b"old content")
    write(mnt / "new", b"new content")
    fd = os.open(mnt / "old", os.O_RDONLY)
    os.rename(mnt / "new", mnt / "old")       # renamed over while open
    assert os.read(fd, 100) == b"old content"
    os.close(fd)
    assert (mnt / "old").read_bytes() == b"new content"
    assert k.sys.listdir("/mnt") == ["old"]


def test_other_users_permissions(mnt: Path) -> None:
    write(mnt / "secret", b"s", 0o600)
    os.chmod(mnt / "secret", 0o600)
    os.mkdir(mnt / "closed", 0o700)
    write(mnt / "closed" / "inside", b"i", 0o644)
    write(mnt / "team", b"t", 0o640)
    os.chown(mnt / "team", 0, 4000)
    os.chmod(mnt / "team", 0o640)
    os.mkdir(mnt / "home", 0o755)
    os.chown(mnt / "home", 1000, 1000)
    with host_user(1000, 1000, (4000,)):
        assert err(open, mnt / "secret", "rb") == errno.EACCES
        assert err(os.stat, mnt / "closed" / "inside") == errno.EACCES
        assert err(write, mnt / "intruder") == errno.EACCES
        assert (mnt / "team").read_bytes() == b"t"       # through a supplementary group
        write(mnt / "home" / "mine", b"m")
        st = os.stat(mnt / "home" / "mine")
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        assert err(os.chmod, mnt / "secret", 0o644) == errno.EPERM
    with host_user(1001, 1001, ()):
        assert err(open, mnt / "team", "rb") == errno.EACCES
