"""Images made by the Linux kernel through a root loop mount, and views of a tree as the kernel
and as our driver show it.

The kernel lays things out differently from ``mke2fs -d`` and from our driver: it grows
indexed directories itself (leaving stale leaf tails in the index root), fragments extent
trees (punched holes, interleaved appends), shares equal xattr blocks between inodes, stores
ACLs from ``setfacl`` in its own format.  ``populate`` makes all of that; ``build`` runs it on
a fresh ``mke2fs`` image through a loop mount.

Interface:
    loop_mounted(img, readonly) -> ctx manager yielding the mount point; unique mount point,
                                   always unmounted (and the loop device detached) on exit
    build(img, fstype, size, opts, big) -> img     mke2fs + kernel-populated tree
    build_encrypted(img, opts) -> img              an fscrypt tree whose key is then removed
    host_view(root) -> {path: record}              what the kernel shows (os.* on a mount)
    rump_view(k, root) -> {path: record}           what our kernel shows (k.sys.*)
    DATES                                          the timestamps ``populate`` sets
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import itertools
import os
import random
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NS = 10**9
INT64_MAX = 2**63 - 1
# seconds: the ext4 minimum (1901-12-13), pre-epoch, 2038 rollover, past int64 ns (2262),
# and the ext4 maximum (2446-05-10)
DATES = [-(2**31), -86_400 * 365 * 50 + 17, 2**31 - 1, 2**31 + 5, 9_300_000_000,
         (1 << 34) - (1 << 31) - 1]
_counter = itertools.count()
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 1, 2


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


# -- loop mounts ---------------------------------------------------------------------------------
def _detach(img: Path) -> None:
    res = run("losetup", "-j", str(img), check=False)
    for line in res.stdout.splitlines():
        dev = line.split(":", 1)[0]
        if dev.startswith("/dev/loop"):
            run("losetup", "-d", dev, check=False)


def _umount(mnt: Path) -> None:
    for _ in range(20):
        if run("umount", str(mnt), check=False).returncode == 0:
            return
        if not os.path.ismount(mnt):
            return
        time.sleep(0.1)
    run("umount", "-l", str(mnt), check=False)


@contextlib.contextmanager
def loop_mounted(img: Path, readonly: bool = True) -> Iterator[Path]:
    mnt = Path(tempfile.mkdtemp(prefix=f"ext-{os.getpid()}-{next(_counter)}-"))
    try:
        run("mount", "-o", "loop," + ("ro" if readonly else "rw"), str(img), str(mnt))
        try:
            yield mnt
        finally:
            _umount(mnt)
            _detach(img)
    finally:
        mnt.rmdir()


# -- building ------------------------------------------------------------------------------------
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def punch(fd: int, offset: int, length: int) -> None:
    """fallocate(PUNCH_HOLE | KEEP_SIZE), what ``fallocate -p`` does."""
    if _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def build(img: Path, fstype: str, size: str, opts: list[str], *, big: bool = False,
          seed: int = 1) -> Path:
    run("mke2fs", "-q", "-F", "-t", fstype, "-E", "lazy_itable_init=0", *opts, str(img), size)
    with loop_mounted(img, readonly=False) as mnt:
        populate(mnt, big=big, seed=seed)
    return img


def populate(root: Path, *, big: bool, seed: int) -> None:
    rng = random.Random(seed)
    bs = os.statvfs(root).f_bsize
    _indexed_dirs(root, (200, 3000, 50_000) if big else (200, 3000))
    _fragmented_files(root, rng, bs)
    _shared_xattrs(root, rng)
    _acls(root)
    _deep_tree(root)
    _symlinks(root, bs)
    _devices(root)
    _dates(root)
    _inline_sized(root, rng)


def _indexed_dirs(root: Path, sizes: tuple[int, ...]) -> None:
    for n in sizes:
        d = root / f"idx{n}"
        d.mkdir()
        for i in range(n):
            fd = os.open(d / f"entry-{i:06d}{'-x' * (i % 20)}", os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
        (d / "sub").mkdir()
        os.symlink("../../idx200/entry-000001-x", d / "sub" / "up")   # relative ``..`` link
    # a directory emptied by the kernel (index blocks left behind)
    d = root / "idx-emptied"
    d.mkdir()
    for i in range(1000):
        (d / f"gone-{i:05d}").touch()
    for i in range(1000):
        if i % 97:
            (d / f"gone-{i:05d}").unlink()


def _fragmented_files(root: Path, rng: random.Random, bs: int) -> None:
    path = root / "holes"
    path.write_bytes(rng.randbytes(600 * bs))
    fd = os.open(path, os.O_RDWR)
    try:
        for i in range(1, 600, 2):                   # ~300 extents in a depth-1 tree
            punch(fd, i * bs, bs)
        os.fsync(fd)
    finally:
        os.close(fd)
    a, b = root / "inter-a", root / "inter-b"
    fa, fb = os.open(a, os.O_CREAT | os.O_WRONLY, 0o600), os.open(b, os.O_CREAT | os.O_WRONLY)
    try:
        for _ in range(120):                         # interleaved appends, synced each time
            os.write(fa, rng.randbytes(bs + 17))
            os.fsync(fa)
            os.write(fb, rng.randbytes(bs - 3))
            os.fsync(fb)
    finally:
        os.close(fa)
        os.close(fb)
    sparse = root / "sparse"
    with open(sparse, "wb") as f:
        f.seek(3 << 30)
        f.write(b"far")
        f.seek(5000)
        f.write(b"near")


def _shared_xattrs(root: Path, rng: random.Random) -> None:
    value = rng.randbytes(700)            # too big for the inode: the kernel shares one block
    for name in ("shared-a", "shared-b", "shared-c"):
        (root / name).write_bytes(name.encode())
        os.setxattr(root / name, "user.shared", value)
        os.setxattr(root / name, "user.also", b"same on all")
    (root / "own-block").write_bytes(b"x")
    os.setxattr(root / "own-block", "user.mine", rng.randbytes(900))


def _acls(root: Path) -> None:
    f, d = root / "acl-file", root / "acl-dir"
    f.write_bytes(b"acl\n")
    d.mkdir()
    run("setfacl", "-m", "u:1234:rwx,g:55:r-x,u:77:r,m::rwx,o::-", str(f))
    run("setfacl", "-d", "-m", "u:1234:rx,g::r-x,o::-", str(d))
    (d / "inherits").write_bytes(b"inherited default ACL\n")


def _deep_tree(root: Path) -> None:
    p = root / "deep"
    for i in range(40):                 # 40 * 41 bytes: past 1,024 and past 1,500
        p = p / f"level-{i:02d}-{'d' * 32}"
    p.mkdir(parents=True)
    (p / "bottom.txt").write_bytes(b"bottom\n")
    os.symlink("../" * 3 + "level-37-" + "d" * 32, p / "up3")


def _symlinks(root: Path, bs: int) -> None:
    d = root / "links"
    d.mkdir()
    for n in sorted({1, 59, 60, 200, 1000, 1023, 2000, min(bs - 1, 4095)}):
        if n < bs:
            os.symlink(("t" * 7 + "/") * (n // 8) + "e" * (n % 8), d / f"len{n}")


def _devices(root: Path) -> None:
    d = root / "dev"
    d.mkdir()
    for name, kind, major, minor in (("null", stat.S_IFCHR, 1, 3), ("big", stat.S_IFCHR, 4095,
                                     (1 << 20) - 1), ("blk", stat.S_IFBLK, 300, 70000),
                                     ("old", stat.S_IFBLK, 8, 1), ("minor", stat.S_IFCHR, 0, 256)):
        os.mknod(d / name, kind | 0o640, os.makedev(major, minor))
    os.mkfifo(d / "fifo")


def _dates(root: Path) -> None:
    d = root / "dates"
    d.mkdir()
    for i, sec in enumerate(DATES):
        f = d / f"t{i}"
        f.write_bytes(b"when\n")
        os.utime(f, ns=(sec * NS + 123_456_789, sec * NS + 987_654_321))


def _inline_sized(root: Path, rng: random.Random) -> None:
    d = root / "small"
    d.mkdir()
    for n in (0, 1, 59, 60, 100, 150, 400):       # inline on inline_data images
        (d / f"s{n}").write_bytes(rng.randbytes(n))


# -- an encrypted image (fscrypt v2 policy, key removed afterwards) -----------------------------
_FS_IOC_SET_ENCRYPTION_POLICY = 0x800C6613
_FS_IOC_ADD_ENCRYPTION_KEY = 0xC0506617
_FS_IOC_REMOVE_ENCRYPTION_KEY = 0xC0406618


def build_encrypted(img: Path, opts: list[str]) -> Path:
    """An ``-O encrypt`` image with an encrypted directory tree (names short and past 149
    bytes, an indexed directory, fast and slow symlinks, a subdirectory) next to plain files;
    the key is gone when it is unmounted, so the kernel shows what Linux shows without it."""
    import fcntl
    import struct

    run("mke2fs", "-q", "-F", "-t", "ext4", "-O", "encrypt", *opts, str(img), "64M")
    with loop_mounted(img, readonly=False) as m:
        (m / "plain").mkdir()
        (m / "plain" / "clear.txt").write_bytes(b"not encrypted\n")
        fd = os.open(m, os.O_RDONLY)
        try:
            arg = bytearray(80 + 64)
            struct.pack_into("<II", arg, 0, 2, 0)            # key by identifier
            struct.pack_into("<II", arg, 40, 64, 0)          # 64 raw bytes
            arg[80:] = random.Random(5).randbytes(64)
            fcntl.ioctl(fd, _FS_IOC_ADD_ENCRYPTION_KEY, arg, True)
            for name, many in (("secret", 0), ("vault", 300)):
                d = m / name
                d.mkdir()
                dfd = os.open(d, os.O_RDONLY)
                try:       # v2, AES-256-XTS contents, AES-256-CTS names
                    fcntl.ioctl(dfd, _FS_IOC_SET_ENCRYPTION_POLICY,
                                struct.pack("<BBBB4s16s", 2, 1, 4, 0, bytes(4), bytes(arg[8:24])))
                finally:
                    os.close(dfd)
                (d / "hello.txt").write_bytes(b"secret data\n")
                (d / ("long-" + "n" * 200)).write_bytes(b"y" * 5000)
                (d / "sub").mkdir()
                (d / "sub" / "inner").write_bytes(b"inner")
                os.symlink("hello.txt", d / "link")
                os.symlink("a" * 300, d / "longlink")
                for i in range(many):
                    (d / f"many-{i:04d}").touch()
            rarg = bytearray(64)
            rarg[:40] = arg[:40]
            fcntl.ioctl(fd, _FS_IOC_REMOVE_ENCRYPTION_KEY, rarg, True)
        finally:
            os.close(fd)
    return img


# -- views ---------------------------------------------------------------------------------------
def _data_map(seek: Any, size: int) -> list[tuple[int, int]]:
    """[(data start, data end)] by SEEK_DATA / SEEK_HOLE."""
    out, off = [], 0
    while off < size:
        try:
            start = seek(off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                break
            raise
        end = seek(start, os.SEEK_HOLE)
        out.append((start, end))
        off = end
    return out


def _record(st: os.stat_result, xattrs: dict[str, bytes], content: Any) -> tuple:
    times = tuple(min(t, INT64_MAX) for t in (st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns))
    rdev = st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0
    size = None if stat.S_ISDIR(st.st_mode) else st.st_size
    return (st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, size, st.st_blocks,
            rdev, times, tuple(sorted(xattrs.items())), content)


def _walk(listdir: Any, lstat: Any, readfile: Any, readlink: Any, xattrs: Any,
          root: str) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        for name in listdir(root + rel):
            p = rel + "/" + name
            full = root + p
            st = lstat(full)
            if stat.S_ISDIR(st.st_mode):
                stack.append(p)
                content: Any = None
            elif stat.S_ISLNK(st.st_mode):
                content = readlink(full)
            elif stat.S_ISREG(st.st_mode):
                content = readfile(full, st.st_size)
            else:
                content = None
            out[p] = _record(st, {} if stat.S_ISLNK(st.st_mode) else xattrs(full), content)
    return out


def host_view(root: Path) -> dict[str, tuple]:
    def readfile(path: str, size: int) -> tuple | str:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:               # ENOKEY: encrypted, no key
            return errno.errorcode[e.errno]
        try:
            dmap = _data_map(lambda o, w: os.lseek(fd, o, w), size)
            return tuple(dmap), _digest(b"".join(os.pread(fd, e - s, s) for s, e in dmap))
        finally:
            os.close(fd)

    def xattrs(path: str) -> dict[str, bytes]:
        return {n: os.getxattr(path, n, follow_symlinks=False)
                for n in os.listxattr(path, follow_symlinks=False)}

    return _walk(os.listdir, os.lstat, readfile, os.readlink, xattrs, str(root))


def rump_view(k: Any, root: str) -> dict[str, tuple]:
    sys_ = k.sys

    def readfile(path: str, size: int) -> tuple | str:
        fd = sys_.open(path, os.O_RDONLY)
        try:      # Linux refuses an encrypted file at open; we have no open operation, and
            sys_.pread(fd, 1, 0)        # refuse its first read (even of an empty file)
            dmap = _data_map(lambda o, w: sys_.lseek(fd, o, w), size)
            return tuple(dmap), _digest(b"".join(sys_.pread(fd, e - s, s) for s, e in dmap))
        except OSError as e:               # ENOKEY: encrypted, no key
            return errno.errorcode[e.errno]
        finally:
            sys_.close(fd)

    def xattrs(path: str) -> dict[str, bytes]:
        return {n: sys_.getxattr(path, n, follow_symlinks=False)
                for n in sys_.listxattr(path, follow_symlinks=False)}

    return _walk(sys_.listdir, sys_.lstat, readfile, sys_.readlink, xattrs, root)


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
