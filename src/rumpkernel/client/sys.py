"""The libc-shaped system call facade: ``k.sys`` for local kernels and remote connections alike.

Calls take what the ``os`` module takes (str/bytes/PathLike paths, host ``os.O_*`` flags,
``dir_fd=``, ``follow_symlinks=``) and return what it returns (``os.stat_result``, ``bytes``,
``(r, w)``); failures raise the ``OSError`` subclass the host would (``FileNotFoundError`` ...),
with the path in ``filename``.  Underneath, each call builds the raw arguments of the master table
(caller buffers, integers) and goes through ``_call`` -- a direct kernel entry for local clients,
a sysproxy round trip for remote ones -- so both run exactly the same kernel code.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterable, Sequence
from itertools import compress
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.client.sys_stubs import SyscallStubs
from rumpkernel.kern import abi as K
from rumpkernel.kern.abi import (  # kernel values
    AT_EACCESS,
    AT_FDCWD,
    AT_REMOVEDIR,
    AT_SYMLINK_FOLLOW,
    AT_SYMLINK_NOFOLLOW,
    PATH_MAX,
    RB_HALT,
    UTIME_NOW,
    UTIME_OMIT,
    XATTR_NOFOLLOW,
)
from rumpkernel.kern.syscall import sysent as S
from rumpkernel.kern.syscall.structs import POLLFD, RLIMIT, STAT, STATVFS, TIMESPEC, iter_dirents

GETDENTS_BUFSIZE = 65536
PATH_BUF = PATH_MAX

_STAT_NAMES = STAT.names
_STATVFS_NAMES = STATVFS.names


def _p(path: Any) -> bytes:
    """Encode a path like os does (ValueError for embedded NUL, TypeError for bad types)."""
    b = path if type(path) is bytes else H.fsencode(H.fspath(path))
    if b"\0" in b:
        raise ValueError("embedded null byte")
    return b


def _dirfd(dir_fd: int | None) -> int:
    return AT_FDCWD if dir_fd is None else dir_fd


def _named(e: OSError, *names: Any) -> OSError:
    if not names:
        return e
    try:
        names = tuple(H.fspath(n) for n in names)
    except TypeError:
        pass
    if len(names) == 1:
        return OSError(e.errno, e.strerror, names[0])
    return OSError(e.errno, e.strerror, names[0], None, names[1])


def decode_stat(buf: bytes | bytearray) -> Any:
    return H.make_stat_result(dict(zip(_STAT_NAMES, STAT.unpack(buf))))


SCRATCH_MIN = 65536


class Sys(SyscallStubs):
    __slots__ = ("_after_reboot", "_call", "_pollreq", "_scratch")

    def __init__(self, call: Callable[[int, tuple[Any, ...]], Any],
                 after_reboot: Callable[[int], None] | None = None) -> None:
        self._call = call  # type: ignore[misc]
        self._after_reboot = after_reboot
        self._scratch: list[bytearray] = []   # large read buffers, reused (list ops are atomic)
        self._pollreq: tuple[tuple[Any, ...], bytes] | None = None   # the last poll's request

    # ---- processes and credentials --------------------------------------------------------
    def getpid(self) -> int:
        return self._call(S.SYS_getpid, ())

    def getppid(self) -> int:
        return self._call(S.SYS_getppid, ())

    def getuid(self) -> int:
        return self._call(S.SYS_getuid, ())

    def geteuid(self) -> int:
        return self._call(S.SYS_geteuid, ())

    def getgid(self) -> int:
        return self._call(S.SYS_getgid, ())

    def getegid(self) -> int:
        return self._call(S.SYS_getegid, ())

    def setuid(self, uid: int) -> None:
        self.sys_setuid(uid)

    def setgid(self, gid: int) -> None:
        self.sys_setgid(gid)

    def seteuid(self, uid: int) -> None:
        self.sys_seteuid(uid)

    def setegid(self, gid: int) -> None:
        self.sys_setegid(gid)

    def getgroups(self) -> list[int]:
        n = self.sys_getgroups(0, None)
        buf = bytearray(4 * max(n, 1))
        n = self.sys_getgroups(max(n, 1), buf)
        return list(struct.unpack_from(f"<{n}I", buf))

    def setgroups(self, groups: Sequence[int]) -> None:
        self.sys_setgroups(len(groups), struct.pack(f"<{len(groups)}I", *groups))

    def umask(self, mask: int) -> int:
        return self.sys_umask(mask)

    def getrlimit(self, resource: int) -> tuple[int, int]:
        """Like ``resource.getrlimit``: (soft, hard).  Only ``resource.RLIMIT_NOFILE``."""
        buf = bytearray(RLIMIT.size)
        self.sys_getrlimit(H.rlimit_to_kernel(resource), buf)
        return RLIMIT.unpack(buf)  # type: ignore[return-value]

    def setrlimit(self, resource: int, limits: tuple[int, int]) -> None:
        """Like ``resource.setrlimit``; the descriptor limit goes up to 65,536."""
        soft, hard = (min(v, K.RLIM_INFINITY) if v >= 0 else K.RLIM_INFINITY for v in limits)
        self.sys_setrlimit(H.rlimit_to_kernel(resource), RLIMIT.pack(soft, hard))

    # ---- descriptors ------------------------------------------------------------------------
    def pipe(self) -> tuple[int, int]:
        return tuple(self.sys_pipe2(0))  # type: ignore[return-value]

    def pipe2(self, flags: int) -> tuple[int, int]:
        return tuple(self.sys_pipe2(H.open_flags_to_kernel(flags)))  # type: ignore[return-value]

    def read(self, fd: int, n: int) -> bytes:
        if n < SCRATCH_MIN:
            buf = bytearray(n)
            got = self._call(S.SYS_read, (fd, buf, n))
            return bytes(buf) if got == n else bytes(buf[:got])
        try:
            buf = self._scratch.pop()
            if len(buf) < n:
                buf = bytearray(n)
        except IndexError:
            buf = bytearray(n)
        try:
            got = self._call(S.SYS_read, (fd, memoryview(buf)[:n], n))
            return bytes(memoryview(buf)[:got])
        finally:
            if len(self._scratch) < 4:
                self._scratch.append(buf)

    def readinto(self, fd: int, buf: Any) -> int:
        return self._call(S.SYS_read, (fd, buf, memoryview(buf).nbytes))

    def write(self, fd: int, data: Any) -> int:
        n = len(data) if type(data) is bytes else memoryview(data).nbytes
        return self._call(S.SYS_write, (fd, data, n))

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        buf = bytearray(n)
        got = self.sys_pread(fd, buf, n, offset)
        return bytes(buf[:got])

    def pwrite(self, fd: int, data: Any, offset: int) -> int:
        return self.sys_pwrite(fd, data, memoryview(data).nbytes, offset)

    def readv(self, fd: int, buffers: Sequence[Any]) -> int:
        return self.sys_readv(fd, [(b, memoryview(b).nbytes) for b in buffers])

    def writev(self, fd: int, buffers: Sequence[Any]) -> int:
        return self.sys_writev(fd, [(b, memoryview(b).nbytes) for b in buffers])

    def close(self, fd: int) -> None:
        self._call(S.SYS_close, (fd,))

    def dup(self, fd: int) -> int:
        return self.sys_dup(fd)

    def dup2(self, fd: int, fd2: int, inheritable: bool = True) -> int:
        return self.sys_dup3(fd, fd2, 0 if inheritable else K.O_CLOEXEC)

    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        kcmd = H.fcntl_cmd_to_kernel(cmd)
        if kcmd == K.F_SETFL:
            return self.sys_fcntl(fd, kcmd, H.open_flags_to_kernel(arg))
        if kcmd == K.F_GETFL:
            return H.open_flags_to_host(self.sys_fcntl(fd, kcmd, 0))
        return self.sys_fcntl(fd, kcmd, arg)

    def set_blocking(self, fd: int, blocking: bool) -> None:
        flags = self.sys_fcntl(fd, K.F_GETFL, 0)
        flags = flags & ~K.O_NONBLOCK if blocking else flags | K.O_NONBLOCK
        self.sys_fcntl(fd, K.F_SETFL, flags)

    def poll(self, fds: Iterable[tuple[int, int]], timeout_ms: int = -1) -> list[tuple[int, int]]:
        """Like select.poll().poll with registered (fd, events): returns [(fd, revents)]."""
        key = tuple(fds)
        cached = self._pollreq
        if cached is not None and cached[0] == key:
            packed = cached[1]
        else:            # event loops poll the same set again and again: pack it once
            to_k = H.poll_to_kernel
            packed = b"".join([POLLFD.pack(fd, to_k(ev), 0) for fd, ev in key])
            self._pollreq = (key, packed)
        buf = bytearray(packed)
        n = self.sys_poll(buf, len(key), -1 if timeout_ms is None else int(timeout_ms))
        if not n:
            return []
        always = H.POLLERR | H.POLLHUP | H.POLLNVAL
        revs = memoryview(buf).cast("h")[3::4]
        out = []
        for i in compress(range(len(key)), revs):
            fd, ev = key[i]
            out.append((fd, H.poll_to_host(revs[i]) & (ev | always)))
        return out

    def lseek(self, fd: int, pos: int, how: int) -> int:
        return self.sys_lseek(fd, pos, H.seek_to_kernel(how))

    def fstat(self, fd: int) -> Any:
        buf = bytearray(STAT.size)
        self.sys_fstat(fd, buf)
        return decode_stat(buf)

    # ---- time and system ----------------------------------------------------------------------
    def nanosleep(self, seconds: float) -> None:
        ns = int(seconds * 1e9)
        if ns < 0:
            raise ValueError("sleep length must be non-negative")
        self.sys_nanosleep(TIMESPEC.pack(*divmod(ns, 10**9)), None)

    sleep = nanosleep

    def clock_gettime_ns(self, clk: int) -> int:
        buf = bytearray(TIMESPEC.size)
        self.sys_clock_gettime(H.clock_to_kernel(clk), buf)
        sec, nsec = TIMESPEC.unpack(buf)
        return sec * 10**9 + nsec

    def clock_gettime(self, clk: int) -> float:
        return self.clock_gettime_ns(clk) / 1e9

    def sysctl(self, name: str, value: int | str | None = None) -> int | str:
        """Read a node by dotted name (``kern.hostname``); with ``value``, write it.  Returns the
        old value."""
        new: bytes | None = None
        if value is not None:
            new = value.to_bytes(8, "little", signed=True) if isinstance(value, int) \
                else value.encode()
        size = 256
        while True:
            buf = bytearray(size)
            try:
                n, typ = self.sys_sysctl(name.encode(), buf, len(buf), new, len(new or b""))
                break
            except OSError as e:
                if e.errno != errno.ENOMEM or size >= 1 << 20:
                    raise
                size *= 16    # a long string node: ask again with room for it
        raw = bytes(buf[:n])
        return int.from_bytes(raw, "little", signed=True) if typ == 1 else raw.decode()

    def sysctl_names(self, prefix: str = "") -> list[str]:
        """Every sysctl node name starting with ``prefix`` (sorted)."""
        pre = prefix.encode()
        while True:
            n = self.sys_sysctlnames(pre, None, 0)
            buf = bytearray(max(n, 1))
            try:
                n = self.sys_sysctlnames(pre, buf, len(buf)) if n else 0
            except OSError as e:
                if e.errno == errno.ERANGE:  # nodes appeared in between: ask again
                    continue
                raise
            return [x.decode() for x in bytes(buf[:n]).split(b"\0") if x]

    def reboot(self, howto: int = RB_HALT) -> None:
        self.sys_reboot(howto)
        if self._after_reboot is not None:
            self._after_reboot(howto)

    # ---- files ------------------------------------------------------------------------------
    def open(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        try:
            return self._call(S.SYS_openat, (_dirfd(dir_fd), _p(path),
                                             H.open_flags_to_kernel(flags), mode))
        except OSError as e:
            raise _named(e, path) from None

    def stat(self, path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> Any:
        if isinstance(path, int):
            return self.fstat(path)
        buf = bytearray(STAT.size)
        flag = 0 if follow_symlinks else AT_SYMLINK_NOFOLLOW
        try:
            self._call(S.SYS_fstatat, (_dirfd(dir_fd), _p(path), buf, flag))
        except OSError as e:
            raise _named(e, path) from None
        return decode_stat(buf)

    def lstat(self, path: Any, *, dir_fd: int | None = None) -> Any:
        return self.stat(path, dir_fd=dir_fd, follow_symlinks=False)

    def access(self, path: Any, mode: int, *, dir_fd: int | None = None,
               effective_ids: bool = False, follow_symlinks: bool = True) -> bool:
        flag = (AT_EACCESS if effective_ids else 0) | (0 if follow_symlinks
                                                       else AT_SYMLINK_NOFOLLOW)
        try:
            self.sys_faccessat(_dirfd(dir_fd), _p(path), H.access_to_kernel(mode), flag)
        except OSError:
            return False
        return True

    def mkdir(self, path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        try:
            self.sys_mkdirat(_dirfd(dir_fd), _p(path), mode)
        except OSError as e:
            raise _named(e, path) from None

    def rmdir(self, path: Any, *, dir_fd: int | None = None) -> None:
        try:
            self.sys_unlinkat(_dirfd(dir_fd), _p(path), AT_REMOVEDIR)
        except OSError as e:
            raise _named(e, path) from None

    def unlink(self, path: Any, *, dir_fd: int | None = None) -> None:
        try:
            self.sys_unlinkat(_dirfd(dir_fd), _p(path), 0)
        except OSError as e:
            raise _named(e, path) from None

    remove = unlink

    def rename(self, src: Any, dst: Any, *, src_dir_fd: int | None = None,
               dst_dir_fd: int | None = None) -> None:
        try:
            self.sys_renameat(_dirfd(src_dir_fd), _p(src), _dirfd(dst_dir_fd), _p(dst))
        except OSError as e:
            raise _named(e, src, dst) from None

    replace = rename

    def link(self, src: Any, dst: Any, *, src_dir_fd: int | None = None,
             dst_dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
        try:
            self.sys_linkat(_dirfd(src_dir_fd), _p(src), _dirfd(dst_dir_fd), _p(dst),
                            AT_SYMLINK_FOLLOW if follow_symlinks else 0)
        except OSError as e:
            raise _named(e, src, dst) from None

    def symlink(self, src: Any, dst: Any, target_is_directory: bool = False, *,
                dir_fd: int | None = None) -> None:
        try:
            self.sys_symlinkat(_p(src), _dirfd(dir_fd), _p(dst))
        except OSError as e:
            raise _named(e, src, dst) from None

    def readlink(self, path: Any, *, dir_fd: int | None = None) -> Any:
        buf = bytearray(PATH_BUF)
        try:
            n = self.sys_readlinkat(_dirfd(dir_fd), _p(path), buf, len(buf))
        except OSError as e:
            raise _named(e, path) from None
        raw = bytes(buf[:n])
        return raw if isinstance(H.fspath(path), bytes) else H.fsdecode(raw)

    def chmod(self, path: Any, mode: int, *, dir_fd: int | None = None,
              follow_symlinks: bool = True) -> None:
        if isinstance(path, int):
            return self.fchmod(path, mode)
        try:
            self.sys_fchmodat(_dirfd(dir_fd), _p(path), mode,
                              0 if follow_symlinks else AT_SYMLINK_NOFOLLOW)
        except OSError as e:
            raise _named(e, path) from None
        return None

    def lchmod(self, path: Any, mode: int) -> None:
        self.chmod(path, mode, follow_symlinks=False)

    def fchmod(self, fd: int, mode: int) -> None:
        self.sys_fchmod(fd, mode)

    def chown(self, path: Any, uid: int, gid: int, *, dir_fd: int | None = None,
              follow_symlinks: bool = True) -> None:
        if isinstance(path, int):
            return self.fchown(path, uid, gid)
        try:
            self.sys_fchownat(_dirfd(dir_fd), _p(path), uid, gid,
                              0 if follow_symlinks else AT_SYMLINK_NOFOLLOW)
        except OSError as e:
            raise _named(e, path) from None
        return None

    def lchown(self, path: Any, uid: int, gid: int) -> None:
        self.chown(path, uid, gid, follow_symlinks=False)

    def fchown(self, fd: int, uid: int, gid: int) -> None:
        self.sys_fchown(fd, uid, gid)

    @staticmethod
    def _times(times: tuple[float, float] | None, ns: tuple[int, int] | None) -> bytes | None:
        if times is not None and ns is not None:
            raise ValueError("utime: you may specify either 'times' or 'ns' but not both")
        if times is not None:
            ns = (int(times[0] * 1e9), int(times[1] * 1e9))
        if ns is None:
            return None
        return b"".join(TIMESPEC.pack(*divmod(t, 10**9)) if t not in (UTIME_NOW, UTIME_OMIT)
                        else TIMESPEC.pack(0, t) for t in ns)

    def utime(self, path: Any, times: tuple[float, float] | None = None, *,
              ns: tuple[int, int] | None = None, dir_fd: int | None = None,
              follow_symlinks: bool = True) -> None:
        raw = self._times(times, ns)
        if isinstance(path, int):
            self.sys_futimens(path, raw)
            return
        try:
            self.sys_utimensat(_dirfd(dir_fd), _p(path), raw,
                               0 if follow_symlinks else AT_SYMLINK_NOFOLLOW)
        except OSError as e:
            raise _named(e, path) from None

    def futimens(self, fd: int, ns: tuple[int, int] | None = None) -> None:
        self.sys_futimens(fd, self._times(None, ns))

    def truncate(self, path: Any, length: int) -> None:
        if isinstance(path, int):
            return self.ftruncate(path, length)
        try:
            self.sys_truncate(_p(path), length)
        except OSError as e:
            raise _named(e, path) from None
        return None

    def ftruncate(self, fd: int, length: int) -> None:
        self.sys_ftruncate(fd, length)

    def fsync(self, fd: int) -> None:
        self.sys_fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self.sys_fdatasync(fd)

    def sync(self) -> None:
        self.sys_sync()

    def getdents(
        self, fd: int, bufsize: int = GETDENTS_BUFSIZE
    ) -> list[tuple[bytes, int, int, int]]:
        """One batch of (name, ino, dtype, next_offset); an empty list at the end."""
        buf = bytearray(bufsize)
        n = self.sys_getdents(fd, buf, bufsize)
        return [(name, ino, dtype, off) for ino, off, dtype, name in iter_dirents(buf[:n])]

    def listdir(self, path: Any = ".") -> list[Any]:
        as_bytes = isinstance(path, bytes)
        fd = self.open(path, H.open_flags_to_host(K.O_RDONLY | K.O_DIRECTORY))
        try:
            names: list[Any] = []
            while True:
                batch = self.getdents(fd)
                if not batch:
                    break
                for name, _ino, _t, _off in batch:
                    if name not in (b".", b".."):
                        names.append(name if as_bytes else H.fsdecode(name))
            return names
        finally:
            self.close(fd)

    def chdir(self, path: Any) -> None:
        if isinstance(path, int):
            self.sys_fchdir(path)
            return
        try:
            self.sys_chdir(_p(path))
        except OSError as e:
            raise _named(e, path) from None

    def fchdir(self, fd: int) -> None:
        self.sys_fchdir(fd)

    def chroot(self, path: Any) -> None:
        try:
            self.sys_chroot(_p(path))
        except OSError as e:
            raise _named(e, path) from None

    def getcwdb(self) -> bytes:
        buf = bytearray(PATH_BUF)
        n = self.sys_getcwd(buf, len(buf))
        return bytes(buf[:n])

    def getcwd(self) -> str:
        return H.fsdecode(self.getcwdb())

    def mknod(self, path: Any, mode: int = 0o600, device: int = 0, *,
              dir_fd: int | None = None) -> None:
        try:
            self.sys_mknodat(_dirfd(dir_fd), _p(path), mode, device)
        except OSError as e:
            raise _named(e, path) from None

    def mkfifo(self, path: Any, mode: int = 0o666, *, dir_fd: int | None = None) -> None:
        self.mknod(path, (mode & 0o7777) | 0o010000, 0, dir_fd=dir_fd)

    def statvfs(self, path: Any) -> Any:
        buf = bytearray(STATVFS.size)
        if isinstance(path, int):
            self.sys_fstatvfs(path, buf)
        else:
            try:
                self.sys_statvfs(_p(path), buf)
            except OSError as e:
                raise _named(e, path) from None
        return H.make_statvfs_result(dict(zip(_STATVFS_NAMES, STATVFS.unpack(buf))))

    def fstatvfs(self, fd: int) -> Any:
        return self.statvfs(fd)

    def fsinfo(self, path: Any) -> dict[str, Any]:
        """Facts about the file system holding ``path``: ``fstype``, ``source`` (the device),
        ``readonly``, ``options``, ``mount_id`` and ``info`` (the driver's own: label, UUID,
        features, sizes...).  ENOENT, ENOTDIR."""
        try:
            for _ in range(4):
                n = self.sys_fsinfo(_p(path), None, 0)
                buf = bytearray(n)
                try:
                    n = self.sys_fsinfo(_p(path), buf, n)
                    break
                except OSError as e:
                    if e.errno != errno.ERANGE:
                        raise
        except OSError as e:
            raise _named(e, path) from None
        import json

        return json.loads(bytes(buf[:n]).decode())

    def mount(self, fstype: str, target: Any, flags: int = 0,
              data: str | dict[str, Any] | None = None) -> None:
        """Mount ``fstype`` on ``target``.  ``data`` holds options, as ``"ro,uid=5"`` or a dict;
        a device is given as ``from=/dev/xxx``.  MNT_RDONLY is 1."""
        if isinstance(data, dict):
            data = ",".join(k if v is True else f"{k}={v}" for k, v in data.items()
                            if v is not False and v is not None)
        raw = (data or "").encode()
        try:
            self.sys_mount(fstype.encode(), _p(target), flags, raw, len(raw))
        except OSError as e:
            raise _named(e, target) from None

    def unmount(self, target: Any, flags: int = 0) -> None:
        try:
            self.sys_unmount(_p(target), flags)
        except OSError as e:
            raise _named(e, target) from None

    umount = unmount

    # ---- extended attributes -------------------------------------------------------------------
    def getxattr(self, path: Any, attribute: Any, *, follow_symlinks: bool = True) -> bytes:
        flag = 0 if follow_symlinks else XATTR_NOFOLLOW
        try:
            n = self.sys_getxattr(_p(path), _p(attribute), None, 0, flag)
            buf = bytearray(n)
            n = self.sys_getxattr(_p(path), _p(attribute), buf, n, flag)
        except OSError as e:
            raise _named(e, path) from None
        return bytes(buf[:n])

    def setxattr(self, path: Any, attribute: Any, value: bytes, flags: int = 0, *,
                 follow_symlinks: bool = True) -> None:
        flag = flags | (0 if follow_symlinks else XATTR_NOFOLLOW)
        try:
            self.sys_setxattr(_p(path), _p(attribute), value, len(value), flag)
        except OSError as e:
            raise _named(e, path) from None

    def listxattr(self, path: Any, *, follow_symlinks: bool = True) -> list[str]:
        flag = 0 if follow_symlinks else XATTR_NOFOLLOW
        try:
            n = self.sys_listxattr(_p(path), None, 0, flag)
            buf = bytearray(n)
            n = self.sys_listxattr(_p(path), buf, n, flag) if n else 0
        except OSError as e:
            raise _named(e, path) from None
        return [H.fsdecode(x) for x in bytes(buf[:n]).split(b"\0") if x]

    def removexattr(self, path: Any, attribute: Any, *, follow_symlinks: bool = True) -> None:
        try:
            self.sys_removexattr(_p(path), _p(attribute),
                                 0 if follow_symlinks else XATTR_NOFOLLOW)
        except OSError as e:
            raise _named(e, path) from None
