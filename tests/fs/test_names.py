"""Name space operations: mkdir, rmdir, unlink, rename, link, symlink, mknod, directories."""

from __future__ import annotations

import os
import stat

from tests.fs.helpers import E, err, mkfile, need, readfile


def test_mkdir_and_nlink(fs) -> None:
    s = fs.sys
    s.mkdir(fs.p("d"), 0o755)
    st = s.stat(fs.p("d"))
    assert stat.S_ISDIR(st.st_mode)
    before = s.stat(fs.p("d")).st_nlink
    s.mkdir(fs.p("d", "sub"))
    if fs.features.hardlinks:       # FAT has no link counts to speak of
        assert s.stat(fs.p("d")).st_nlink == before + 1
    assert err(s.mkdir, fs.p("d")) == E.EEXIST
    assert err(s.mkdir, fs.p("missing", "x")) == E.ENOENT
    mkfile(s, fs.p("f"))
    assert err(s.mkdir, fs.p("f", "x")) == E.ENOTDIR
    assert err(s.mkdir, fs.p("f")) == E.EEXIST
    assert err(s.mkdir, fs.p("d", ".")) == E.EEXIST


def test_rmdir(fs) -> None:
    s = fs.sys
    s.mkdir(fs.p("d"))
    s.mkdir(fs.p("d", "sub"))
    assert err(s.rmdir, fs.p("d")) == E.ENOTEMPTY
    s.rmdir(fs.p("d", "sub"))
    s.rmdir(fs.p("d"))
    assert err(s.stat, fs.p("d")) == E.ENOENT
    assert err(s.rmdir, fs.p("d")) == E.ENOENT
    mkfile(s, fs.p("f"))
    assert err(s.rmdir, fs.p("f")) == E.ENOTDIR
    s.mkdir(fs.p("e"))
    assert err(s.rmdir, fs.p("e", ".")) == E.EINVAL
    assert err(s.rmdir, fs.p("e", "..")) == E.ENOTEMPTY
    assert err(s.rmdir, "/mnt") == E.EBUSY                   # a mount point


