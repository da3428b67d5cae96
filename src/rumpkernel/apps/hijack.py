"""rumphijack for Python programs: run an unmodified program with its file system and network
calls routed to a rump kernel by policy (the dissertation's librumphijack, section 3.12.6).

    python -m rumpkernel.hijack [-p POLICY] [-u URL | --local | --sockin] script.py args...
    python -m rumpkernel.hijack [-p POLICY] [-u URL | --local | --sockin] -m module args...

POLICY (default ``$RUMPHIJACK``, else ``path=/rump,socket=all:nolocal``) is the dissertation's
comma-separated ``name=value`` list:

    path=PREFIX        paths under PREFIX go to the kernel with the prefix stripped
                       (``/rump/etc/x`` -> kernel ``/etc/x``); ``..`` never leaves the kernel
    blanket=P1:P2      paths starting with these go to the kernel unstripped
    socket=FAMILIES    sockets of these families are the kernel's: a colon list (``inet:inet6``)
                       or ``all`` followed by exclusions (``all:nolocal``); families: inet,
                       inet6, local (unix), and the host's other AF_* names in lower case
    fdoff=N            kernel descriptors appear to the program as N + kernel fd (default 128);
                       a host open() or socket that gets a descriptor >= N fails with ENFILE
    vfs=, sysctl=      accepted for compatibility; nothing is routed by them
An empty policy hijacks nothing.  The server is ``-u URL`` or ``$RUMP_SERVER`` (reconnect policy
``$RUMPHIJACK_RETRYCONNECT``); ``--local`` boots a kernel inside the process instead (halted,
and so flushed, when the program ends) and ``--sockin`` does the same with sockin in place of
the kernel's own TCP/IP (the program's sockets then reach the host's network through the
kernel).  With ``--local``, ``--image IMG[,TYPE][,ro]`` mounts a disk image (``IMG``,
``IMG%N``, ``IMG@OFFSET``) as the root of the kernel's name space (so ``/rump/etc/x`` is the
image's ``/etc/x``), and ``-d key=K,hostpath=P[,size=S][,offset=N][,type=blk|chr|reg]``
registers host files as rump_server's ``-d`` does.  A missing server, image or script is one
line on stderr and exit status 1.

Intercepted: ``builtins.open``, ``io.open`` (so ``os.fdopen``, ``pathlib``, and modules that
kept a reference to it, such as bz2's ``_builtin_open``), and in ``os``:
open close closerange read write pread pwrite readv writev lseek fstat stat lstat access mkdir
makedirs (via mkdir) rmdir unlink remove rename replace link symlink readlink chmod fchmod chown
fchown lchown utime truncate ftruncate fsync fdatasync listdir scandir walk (via scandir) chdir
fchdir getcwd getcwdb dup dup2 statvfs fstatvfs mknod mkfifo get/set_blocking
get/set_inheritable isatty sendfile device_encoding getxattr setxattr listxattr removexattr; and
``fcntl.fcntl`` on kernel descriptors.  ``shutil`` works through these.  Relative paths follow
the working directory: after ``os.chdir("/rump/d")`` they go to the kernel, and ``os.getcwd()``
says ``/rump/d``.  With ``socket=``: ``socket.socket`` and the socket module's socketpair, fromfd,
dup and close, and ``select.select``/``poll``/``epoll`` with the selectors built on them (so
socketserver, http.server, urllib and asyncio); see ``apps/hijack_net.py`` and docs/hijack.md.

Not intercepted (they act on the host only): mmap, subprocess/exec (children are not hijacked),
name resolution (getaddrinfo asks the host), TLS on kernel sockets (refused), ``dup2`` between
a kernel and a host descriptor (EXDEV; there is no dup2 alias table), C extensions that call
libc directly, ``os.open`` of a kernel path with a host ``dir_fd`` and vice versa (routed by the
path when it is absolute).  ``os.fork`` works remotely: the client library gives the child its
own kernel process.
"""

from __future__ import annotations

import argparse
import builtins
import errno
import io
import os
import runpy
import sys
from typing import Any

from rumpkernel.apps.hijack_io import RumpFileIO, RumpScandir, mode_flags, wrap

DEFAULT_POLICY = "path=/rump,socket=all:nolocal"


