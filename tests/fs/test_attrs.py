"""Attributes: stat fields, chmod, chown, utimes, access, statvfs, xattrs, read-only mounts."""

from __future__ import annotations

import os
import stat

from tests.fs.helpers import E, err, mkfile, need


def test_times_update_on_write(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"))
    s.utime(fs.p("f"), ns=(1_000_000_000, 1_000_000_000))
    fd = s.open(fs.p("f"), os.O_WRONLY)
    s.write(fd, b"x")
    s.close(fd)
    st = s.stat(fs.p("f"))
    assert st.st_mtime_ns > 1_000_000_000
    assert st.st_ctime_ns > 1_000_000_000


def test_utimens_precision_and_omit(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"))
    res = fs.features.time_resolution_ns
    at, mt = 1_234_567_890_123_456_789 // res * res, 987_654_321_987_654_321 // res * res
    s.utime(fs.p("f"), ns=(at, mt))
    st = s.stat(fs.p("f"))
    assert st.st_mtime_ns == mt
    if res == 1:
        assert st.st_atime_ns == at
    omit = getattr(os, "UTIME_OMIT", (1 << 30) - 2)
    s.utime(fs.p("f"), ns=(omit, 1_000_000_000 * 10**9))     # 2001: every FS can store it
    assert s.stat(fs.p("f")).st_mtime_ns == 1_000_000_000 * 10**9
    if res == 1:
        assert s.stat(fs.p("f")).st_atime_ns == at
        s.utime(fs.p("f"), ns=(-2_000_000_000, -1))           # before 1970
        assert s.stat(fs.p("f")).st_mtime_ns == -1


def test_utimes_permissions(fs) -> None:
    need(fs.features.owners and fs.features.permissions, f"{fs.name} has fixed owners")
    s = fs.sys
    mkfile(s, fs.p("f"), mode=0o666)
    s.chmod(fs.p("f"), 0o666)
    s.chmod(fs.p(""), 0o755)
    with fs.user():
        s.utime(fs.p("f"))                                   # "now" needs write access only
        assert err(s.utime, fs.p("f"), ns=(1, 1)) == E.EPERM  # explicit times need ownership


def test_chmod(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"))
    if fs.features.permissions:
        s.chmod(fs.p("f"), 0o640)
    mode = stat.S_IMODE(s.stat(fs.p("f")).st_mode)
    if not fs.features.permissions:          # FAT: only the read-only attribute can change
        s.chmod(fs.p("f"), mode & ~0o222)
        assert not stat.S_IMODE(s.stat(fs.p("f")).st_mode) & 0o222
        s.chmod(fs.p("f"), mode | 0o200)
        assert stat.S_IMODE(s.stat(fs.p("f")).st_mode) & 0o200
        assert err(s.chmod, fs.p("f"), 0o4755) == E.EPERM
        return
    assert mode == 0o640
    fd = s.open(fs.p("f"), os.O_RDONLY)
    s.fchmod(fd, 0o4755)
    assert stat.S_IMODE(s.fstat(fd).st_mode) == 0o4755
    s.close(fd)
    with fs.user():
        assert err(s.chmod, fs.p("f"), 0o777) == E.EPERM


def test_chown(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"))
    if not fs.features.owners:
        assert err(s.chown, fs.p("f"), 1234, 1234) == E.EPERM
        return
    s.chown(fs.p("f"), 1000, 2000)
    st = s.stat(fs.p("f"))
    assert (st.st_uid, st.st_gid) == (1000, 2000)
    s.chown(fs.p("f"), -1, 3000)
    assert s.stat(fs.p("f")).st_uid == 1000
    s.chmod(fs.p("f"), 0o6755)
    s.chmod(fs.p(""), 0o755)
    with fs.user(1000, 1000, (3000, 4000)):
        s.chown(fs.p("f"), -1, 4000)                          # a group the owner is in
        assert err(s.chown, fs.p("f"), 0, -1) == E.EPERM       # giving it away
        assert err(s.chown, fs.p("f"), -1, 5000) == E.EPERM    # a group the owner is not in
    st = s.stat(fs.p("f"))
    assert st.st_gid == 4000
    assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID)      # cleared by a user's chown


def test_new_file_ownership_and_umask(fs) -> None:
    need(fs.features.owners and fs.features.permissions, f"{fs.name} has fixed owners")
    s = fs.sys
    s.chmod(fs.p(""), 0o777)
    with fs.user(1000, 100):
        s.umask(0o027)
        mkfile(s, fs.p("f"), mode=0o777)
        st = s.stat(fs.p("f"))
        assert (st.st_uid, st.st_gid) == (1000, 100)
        assert stat.S_IMODE(st.st_mode) == 0o750
    s.mkdir(fs.p("sgid"))
    s.chown(fs.p("sgid"), 0, 555)
    s.chmod(fs.p("sgid"), 0o2777)
    with fs.user(1000, 100):
        s.mkdir(fs.p("sgid", "d"))
        mkfile(s, fs.p("sgid", "f"))
        assert s.stat(fs.p("sgid", "f")).st_gid == 555       # inherited group
        assert s.stat(fs.p("sgid", "d")).st_mode & stat.S_ISGID


def test_access(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"))
    assert s.access(fs.p("f"), os.F_OK)
    assert not s.access(fs.p("missing"), os.F_OK)
    need(fs.features.permissions and fs.features.owners, f"{fs.name} has fixed owners")
    s.chmod(fs.p("f"), 0o604)
    s.chmod(fs.p(""), 0o755)
    with fs.user():
        assert s.access(fs.p("f"), os.R_OK)
        assert not s.access(fs.p("f"), os.W_OK)
        assert not s.access(fs.p("f"), os.X_OK)


def test_statvfs(fs) -> None:
    sv = fs.sys.statvfs(fs.p(""))
    assert sv.f_bsize > 0 and sv.f_blocks > 0 and 0 <= sv.f_bfree <= sv.f_blocks
    assert sv.f_namemax == fs.features.name_max
    fd = fs.sys.open(fs.p(""), os.O_RDONLY)
    assert fs.sys.fstatvfs(fd).f_bsize == sv.f_bsize
    fs.sys.close(fd)


def test_xattrs(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"))
    if not fs.features.xattr:
        assert err(s.setxattr, fs.p("f"), "user.k", b"v") in (E.ENOTSUP, E.EOPNOTSUPP)
        return
    s.setxattr(fs.p("f"), "user.colour", b"blue")
    assert s.getxattr(fs.p("f"), "user.colour") == b"blue"
    assert "user.colour" in s.listxattr(fs.p("f"))
    assert err(s.setxattr, fs.p("f"), "user.colour", b"x", os.XATTR_CREATE) == E.EEXIST
    assert err(s.setxattr, fs.p("f"), "user.new", b"x", os.XATTR_REPLACE) == E.ENODATA
    s.removexattr(fs.p("f"), "user.colour")
    assert err(s.getxattr, fs.p("f"), "user.colour") == E.ENODATA


def test_readonly_mount_is_erofs(fs) -> None:
    s = fs.sys
    if fs.persistent:
        mkfile(s, fs.p("f"), b"x")
        s.mkdir(fs.p("d"))
        s.unmount("/mnt")
        fs.k.mount_image(str(fs.image), "/mnt", fstype=fs.fstype, readonly=True)
        root = fs.p("")
    else:                                   # a read-only tmpfs: empty, but the rules are the same
        s.mkdir("/ro")
        s.mount("tmpfs", "/ro", 1)          # MNT_RDONLY
        root = "/ro"
    p = lambda *parts: "/".join((root, *parts))  # noqa: E731
    assert err(s.open, p("new"), os.O_CREAT | os.O_RDWR) == E.EROFS
    assert err(s.mkdir, p("e")) == E.EROFS
    assert s.statvfs(p("")).f_flag & 1
    if fs.persistent:
        assert err(s.open, p("f"), os.O_WRONLY) == E.EROFS
        assert err(s.unlink, p("f")) == E.EROFS
        assert err(s.rmdir, p("d")) == E.EROFS
        assert err(s.rename, p("f"), p("g")) == E.EROFS
        assert err(s.truncate, p("f"), 0) == E.EROFS
        assert err(s.utime, p("f")) == E.EROFS
        fd = s.open(p("f"), os.O_RDONLY)
        assert s.read(fd, 10) == b"x"
        s.close(fd)
    else:
        s.unmount("/ro")


def test_unmount_busy(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"))
    fd = s.open(fs.p("f"), os.O_RDONLY)
    assert err(s.unmount, "/mnt") == E.EBUSY
    s.close(fd)
    s.chdir(fs.p(""))
    assert err(s.unmount, "/mnt") == E.EBUSY
    s.chdir("/")
    assert err(s.unmount, fs.p("f")) in (E.EINVAL, E.ENOTDIR)
    with fs.user():
        assert err(s.unmount, "/mnt") == E.EPERM