def test_unlink(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"))
    s.unlink(fs.p("f"))
    assert err(s.unlink, fs.p("f")) == E.ENOENT
    s.mkdir(fs.p("d"))
    assert err(s.unlink, fs.p("d")) == E.EISDIR
    mkfile(s, fs.p("g"))
    assert err(s.unlink, fs.p("g") + "/") == E.ENOTDIR


def test_rename_file_replaces_atomically(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("a"), b"A")
    mkfile(s, fs.p("b"), b"B")
    s.rename(fs.p("a"), fs.p("b"))
    assert readfile(s, fs.p("b")) == b"A"
    assert err(s.stat, fs.p("a")) == E.ENOENT
    assert sorted(s.listdir(fs.p(""))) == ["b"]


def test_rename_directory_rules(fs) -> None:
    s = fs.sys
    for d in ("d1", "d2", "full", "d1/inner"):
        s.mkdir(fs.p(d))
    mkfile(s, fs.p("full", "x"))
    mkfile(s, fs.p("f"))
    assert err(s.rename, fs.p("d1"), fs.p("full")) == E.ENOTEMPTY
    assert err(s.rename, fs.p("d1"), fs.p("f")) == E.ENOTDIR
    assert err(s.rename, fs.p("f"), fs.p("d2")) == E.EISDIR
    assert err(s.rename, fs.p("d1"), fs.p("d1", "inner", "x")) == E.EINVAL
    assert err(s.rename, fs.p("nope"), fs.p("x")) == E.ENOENT
    s.rename(fs.p("d1"), fs.p("d2"))                         # over an empty directory
    assert s.listdir(fs.p("d2")) == ["inner"]
    s.rename(fs.p("d2", "inner"), fs.p("full", "moved"))     # across directories
    fd = s.open(fs.p("full", "moved"), os.O_RDONLY)
    s.close(fd)
    s.chdir(fs.p("full", "moved"))
    assert s.getcwd() == fs.p("full", "moved")               # '..' points at the new parent
    s.chdir("..")
    assert s.getcwd() == fs.p("full")
    s.chdir("/")


def test_rename_same_file_is_a_noop(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("a"), b"x")
    s.rename(fs.p("a"), fs.p("a"))
    assert readfile(s, fs.p("a")) == b"x"
    if fs.features.hardlinks:
        s.link(fs.p("a"), fs.p("b"))
        s.rename(fs.p("a"), fs.p("b"))                       # two names, one file: no-op
        assert s.stat(fs.p("a")).st_nlink == 2


def test_rename_across_mounts_is_exdev(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("f"))
    s.mkdir("/other")
    s.mount("tmpfs", "/other")
    assert err(s.rename, fs.p("f"), "/other/f") == E.EXDEV
    s.unmount("/other")


def test_hard_links(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("a"), b"shared")
    if not fs.features.hardlinks:
        assert err(s.link, fs.p("a"), fs.p("b")) == E.EPERM
        return
    s.link(fs.p("a"), fs.p("b"))
    assert s.stat(fs.p("a")).st_nlink == 2
    assert s.stat(fs.p("a")).st_ino == s.stat(fs.p("b")).st_ino
    s.unlink(fs.p("a"))
    assert readfile(s, fs.p("b")) == b"shared" and s.stat(fs.p("b")).st_nlink == 1
    assert err(s.link, fs.p("b"), fs.p("b")) == E.EEXIST
    s.mkdir(fs.p("d"))
    assert err(s.link, fs.p("d"), fs.p("d2")) == E.EPERM
    assert err(s.link, fs.p("missing"), fs.p("x")) == E.ENOENT


def test_emlink(fs) -> None:
    need(fs.features.hardlinks and fs.features.link_max <= 1000,
         f"{fs.name}: link limit {fs.features.link_max} too large to reach in a test")
    s = fs.sys
    mkfile(s, fs.p("f"))
    n = 1
    while n < fs.features.link_max:
        s.link(fs.p("f"), fs.p(f"l{n}"))
        n += 1
    assert err(s.link, fs.p("f"), fs.p("onemore")) == E.EMLINK


def test_symlinks(fs) -> None:
    s = fs.sys
    if not fs.features.symlinks:
        assert err(s.symlink, "x", fs.p("l")) == E.EPERM
        return
    mkfile(s, fs.p("target"), b"t")
    s.symlink("target", fs.p("rel"))
    s.symlink(fs.p("target"), fs.p("abs"))
    assert s.readlink(fs.p("rel")) == "target"
    assert readfile(s, fs.p("rel")) == b"t" == readfile(s, fs.p("abs"))
    assert stat.S_ISLNK(s.lstat(fs.p("rel")).st_mode)
    assert s.lstat(fs.p("rel")).st_size == len("target")
    assert err(s.symlink, "x", fs.p("rel")) == E.EEXIST
    assert err(s.readlink, fs.p("target")) == E.EINVAL
    long_target = "y" * 300                                  # a slow symlink on ext
    s.symlink(long_target, fs.p("long"))
    assert s.readlink(fs.p("long")) == long_target
    s.symlink("dangling-target", fs.p("dangling"))
    assert err(s.stat, fs.p("dangling")) == E.ENOENT
    assert s.lstat(fs.p("dangling"))


def test_symlink_loops_are_eloop(fs) -> None:
    need(fs.features.symlinks, f"{fs.name} has no symlinks")
    s = fs.sys
    s.symlink("b", fs.p("a"))
    s.symlink("a", fs.p("b"))
    assert err(s.stat, fs.p("a")) == E.ELOOP
    assert err(s.open, fs.p("a", "x"), os.O_RDONLY) == E.ELOOP


def test_symlink_to_directory_and_trailing_slash(fs) -> None:
    need(fs.features.symlinks, f"{fs.name} has no symlinks")
    s = fs.sys
    s.mkdir(fs.p("dir"))
    mkfile(s, fs.p("dir", "inside"), b"i")
    s.symlink("dir", fs.p("ld"))
    assert readfile(s, fs.p("ld", "inside")) == b"i"
    assert stat.S_ISDIR(s.stat(fs.p("ld") + "/").st_mode)
    assert stat.S_ISLNK(s.lstat(fs.p("ld")).st_mode)
    s.symlink("../" * 40 + fs.p("dir")[1:], fs.p("up"))      # '..' stops at the root
    assert readfile(s, fs.p("up", "inside")) == b"i"


def test_dotdot_crosses_mount_point(fs) -> None:
    s = fs.sys
    s.mkdir(fs.p("d"))
    s.chdir(fs.p("d"))
    s.chdir("../../..")
    assert s.getcwd() == "/"
    assert "mnt" in s.listdir(".")
    s.chdir("/")


def test_mknod_fifo_and_devices(fs) -> None:
    s = fs.sys
    if not fs.features.special_files:
        assert err(s.mkfifo, fs.p("fifo")) == E.EPERM
        return
    s.mkfifo(fs.p("fifo"), 0o644)
    assert stat.S_ISFIFO(s.stat(fs.p("fifo")).st_mode)
    s.mknod(fs.p("null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    st = s.stat(fs.p("null"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    fd = s.open(fs.p("null"), os.O_RDWR)                    # the dev faction's null device
    assert s.write(fd, b"gone") == 4 and s.read(fd, 10) == b""
    s.close(fd)
    with fs.user():
        assert err(s.mknod, "/tmpnode", stat.S_IFCHR | 0o600, 0) in (E.EPERM, E.EACCES)


def test_fifo_roundtrip(fs) -> None:
    need(fs.features.special_files, f"{fs.name} has no fifos")
    s = fs.sys
    s.mkfifo(fs.p("fifo"))
    assert err(s.open, fs.p("fifo"), os.O_WRONLY | os.O_NONBLOCK) == E.ENXIO
    r = s.open(fs.p("fifo"), os.O_RDONLY | os.O_NONBLOCK)
    w = s.open(fs.p("fifo"), os.O_WRONLY)
    s.write(w, b"through the fifo")
    assert s.read(r, 100) == b"through the fifo"
    s.close(w)
    s.close(r)


def test_listdir_and_getdents(fs) -> None:
    s = fs.sys
    names = {f"file{i:03d}" for i in range(150)}
    for n in names:
        mkfile(s, fs.p(n))
    s.mkdir(fs.p("subdir"))
    got = s.listdir(fs.p(""))
    assert len(got) == len(set(got)) == 151
    if fs.features.case_insensitive:
        got = [g.lower() for g in got]
    assert set(got) == names | {"subdir"}
    fd = s.open(fs.p(""), os.O_RDONLY | os.O_DIRECTORY)
    ents = []
    while batch := s.getdents(fd, 600):
        ents += batch
    s.close(fd)
    by_name = {n.decode().lower() if fs.features.case_insensitive else n.decode(): (ino, t)
               for n, ino, t, _ in ents}
    assert {".", ".."} <= set(by_name)
    assert by_name["subdir"][1] == 4 and by_name["file000"][1] == 8   # DT_DIR, DT_REG


def test_getdents_offsets_stable_across_unlink(fs) -> None:
    s = fs.sys
    names = [f"n{i:03d}" for i in range(120)]
    for n in names:
        mkfile(s, fs.p(n))
    fd = s.open(fs.p(""), os.O_RDONLY | os.O_DIRECTORY)
    seen: list[str] = []
    first = s.getdents(fd, 1024)
    seen += [n.decode() for n, *_ in first]
    seen_set = {x.lower() for x in seen}
    removed = [n for n in names if n.lower() not in seen_set][::2]
    for n in removed:                                       # remove half of the unread ones
        s.unlink(fs.p(n))
    while batch := s.getdents(fd, 1024):
        seen += [n.decode() for n, *_ in batch]
    s.close(fd)
    low = [x.lower() for x in seen if x not in (".", "..")]
    assert len(low) == len(set(low)), "an entry was returned twice"
    expected = {n for n in names if n not in removed}
    assert expected <= set(low), "an entry that was never removed was skipped"


def test_chdir_fchdir_getcwd(fs) -> None:
    s = fs.sys
    s.mkdir(fs.p("a"))
    s.mkdir(fs.p("a", "b"))
    s.chdir(fs.p("a"))
    mkfile(s, "b/rel", b"relative")
    assert readfile(s, fs.p("a", "b", "rel")) == b"relative"
    fd = s.open("b", os.O_RDONLY | os.O_DIRECTORY)
    s.chdir("/")
    s.fchdir(fd)
    s.close(fd)
    assert s.getcwd() == fs.p("a", "b")
    mkfile(s, fs.p("file"))
    assert err(s.chdir, fs.p("file")) == E.ENOTDIR
    s.chdir("/")


def test_openat_style_dir_fd(fs) -> None:
    s = fs.sys
    s.mkdir(fs.p("d"))
    dfd = s.open(fs.p("d"), os.O_RDONLY | os.O_DIRECTORY)
    fd = s.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd)
    s.write(fd, b"at")
    s.close(fd)
    assert readfile(s, fs.p("d", "f")) == b"at"
    assert s.stat("f", dir_fd=dfd).st_size == 2
    s.mkdir("sub", dir_fd=dfd)
    s.rename("f", "sub/g", src_dir_fd=dfd, dst_dir_fd=dfd)
    s.unlink("sub/g", dir_fd=dfd)
    s.rmdir("sub", dir_fd=dfd)
    s.close(dfd)


def test_sticky_directory(fs) -> None:
    need(fs.features.owners and fs.features.permissions, f"{fs.name} has fixed owners")
    s = fs.sys
    s.mkdir(fs.p("tmp"))
    s.chmod(fs.p("tmp"), 0o1777)
    s.chmod(fs.p(""), 0o755)
    mkfile(s, fs.p("tmp", "roots"))
    with fs.user(1000, 1000):
        mkfile(s, fs.p("tmp", "mine"))
        assert err(s.unlink, fs.p("tmp", "roots")) == E.EPERM
        assert err(s.rename, fs.p("tmp", "roots"), fs.p("tmp", "x")) == E.EPERM
        s.unlink(fs.p("tmp", "mine"))


def test_case_insensitivity_is_declared(fs) -> None:
    s = fs.sys
    mkfile(s, fs.p("MixedCase"), b"m")
    if fs.features.case_insensitive:
        assert readfile(s, fs.p("mixedcase")) == b"m"
        assert err(s.open, fs.p("MIXEDCASE"), os.O_CREAT | os.O_EXCL | os.O_RDWR) == E.EEXIST
        s.rename(fs.p("MixedCase"), fs.p("mixedCASE"))          # case-only rename
        assert s.listdir(fs.p("")) == ["mixedCASE"]
    else:
        assert err(s.stat, fs.p("mixedcase")) == E.ENOENT