class Policy:
    def __init__(self, text: str) -> None:
        self.path: str | None = None
        self.blanket: list[str] = []
        self.fdoff = 128
        self.sockets: tuple[bool, frozenset[int]] | None = None   # (all but?, families)
        self.other: dict[str, str] = {}
        for item in filter(None, (x.strip() for x in text.split(","))):
            name, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"RUMPHIJACK: {item!r} is not name=value")
            if name == "path":
                if not value.startswith("/") or value == "/":
                    raise ValueError("RUMPHIJACK: path= must be an absolute prefix, not /")
                self.path = value.rstrip("/")
            elif name == "blanket":
                self.blanket = [b for b in value.split(":") if b]
            elif name == "fdoff":
                self.fdoff = int(value)
                if not 3 <= self.fdoff <= 1 << 20:
                    raise ValueError("RUMPHIJACK: fdoff out of range")
            elif name == "socket":
                from rumpkernel.apps.hijack_net import parse_families

                every, fams = parse_families(value)
                self.sockets = (every, fams) if every or fams else None
            elif name in ("vfs", "sysctl"):
                self.other[name] = value
            else:
                raise ValueError(f"RUMPHIJACK: unknown setting {name!r}")


def _fix_name(e: OSError, *names: Any) -> OSError:
    e.filename = names[0] if names else None
    if len(names) > 1:
        e.filename2 = names[1]
    return e


