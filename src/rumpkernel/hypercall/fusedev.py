"""Host side of the FUSE file server: the ``/dev/fuse`` channel, mounting, the request loop,
and the process facilities a server needs (caller groups, privileges, limits).

The protocol and the file server are sans-IO (``client/fuse``); this module is the thin host
layer under them, like ``spsock`` under sysproxy.

Mounting: as root, ``mount(2)`` directly (``fd=N,rootmode=...``); otherwise through
``fusermount3`` (set-uid root), which passes the opened device back over a socket
(``_FUSE_COMMFD``).  Unmounting: ``umount2(2)`` as root, else ``fusermount3 -u``.

Interface:
    Channel.mount(mountpoint, fsname, subtype, options, readonly) -> Channel      OSError
    ch.fd / ch.mountpoint / ch.close()
    ch.receive(buf) -> int           bytes of one request in ``buf``; 0 once unmounted
    ch.send(data)                    one reply (a request the host gave up on is ignored)
    Service(ch, handle, make_worker, nthreads).start() -> svc; svc.wait(timeout) -> failure
                                     worker threads until unmount (None) or until one of them
                                     fails (that exception; the others are abandoned)
    unmount(mountpoint, lazy=False) -> None                                       OSError
    is_mounted(mountpoint) -> bool   a FUSE mount (also a dead one: ENOTCONN) is there
    caller_groups(pid, gid) -> tuple[int, ...]     /proc/PID/status, () when unreadable
    drop_privileges(user)            setgroups/setgid/setuid to a user name or number
    limit_memory(nbytes)             RLIMIT_AS
    set_readahead(mountpoint, kib) -> bool   the mount's read-ahead window (root: sysfs bdi)
    allocate_lock()                  a host lock
"""

from __future__ import annotations

import _thread
import array
import contextlib
import ctypes
import ctypes.util
import errno
import os
import socket
import stat
import subprocess
import threading
from collections.abc import Callable, Iterable
from typing import Any

allocate_lock = _thread.allocate_lock

MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MNT_DETACH = 2
_RETRY = (errno.EINTR, errno.EAGAIN, errno.ENOENT)   # ENOENT: the request was interrupted
_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc


class Channel:
    """One FUSE connection: the device descriptor of a mounted FUSE file system."""

    def __init__(self, fd: int, mountpoint: str, helper: subprocess.Popen | None = None) -> None:
        self.fd = fd
        self.mountpoint = mountpoint
        self.helper = helper            # fusermount3 watching the mount (auto_unmount)
        self.closed = False

    @classmethod
    def mount(cls, mountpoint: str, fsname: str, subtype: str, options: Iterable[str],
              readonly: bool = False) -> Channel:
        """Mount a FUSE file system at ``mountpoint`` and return its channel.  ``options``
        are FUSE mount options (allow_other, default_permissions, max_read=N, dev, suid,
        auto_unmount ...)."""
        mountpoint = os.path.abspath(mountpoint)
        opts = list(options)
        st = os.stat(mountpoint)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "mount point is not a directory", mountpoint)
        if os.geteuid() == 0 and "auto_unmount" not in opts:
            return cls._mount_direct(mountpoint, fsname, subtype, opts, readonly, st.st_mode)
        return cls._mount_helper(mountpoint, fsname, subtype, opts, readonly)

    @classmethod
    def _mount_direct(cls, mountpoint: str, fsname: str, subtype: str, opts: list[str],
                      readonly: bool, mode: int) -> Channel:
        fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        flags = (MS_RDONLY if readonly else 0)
        if "dev" not in opts:
            flags |= MS_NODEV
        if "suid" not in opts:
            flags |= MS_NOSUID
        kopts = [f"fd={fd}", f"rootmode={stat.S_IFMT(mode):o}", f"user_id={os.getuid()}",
                 f"group_id={os.getgid()}"]
        kopts += [o for o in opts if o in ("allow_other", "default_permissions")
                  or o.startswith(("max_read=", "blksize="))]
        source = fsname.replace(",", "_").encode()
        rc = _c().mount(source, mountpoint.encode(), f"fuse.{subtype}".encode(),
                        flags, ",".join(kopts).encode())
        if rc != 0:
            e = ctypes.get_errno()
            os.close(fd)
            raise OSError(e, f"mount: {os.strerror(e)}", mountpoint)
        return cls(fd, mountpoint)

    @classmethod
    def _mount_helper(cls, mountpoint: str, fsname: str, subtype: str, opts: list[str],
                      readonly: bool) -> Channel:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mopts = [f"fsname={fsname.replace(',', '_')}", f"subtype={subtype}"]
        mopts += ["ro"] if readonly else []
        mopts += ["nodev"] if "dev" not in opts else []
        mopts += ["nosuid"] if "suid" not in opts else []
        mopts += [o for o in opts if o not in ("dev", "suid")]
        env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
        helper = subprocess.Popen(["fusermount3", "-o", ",".join(mopts), "--", mountpoint],
                                  env=env, pass_fds=(theirs.fileno(),),
                                  stderr=subprocess.PIPE, text=True)
        theirs.close()
        try:
            fd = _receive_fd(ours)
        finally:
            ours.close()
        if fd is None:
            _out, err = helper.communicate(timeout=30)
            raise OSError(errno.EPERM, f"fusermount3: {(err or '').strip() or 'failed'}",
                          mountpoint)
        os.set_inheritable(fd, False)
        if "auto_unmount" in opts:
            return cls(fd, mountpoint, helper)      # it stays, and unmounts when we are gone
        helper.wait(timeout=30)
        return cls(fd, mountpoint)

    def receive(self, buf: bytearray) -> int:
        while True:
            try:
                return os.readv(self.fd, [buf])
            except OSError as e:
                if e.errno in _RETRY:
                    continue
                if e.errno in (errno.ENODEV, errno.EBADF):
                    return 0
                raise

    def send(self, data: bytes | memoryview) -> None:
        try:
            os.write(self.fd, data)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENODEV):
                raise

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