class Hijack:
    """Routes one program's file system calls between the host and a kernel's ``sys``."""

    def __init__(self, ksys: Any, policy: Policy) -> None:
        self.k = ksys
        self.policy = policy
        self.off = policy.fdoff
        self.in_kernel_cwd = False
        self.kcwd_shown = ""
        self.saved: dict[tuple[Any, str], Any] = {}
        self.real = {n: getattr(os, n) for n in dir(os) if callable(getattr(os, n))}
        self.real_open = io.open
        self.net: Any = None

    # ---- routing ----
    def is_k(self, fd: Any) -> bool:
        return type(fd) is int and fd >= self.off

    def route(self, path: Any, dir_fd: int | None = None) -> tuple[bool, Any, int | None]:
        """(to the kernel?, the path to use there, the kernel dir_fd)."""
        p = os.fspath(path)
        b = isinstance(p, bytes)
        sep = b"/" if b else "/"
        if p.startswith(sep):
            pre = self.policy.path
            if pre is not None:
                bpre = os.fsencode(pre) if b else pre
                if p == bpre or p.startswith(bpre + sep):
                    return True, p[len(bpre):] or sep, None
            for bl in self.policy.blanket:
                if p.startswith(os.fsencode(bl) if b else bl):
                    return True, p, None
            return False, p, None
        if dir_fd is not None:
            if self.is_k(dir_fd):
                return True, p, dir_fd - self.off
            return False, p, dir_fd
        return self.in_kernel_cwd, p, None

    # ---- install ----
    def _set(self, obj: Any, name: str, fn: Any) -> None:
        if isinstance(obj, type) and name in vars(obj):
            self.saved[(obj, name)] = vars(obj)[name]      # the descriptor (a classmethod)
        else:
            self.saved[(obj, name)] = getattr(obj, name)
        setattr(obj, name, fn)

    def install(self) -> None:
        pol = self.policy
        if pol.path is None and not pol.blanket and pol.sockets is None:
            return
        for name in PATH_CALLS:
            if name in self.real:
                self._set(os, name, self._path_call(name))
        for name in FD_CALLS:
            if name in self.real:
                self._set(os, name, self._fd_call(name))
        for name, fn in self._specials().items():
            if hasattr(os, name):
                self._set(os, name, fn)
        self._set(io, "open", self.open)
        self._set(builtins, "open", self.open)
        # modules imported earlier that keep their own reference (bz2 and lzma do
        # ``from builtins import open as _builtin_open``)
        for mod in list(sys.modules.values()):
            if mod is None or mod in (io, builtins) or getattr(mod, "__name__", "") == "_io":
                continue
            for attr, value in list(getattr(mod, "__dict__", {}).items()):
                if value is self.real_open:
                    self._set(mod, attr, self.open)
        try:
            import fcntl
            self._set(fcntl, "fcntl", self._fcntl(fcntl.fcntl))
        except ImportError:  # pragma: no cover - non-POSIX host
            pass
        for s in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks,
                  os.supports_effective_ids):
            for (obj, name), old in self.saved.items():
                if obj is os and old in s:
                    s.add(getattr(os, name))
        if pol.sockets is not None:
            from rumpkernel.apps.hijack_net import NetHijack

            self.net = NetHijack(self, *pol.sockets)
            self.net.install()

    def uninstall(self) -> None:
        if self.net is not None:
            self.net.uninstall()
            self.net = None
        for (obj, name), old in reversed(list(self.saved.items())):
            setattr(obj, name, old)
        self.saved.clear()

    # ---- generic wrappers ----
    def _path_call(self, name: str) -> Any:
        real = self.real[name]
        kfn = getattr(self.k, name)

        def call(path: Any, *args: Any, **kw: Any) -> Any:
            if isinstance(path, int):
                if self.is_k(path):
                    return kfn(path - self.off, *args, **kw)
                return real(path, *args, **kw)
            kernel, kpath, kdir = self.route(path, kw.get("dir_fd"))
            if not kernel:
                return real(path, *args, **kw)
            if "dir_fd" in kw:
                kw["dir_fd"] = kdir
            try:
                return kfn(kpath, *args, **kw)
            except OSError as e:
                raise _fix_name(e, path) from None

        call.__name__ = call.__qualname__ = name
        return call

    def _fd_call(self, name: str) -> Any:
        real = self.real[name]
        kfn = getattr(self.k, name)

        def call(fd: Any, *args: Any, **kw: Any) -> Any:
            if self.is_k(fd):
                return kfn(fd - self.off, *args, **kw)
            return real(fd, *args, **kw)

        call.__name__ = call.__qualname__ = name
        return call

    def _two_paths(self, name: str) -> Any:
        real = self.real[name]
        kfn = getattr(self.k, name)

        def call(src: Any, dst: Any, *args: Any, **kw: Any) -> Any:
            ks, kp1, kd1 = self.route(src, kw.get("src_dir_fd"))
            kd, kp2, kd2 = self.route(dst, kw.get("dst_dir_fd"))
            if not ks and not kd:
                return real(src, dst, *args, **kw)
            if ks != kd:
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src, None, dst)
            for key, v in (("src_dir_fd", kd1), ("dst_dir_fd", kd2)):
                if key in kw:
                    kw[key] = v
            try:
                return kfn(kp1, kp2, *args, **kw)
            except OSError as e:
                raise _fix_name(e, src, dst) from None

        call.__name__ = call.__qualname__ = name
        return call

    # ---- the calls that need more than routing ----
    def _specials(self) -> dict[str, Any]:
        return {
            "open": self.os_open, "close": self.close, "closerange": self.closerange,
            "dup": self.dup, "dup2": self.dup2, "listdir": self.listdir,
            "scandir": self.scandir, "chdir": self.chdir, "fchdir": self.fchdir,
            "getcwd": self.getcwd, "getcwdb": self.getcwdb, "sendfile": self.sendfile,
            "isatty": self.isatty, "device_encoding": self.device_encoding,
            "get_blocking": self.get_blocking, "set_blocking": self.set_blocking,
            "get_inheritable": self.get_inheritable, "set_inheritable": self.set_inheritable,
            "rename": self._two_paths("rename"), "replace": self._two_paths("replace"),
            "link": self._two_paths("link"), "symlink": self.symlink,
        }

    def os_open(self, path: Any, flags: int, mode: int = 0o777, *,
                dir_fd: int | None = None) -> int:
        kernel, kpath, kdir = self.route(path, dir_fd)
        if not kernel:
            fd = self.real["open"](path, flags, mode, dir_fd=dir_fd)
            if fd >= self.off:
                self.real["close"](fd)
                raise OSError(errno.ENFILE, "host descriptor collides with the kernel's range",
                              path)
            return fd
        try:
            return self.k.open(kpath, flags, mode, dir_fd=kdir) + self.off
        except OSError as e:
            raise _fix_name(e, path) from None

    def close(self, fd: int) -> None:
        if self.is_k(fd):
            self.k.close(fd - self.off)
        else:
            self.real["close"](fd)

    def closerange(self, lo: int, hi: int) -> None:
        self.real["closerange"](lo, min(hi, self.off))
        for fd in range(max(lo, self.off), min(hi, self.off + 1024)):
            try:
                self.k.close(fd - self.off)
            except OSError:
                pass

    def dup(self, fd: int) -> int:
        if self.is_k(fd):
            return self.k.dup(fd - self.off) + self.off
        return self.real["dup"](fd)

    def dup2(self, fd: int, fd2: int, inheritable: bool = True) -> int:
        a, b = self.is_k(fd), self.is_k(fd2)
        if a and b:
            return self.k.dup2(fd - self.off, fd2 - self.off, inheritable) + self.off
        if a or b:
            raise OSError(errno.EXDEV, "dup2 between a kernel and a host descriptor")
        return self.real["dup2"](fd, fd2, inheritable)

    def _klistdir(self, kfd: int) -> list[bytes]:
        self.k.lseek(kfd, 0, os.SEEK_SET)
        names = []
        while True:
            batch = self.k.getdents(kfd)
            if not batch:
                return names
            names += [n for n, *_ in batch if n not in (b".", b"..")]

    def listdir(self, path: Any = ".") -> list[Any]:
        if isinstance(path, int):
            if self.is_k(path):
                return [os.fsdecode(n) for n in self._klistdir(path - self.off)]
            return self.real["listdir"](path)
        kernel, kpath, _ = self.route(path)
        if not kernel:
            return self.real["listdir"](path)
        try:
            return self.k.listdir(kpath)
        except OSError as e:
            raise _fix_name(e, path) from None

    def scandir(self, path: Any = ".") -> Any:
        if isinstance(path, int):
            if self.is_k(path):
                return RumpScandir(self.k, path - self.off, ".", ".", by_fd=True)
            return self.real["scandir"](path)
        kernel, kpath, _ = self.route(path)
        if not kernel:
            return self.real["scandir"](path)
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
        try:
            kfd = self.k.open(kpath, flags)
        except OSError as e:
            raise _fix_name(e, path) from None
        return RumpScandir(self.k, kfd, os.fspath(path), kpath, by_fd=False)

    def chdir(self, path: Any) -> None:
        if isinstance(path, int):
            return self.fchdir(path)
        kernel, kpath, _ = self.route(path)
        if not kernel:
            self.real["chdir"](path)
            self.in_kernel_cwd = False
            return None
        try:
            self.k.chdir(kpath)
        except OSError as e:
            raise _fix_name(e, path) from None
        self.in_kernel_cwd = True
        return None

    def fchdir(self, fd: int) -> None:
        if self.is_k(fd):
            self.k.fchdir(fd - self.off)
            self.in_kernel_cwd = True
        else:
            self.real["fchdir"](fd)
            self.in_kernel_cwd = False

    def getcwd(self) -> str:
        if not self.in_kernel_cwd:
            return self.real["getcwd"]()
        kcwd = self.k.getcwd()
        pre = self.policy.path
        if pre is None or any(kcwd.startswith(b) for b in self.policy.blanket):
            return kcwd
        return pre if kcwd == "/" else pre + kcwd

    def getcwdb(self) -> bytes:
        return os.fsencode(self.getcwd())

    def symlink(self, src: Any, dst: Any, target_is_directory: bool = False, *,
                dir_fd: int | None = None) -> None:
        kernel, kpath, kdir = self.route(dst, dir_fd)
        if not kernel:
            return self.real["symlink"](src, dst, target_is_directory, dir_fd=dir_fd)
        try:
            self.k.symlink(src, kpath, dir_fd=kdir)
        except OSError as e:
            raise _fix_name(e, src, dst) from None
        return None

    def sendfile(self, out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        if not (self.is_k(out_fd) or self.is_k(in_fd)):
            return self.real["sendfile"](out_fd, in_fd, offset, count)
        count = min(count, 1 << 20)
        data = os.pread(in_fd, count, offset) if offset is not None else os.read(in_fd, count)
        return os.write(out_fd, data) if data else 0

    def isatty(self, fd: int) -> bool:
        return False if self.is_k(fd) else self.real["isatty"](fd)

    def device_encoding(self, fd: int) -> Any:
        return None if self.is_k(fd) else self.real["device_encoding"](fd)

    def get_blocking(self, fd: int) -> bool:
        if self.is_k(fd):
            return not self.k.fcntl(fd - self.off, _F_GETFL) & os.O_NONBLOCK
        return self.real["get_blocking"](fd)

    def set_blocking(self, fd: int, blocking: bool) -> None:
        if self.is_k(fd):
            self.k.set_blocking(fd - self.off, blocking)
        else:
            self.real["set_blocking"](fd, blocking)

    def get_inheritable(self, fd: int) -> bool:
        if self.is_k(fd):
            return not self.k.fcntl(fd - self.off, _F_GETFD) & 1
        return self.real["get_inheritable"](fd)

    def set_inheritable(self, fd: int, inheritable: bool) -> None:
        if self.is_k(fd):
            self.k.fcntl(fd - self.off, _F_SETFD, 0 if inheritable else 1)
        else:
            self.real["set_inheritable"](fd, inheritable)

    def _fcntl(self, real: Any) -> Any:
        def fcntl(fd: Any, cmd: int, arg: int = 0) -> Any:
            if self.is_k(fd):
                return self.k.fcntl(fd - self.off, cmd, arg)
            return real(fd, cmd, arg)
        return fcntl

    # ---- open() ----
    def open(self, file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None, closefd: bool = True,
             opener: Any = None) -> Any:
        if isinstance(file, int):
            if not self.is_k(file):
                return self.real_open(file, mode, buffering, encoding, errors, newline, closefd,
                                      opener)
            flags, r, w = mode_flags(mode)
            raw = RumpFileIO(self.k, file - self.off, file, file, mode.replace("t", ""), r, w,
                             closefd)
            return wrap(raw, mode, buffering, encoding, errors, newline)
        kernel, kpath, _ = self.route(file)
        if not kernel:
            return self.real_open(file, mode, buffering, encoding, errors, newline, closefd,
                                  opener)
        flags, r, w = mode_flags(mode)
        if not closefd:
            raise ValueError("Cannot use closefd=False with file name")
        try:
            if opener is not None:
                fd = opener(file, flags)
                if not self.is_k(fd):
                    raise OSError(errno.EXDEV, "opener returned a host descriptor", file)
                kfd = fd - self.off
            else:
                kfd = self.k.open(kpath, flags, 0o666)
        except OSError as e:
            raise _fix_name(e, file) from None
        raw = RumpFileIO(self.k, kfd, kfd + self.off, file,
                         mode.replace("t", "").replace("x", "w"), r, w)
        if "a" in mode:
            raw.seek(0, os.SEEK_END)
        return wrap(raw, mode, buffering, encoding, errors, newline)


try:
    import fcntl as _fcntl_mod
    _F_GETFD, _F_SETFD, _F_GETFL = _fcntl_mod.F_GETFD, _fcntl_mod.F_SETFD, _fcntl_mod.F_GETFL
except ImportError:  # pragma: no cover
    _F_GETFD, _F_SETFD, _F_GETFL = 1, 2, 3

PATH_CALLS = ("stat", "lstat", "access", "mkdir", "rmdir", "unlink", "remove", "chmod", "chown",
              "lchown", "utime", "truncate", "readlink", "statvfs", "mknod", "mkfifo",
              "getxattr", "setxattr", "listxattr", "removexattr")
FD_CALLS = ("read", "write", "pread", "pwrite", "readv", "writev", "lseek", "fstat", "fsync",
            "fdatasync", "ftruncate", "fchmod", "fchown", "fstatvfs")


class HijackError(Exception):
    """A setup failure, reported as one line: ``rumphijack: MESSAGE``."""


def _local(a: argparse.Namespace) -> tuple[Any, Any]:
    import rumpkernel
    from rumpkernel.apps.rump_server import register_drive

    k = rumpkernel.boot(components=["all", "net_sockin"] if a.sockin else None)
    try:
        for d in a.drives:
            register_drive(k, d)
        if a.image is not None:
            _mount_image(k, a.image)
    except (OSError, ValueError, rumpkernel.KernelError) as e:
        k.halt()
        raise HijackError(_describe(e)) from None
    return k.sys, k.halt


def _mount_image(k: Any, spec: str) -> None:
    """``IMG[,TYPE][,ro]``: mount IMG and make it the root of the kernel's name space (so
    with the default policy ``/rump/etc/x`` is the image's ``/etc/x``)."""
    from rumpkernel.client.files.imagespec import parse_image_spec
    from rumpkernel.client.files.sniff import check_image_file

    path, *opts = spec.split(",")
    fstype = next((o for o in opts if o not in ("ro", "rw")), None)
    readonly = "ro" in opts
    ispec = parse_image_spec(path)
    check_image_file(ispec.path)
    try:
        k.mount_image(os.path.abspath(ispec.path), "/image", fstype=fstype, readonly=readonly,
                      partition=ispec.partition, offset=ispec.offset)
    except Exception as e:
        if isinstance(e, (OSError, ValueError)) or type(e).__name__ == "KernelError":
            raise HijackError(f"{path}: {_describe(e)}") from None
        raise
    k.sys.chroot("/image")
    k.sys.chdir("/")


def _describe(e: BaseException) -> str:
    detail = getattr(e, "detail", None)
    if detail:
        return str(detail)
    if isinstance(e, OSError) and e.errno:
        words = e.strerror or os.strerror(e.errno)
        return f"{e.filename}: {words}" if e.filename else words
    return str(e) or type(e).__name__


def _kernel(a: argparse.Namespace) -> tuple[Any, Any]:
    if a.local:
        return _local(a)
    if a.image is not None or a.drives:
        raise HijackError("--image and -d need --local (a remote server mounts its own "
                          "images: rump_server -d ...)")
    from rumpkernel.client.remote import connect

    url = a.url or os.environ.get("RUMP_SERVER")
    if not url:
        raise HijackError("no server: give -u URL, set RUMP_SERVER, or use --local to run "
                          "a kernel in this process")
    retry = os.environ.get("RUMPHIJACK_RETRYCONNECT", "0")
    try:
        conn = connect(url, retry=retry, progname=a.target[0] if a.target else "python")
    except (OSError, ValueError) as e:
        raise HijackError(f"cannot reach the server {url}: {_describe(e)}") from None
    return conn.sys, conn.close


USAGE = ("usage: python -m rumpkernel.hijack [-p POLICY] [-u URL | --local | --sockin] "
         "[--image IMG[,TYPE][,ro]] [-d key=K,hostpath=P[,size=S]] (script.py | -m module) "
         "[args...]")


def _parse(argv: list[str]) -> argparse.Namespace:
    """Options end at the script or at ``-m module``; what follows belongs to the program."""
    from rumpkernel.apps.rump_server import parse_drivespec

    a = argparse.Namespace(policy=None, url=None, local=False, sockin=False, module=None,
                           target=[],
                           image=None, drives=[])
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-p", "-u", "-m", "-d", "--image"):
            if i + 1 >= len(argv):
                raise SystemExit(f"{USAGE}\n{arg} needs a value")
            if arg == "-m":
                a.module, a.target = argv[i + 1], argv[i + 2:]
                return a
            if arg == "-d":
                try:
                    a.drives.append(parse_drivespec(argv[i + 1]))
                except ValueError as e:
                    raise SystemExit(f"rumphijack: -d: {e}") from None
            elif arg == "--image":
                a.image = argv[i + 1]
            else:
                setattr(a, "policy" if arg == "-p" else "url", argv[i + 1])
            i += 2
        elif arg == "--local":
            a.local = True
            i += 1
        elif arg == "--sockin":
            a.sockin = a.local = True
            i += 1
        elif arg in ("-h", "--help"):
            print(USAGE)
            print(__doc__)
            raise SystemExit(0)
        elif arg.startswith("-") and arg != "-":
            raise SystemExit(f"{USAGE}\nunknown option {arg}")
        else:
            a.target = argv[i:]
            return a
    raise SystemExit(f"{USAGE}\ngive a script or -m module")


def main(argv: list[str] | None = None) -> int:
    a = _parse(sys.argv[1:] if argv is None else argv)
    try:
        policy = Policy(a.policy if a.policy is not None
                        else os.environ.get("RUMPHIJACK", DEFAULT_POLICY))
        if a.module is None and not os.path.exists(a.target[0]):
            raise HijackError(f"{a.target[0]}: No such file or directory")
        ksys, finish = _kernel(a)
    except (HijackError, ValueError) as e:
        print(f"rumphijack: {e}", file=sys.stderr)
        return 1
    hj = Hijack(ksys, policy)
    hj.install()
    status = 0
    try:
        if a.module is not None:
            sys.argv = [a.module, *a.target]
            runpy.run_module(a.module, run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(a.target)
            runpy.run_path(a.target[0], run_name="__main__")
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    finally:
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except (OSError, ValueError):
                pass
        hj.uninstall()
        finish()
    return status