def _receive_fd(sock: socket.socket) -> int | None:
    fds = array.array("i")
    try:
        _msg, anc, _flags, _addr = sock.recvmsg(1, socket.CMSG_SPACE(fds.itemsize))
    except OSError:
        return None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:fds.itemsize])
            return fds[0]
    return None


class Service:
    """Worker threads serving one channel until the file system is unmounted.  Each thread
    makes its own worker (``make_worker()``, closed at the end) and loops: receive,
    ``handle(request, worker)``, send the reply.

        svc = Service(ch, handle, make_worker, nthreads).start()
        failure = svc.wait()     # None after an unmount, else the first exception a thread
                                 # raised (the others are abandoned: exit the process)
    """

    def __init__(self, ch: Channel, handle: Callable[[memoryview, Any], Any],
                 make_worker: Callable[[], Any], nthreads: int = 1,
                 bufsize: int = (1 << 20) + 4096) -> None:
        self.ch = ch
        self.handle = handle
        self.make_worker = make_worker
        self.bufsize = bufsize
        self.failure: BaseException | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, name=f"fuse-{i}", daemon=True)
                        for i in range(max(1, nthreads))]

    def start(self) -> Service:
        for t in self.threads:
            t.start()
        return self

    def _fail(self, e: BaseException) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = e

    def _loop(self) -> None:
        buf = bytearray(self.bufsize)
        mv = memoryview(buf)
        try:
            worker = self.make_worker()
        except BaseException as e:
            self._fail(e)
            self._done.set()
            return
        ch, handle = self.ch, self.handle
        try:
            while self.failure is None:
                n = ch.receive(buf)
                if n == 0:
                    break
                out = handle(mv[:n], worker)
                if out is not None:
                    ch.send(out)
        except BaseException as e:
            self._fail(e)
        finally:
            with contextlib.suppress(BaseException):
                worker.close()
            self._done.set()

    @property
    def running(self) -> bool:
        return self.failure is None and any(t.is_alive() for t in self.threads)

    def wait(self, timeout: float | None = None) -> BaseException | None:
        """Until every thread ended (unmount) or one failed; with ``timeout``, at most that
        long (then the service may still be running)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.failure is not None or not any(t.is_alive() for t in self.threads):
                return self.failure
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._done.wait(0.5 if left is None else min(left, 0.5))
            self._done.clear()


def unmount(mountpoint: str, lazy: bool = False) -> None:
    """Unmount a FUSE mount (also a dead one)."""
    mountpoint = os.path.abspath(mountpoint)
    if os.geteuid() == 0:
        if _c().umount2(mountpoint.encode(), MNT_DETACH if lazy else 0) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"umount: {os.strerror(e)}", mountpoint)
        return
    cmd = ["fusermount3", "-u"] + (["-z"] if lazy else []) + ["--", mountpoint]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise OSError(errno.EINVAL, r.stderr.strip() or "fusermount3 -u failed", mountpoint)


def is_mounted(mountpoint: str) -> bool:
    target = os.path.abspath(mountpoint)
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and _unescape(parts[1]) == target:
                return parts[2].startswith("fuse")
    return False


def mount_dev(mountpoint: str) -> int | None:
    """The device number of the mount at ``mountpoint`` from ``/proc/self/mountinfo`` (the
    last mount there), without a request to the file system: a server that stat()s its own
    mount point before its workers run, or after one of them failed, waits on itself."""
    target = os.path.abspath(mountpoint)       # the parent resolved, never the mount itself
    target = os.path.join(os.path.realpath(os.path.dirname(target)), os.path.basename(target))
    dev = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 4 and _unescape(parts[4]) == target:
                major, _, minor = parts[2].partition(":")
                dev = os.makedev(int(major), int(minor))
    return dev


def _unescape(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def caller_groups(pid: int, gid: int) -> tuple[int, ...]:
    """The supplementary groups of host process ``pid`` (with ``gid`` first), or ``(gid,)``
    when they cannot be read (the process is gone or lives in another pid namespace)."""
    if pid <= 0:
        return (gid,)
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Groups:"):
                    groups = tuple(int(x) for x in line.split()[1:])
                    return (gid, *(g for g in groups if g != gid))
    except (OSError, ValueError):
        pass
    return (gid,)


def drop_privileges(user: str) -> tuple[int, int]:
    """Become ``user`` (a name or a number): supplementary groups cleared, then gid, then
    uid.  Returns (uid, gid).  KeyError for an unknown name."""
    import pwd

    if user.isdigit():
        uid = int(user)
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = uid
    else:
        pw = pwd.getpwnam(user)
        uid, gid = pw.pw_uid, pw.pw_gid
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    return uid, gid


def set_readahead(mountpoint: str, kib: int) -> bool:
    """Let the host read ahead ``kib`` KiB on this mount (FUSE READs up to max_pages long
    instead of 128 KiB).  Needs root; False when the knob is not there or not writable."""
    try:
        dev = mount_dev(mountpoint)
        if dev is None:
            return False
        with open(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb", "w") as f:
            f.write(f"{kib}\n")
        return True
    except OSError:
        return False


def limit_memory(nbytes: int) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = nbytes if hard == resource.RLIM_INFINITY else min(nbytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
