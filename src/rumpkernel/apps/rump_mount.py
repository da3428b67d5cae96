"""rump_mount / rump_umount: mount a disk image into the host through FUSE, with the file system
driver running in this (unprivileged, memory-limited) process -- the dissertation's rump_<fs>
file servers (p2k, section 3.11), in the shape of fuse2fs and lklfuse.

    rump_mount [-t TYPE] [-o OPTIONS] [-f] [-d] IMAGE MOUNTPOINT
    rump_mount -u URL [-o OPTIONS] [-f] [-d] KERNELPATH MOUNTPOINT
    rump_umount MOUNTPOINT

IMAGE is ``FILE``, ``FILE@OFFSET`` or ``FILE%N`` (partition N), as fsu takes them.  By default
rump_mount returns once the mount is ready and serves in the background; ``-f`` stays in the
foreground, ``-d`` also logs every request to stderr.  ``fusermount3 -u MOUNTPOINT``,
``rump_umount MOUNTPOINT`` (which also waits until the server has flushed the image) and
SIGTERM unmount; the driver then flushes and marks the file system clean.  If the server dies
(killed, or a driver panic), the host keeps an ENOTCONN mount point to unmount, nothing worse.
SIGUSR1 writes the Python stack of every server thread (a hang's diagnosis) to stderr in the
foreground, else appends it to ``stacks_for(MOUNTPOINT)`` (beside the pid file); it works even
when every thread is stuck (``faulthandler``, no interpreter lock needed).

Options (``-o``, comma separated; anything else goes to the file system driver):
    ro / rw                    read-only / read-write (default rw)
    allow_other                other users may use the mount (implies default_permissions)
    default_permissions        the host kernel checks permissions too
    uid=N, gid=N, umask=M      owner and permission mask shown for every file (passed to the
                               driver when it has such options, as FAT does)
    user=NAME|UID              drop to this user once the image and /dev/fuse are open
    memlimit=SIZE              address-space limit of the server (default 2g)
    threads=N                  worker threads (default 2: one runs Python while another's
                               reply is copied by the host)
    readahead=KIB              host read-ahead on the mount (default 1024: READs of 1 MiB)
    attr_timeout=S, entry_timeout=S, negative_timeout=S   host cache lifetimes (default 1)
    dev, suid                  honour device nodes / set-id bits (default: nodev, nosuid)
    auto_unmount               unmount automatically when the server exits
    fsname=NAME                shown as the mount source (default: the image)
With ``-u URL`` the file system at KERNELPATH of a running rump_server is served; requests
then run with the connection's credentials, so default_permissions is always on.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import faulthandler
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROG = "rump_mount"
SERVER_OPTIONS = frozenset({
    "ro", "rw", "allow_other", "default_permissions", "user", "memlimit", "threads",
    "attr_timeout", "entry_timeout", "negative_timeout", "dev", "suid", "auto_unmount",
    "fsname", "uid", "gid", "umask", "readahead",
})
DEFAULT_MEMLIMIT = 2 << 30


class Trouble(Exception):
    """A failure to report to the user in one line."""


@dataclass
class Options:
    readonly: bool = False
    allow_other: bool = False
    default_permissions: bool = False
    user: str | None = None
    memlimit: int = DEFAULT_MEMLIMIT
    threads: int = 2
    readahead: int = 1024
    attr_timeout: float = 1.0
    entry_timeout: float = 1.0
    negative_timeout: float = 1.0
    dev: bool = False
    suid: bool = False
    auto_unmount: bool = False
    fsname: str | None = None
    uid: int | None = None
    gid: int | None = None
    umask: int | None = None
    driver: dict[str, str] = field(default_factory=dict)


def parse_options(texts: list[str]) -> Options:
    """``-o`` arguments into Options; unknown names go to the driver.  Trouble on bad values."""
    o = Options()
    for text in texts:
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, eq, value = part.partition("=")
            _apply(o, key, value if eq else None)
    if o.allow_other:
        o.default_permissions = True
    return o


def _apply(o: Options, key: str, value: str | None) -> None:
    from rumpkernel.client.files.imagespec import parse_size

    flags = {"ro": ("readonly", True), "rw": ("readonly", False), "dev": ("dev", True),
             "suid": ("suid", True), "allow_other": ("allow_other", True),
             "default_permissions": ("default_permissions", True),
             "auto_unmount": ("auto_unmount", True)}
    try:
        if key in flags:
            setattr(o, *flags[key])
        elif key in ("uid", "gid", "threads", "readahead"):
            setattr(o, key, int(_need(key, value)))
        elif key == "umask":
            o.umask = int(_need(key, value), 8)
        elif key in ("attr_timeout", "entry_timeout", "negative_timeout"):
            setattr(o, key, float(_need(key, value)))
        elif key == "memlimit":
            o.memlimit = parse_size(_need(key, value), name="memlimit")
        elif key in ("user", "fsname"):
            setattr(o, key, _need(key, value))
        else:
            o.driver[key] = value if value is not None else ""
    except ValueError as e:
        raise Trouble(f"option {key}: {e}") from None
    if o.threads < 1 or (o.umask is not None and not 0 <= o.umask <= 0o777):
        raise Trouble(f"option {key}={value}: out of range")


def _need(key: str, value: str | None) -> str:
    if not value:
        raise ValueError(f"{key}= needs a value")
    return value


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Mount a disk image (or a file system of "
                                "a running rump_server) into the host through FUSE.")
    p.add_argument("-t", dest="fstype", help="file system type (ext2/ext3/ext4, msdos/vfat)")
    p.add_argument("-o", dest="options", action="append", default=[],
                   help="mount options, comma separated (see the manual)")
    p.add_argument("-u", dest="url", help="serve KERNELPATH of the rump_server at URL")
    p.add_argument("-f", dest="foreground", action="store_true", help="stay in the foreground")
    p.add_argument("-d", dest="debug", action="store_true", help="log requests (implies -f)")
    p.add_argument("source", metavar="IMAGE|KERNELPATH")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    a = p.parse_args(argv)
    a.foreground = a.foreground or a.debug
    return a


# ---- the pieces ---------------------------------------------------------------------------------
def open_image(source: str, fstype: str | None, o: Options) -> Any:
    """Boot a kernel and mount the image; returns the fsu Session (root: the image)."""
    from rumpkernel.apps.fsu.common import Trouble as FsuTrouble
    from rumpkernel.apps.fsu.session import Session
    from rumpkernel.client.files.imagespec import parse_image_spec

    try:
        spec = parse_image_spec(source)
    except ValueError as e:
        raise Trouble(str(e)) from None
    shown = {k: v for k, v in (("uid", o.uid), ("gid", o.gid),
                               ("umask", None if o.umask is None else f"{o.umask:o}"))
             if v is not None}

    def session(extra: dict[str, Any]) -> Any:
        opts = ",".join(k if v == "" else f"{k}={v}" for k, v in {**o.driver, **extra}.items())
        try:
            return Session(spec, fstype=fstype, readonly=o.readonly, options=opts or None).open()
        except FsuTrouble as e:
            raise Trouble(str(e)) from None

    s = session({})
    takes = s.k.vfs.fstype(s.fstype).option_names & shown.keys()
    if takes:                          # the driver shows owners itself (FAT): let it
        s.close()
        s = session({k: shown[k] for k in takes})
        for k in takes:
            setattr(o, k, None)
    return s


def make_config(o: Options, remote: bool) -> Any:
    from rumpkernel.client.fuse import Config

    return Config(entry_ttl=o.entry_timeout, attr_ttl=o.attr_timeout,
                  negative_ttl=o.negative_timeout,
                  exclusive=not remote,
                  uid=o.uid, gid=o.gid, umask=o.umask or 0, chown_new=remote)


def fuse_options(o: Options) -> list[str]:
    out = ["allow_other"] if o.allow_other else []
    out += ["default_permissions"] if o.default_permissions else []
    out += [name for name in ("dev", "suid", "auto_unmount") if getattr(o, name)]
    return out


def pidfile_for(mountpoint: str, dev: int | None = None) -> str:
    """Where the server of the mount at ``mountpoint`` records its pid (keyed by the mount's
    device number, so a dead or moved mount point does not find a stale server)."""
    if dev is None:
        from rumpkernel.hypercall import fusedev

        dev = fusedev.mount_dev(mountpoint)   # never a stat through the mount (see there)
        if dev is None:
            raise OSError(errno.ENOENT, "not a mount point", mountpoint)
    base = "/run/rump_mount" if os.geteuid() == 0 else os.path.join(
        os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/rump_mount-{os.getuid()}", "rump_mount")
    return os.path.join(base, f"{os.major(dev)}-{os.minor(dev)}.pid")


def stacks_for(mountpoint: str, dev: int | None = None) -> str:
    """Where a background server of the mount at ``mountpoint`` appends its thread stacks on
    SIGUSR1 (``pidfile_for`` with ``.stacks`` for ``.pid``)."""
    return pidfile_for(mountpoint, dev)[:-len(".pid")] + ".stacks"


def _dump_stacks_on_signal(mountpoint: str, foreground: bool) -> Any:
    """SIGUSR1 -> every thread's Python stack (stderr, or the stacks file in the background).
    Returns the file kept open for it (None: stderr or nowhere to write)."""
    if foreground:
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=False)
        return None
    try:
        path = stacks_for(mountpoint)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        f = open(path, "w")           # noqa: SIM115 -- open until the process ends
    except OSError:
        return None
    faulthandler.register(signal.SIGUSR1, file=f, all_threads=True, chain=False)
    return f


def _write_pidfile(mountpoint: str) -> str | None:
    try:
        path = pidfile_for(mountpoint)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
        return path
    except OSError:
        return None


def _debug_handle(handle: Callable[..., Any]) -> Callable[..., Any]:
    from rumpkernel.client.fuse import proto

    def logged(data: Any, worker: Any) -> Any:
        hdr = proto.IN_HEADER.unpack_from(data)
        name = proto.Op(hdr[1]).name if hdr[1] in proto.Op._value2member_map_ else hdr[1]
        out = handle(data, worker)
        err = proto.OUT_HEADER.unpack_from(out)[1] if out is not None else None
        sys.stderr.write(f"{PROG}: {name} node={hdr[3]} uid={hdr[4]} pid={hdr[6]} "
                         f"-> {'' if err is None else (os.strerror(-err) if err else 'ok')}\n")
        return out

    return logged


# ---- running ------------------------------------------------------------------------------------
class Runner:
    """One rump_mount: kernel side, FUSE mount, signals, teardown."""

    def __init__(self, a: argparse.Namespace, o: Options) -> None:
        self.a = a
        self.o = o
        self.session: Any = None
        self.mount: Any = None
        self.pidfile: str | None = None
        self.stacks: Any = None
        self.stop_requested = False

    def setup(self) -> None:
        from rumpkernel.client.fuse import FuseMount, LocalKernel

        a, o = self.a, self.o
        mnt = os.path.abspath(a.mountpoint)
        if not os.path.isdir(mnt):
            why = "not a directory" if os.path.exists(mnt) else "no such directory"
            raise Trouble(f"{a.mountpoint}: {why} (the mount point must be a directory)")
        if a.url:
            kernel = self._connect(a.url, a.source)
            o.default_permissions = True
            fsname = o.fsname or f"{a.url}:{a.source}"
        else:
            self.session = open_image(a.source, a.fstype, o)
            kernel = LocalKernel(self.session.k, "/")
            fsname = o.fsname or os.path.abspath(a.source.split("%")[0].split("@")[0])
        readonly = o.readonly or bool(self.session is not None and self.session.readonly)
        m = FuseMount(kernel, mnt, make_config(o, a.url is not None), fuse_options(o),
                      fsname=fsname, subtype="rump", readonly=readonly, nthreads=o.threads)
        if a.debug:
            m.server.handle = _debug_handle(m.server.handle)  # type: ignore[method-assign]
        try:
            m.start()
        except OSError as e:
            kernel.close()
            raise Trouble(f"{a.mountpoint}: cannot mount: {e.strerror or e}") from None
        self.mount = m
        self.pidfile = _write_pidfile(mnt)
        self.stacks = _dump_stacks_on_signal(mnt, a.foreground)
        from rumpkernel.hypercall import fusedev

        fusedev.set_readahead(mnt, o.readahead)

    def _connect(self, url: str, path: str) -> Any:
        import rumpkernel
        from rumpkernel.client.fuse import RemoteKernel

        try:
            conn = rumpkernel.connect(url, autofork=False)
        except OSError as e:
            raise Trouble(f"{url}: cannot connect: {e.strerror or e}") from None
        try:
            return RemoteKernel(conn, path)
        except OSError as e:
            conn.close()
            raise Trouble(f"{path}: {e.strerror or e} (on {url})") from None

    def isolate(self) -> None:
        from rumpkernel.hypercall import fusedev

        o = self.o
        with contextlib.suppress(OSError, ValueError):
            fusedev.limit_memory(o.memlimit)
        if o.user:
            try:
                fusedev.drop_privileges(o.user)
            except (KeyError, OSError) as e:
                raise Trouble(f"user={o.user}: cannot switch to it ({e})") from None

    def run(self) -> int:
        """Serve until unmounted or told to stop; then flush and halt.  Exit status."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        m = self.mount
        while True:
            failure = m.wait(1.0)
            if failure is not None:
                return self._crash(failure)
            if not m.service.running:
                break
            if self.stop_requested:
                self.stop_requested = False
                self._stop()
        return self.teardown()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def _stop(self) -> None:
        from rumpkernel.hypercall import fusedev

        try:
            fusedev.unmount(self.mount.mountpoint)
        except OSError as e:
            if e.errno == errno.EBUSY:
                _say(f"{self.mount.mountpoint}: busy, unmounting lazily")
                with contextlib.suppress(OSError):
                    fusedev.unmount(self.mount.mountpoint, lazy=True)
                return
            _say(f"{self.mount.mountpoint}: cannot unmount ({e.strerror or e}); flushing and "
                 "leaving it to `fusermount3 -u`")
            self.mount.abandon()
            raise SystemExit(self.teardown(serving=True)) from None

    def _crash(self, failure: BaseException) -> int:
        _say(f"server stopped: {type(failure).__name__}: {failure}")
        if self.a.debug:
            traceback.print_exception(failure, file=sys.stderr)
        self._remove_pidfile()
        sys.stderr.flush()
        os._exit(70)

    def teardown(self, serving: bool = False) -> int:
        status = 0
        if self.mount is not None and not serving:
            with contextlib.suppress(Exception):
                self.mount.unmount(timeout=5.0)
        if self.session is not None:
            try:
                self.session.close()
            except Exception as e:
                _say(f"{self.a.source}: {e}")
                status = 1
        self._remove_pidfile()
        return status

    def _remove_pidfile(self) -> None:
        if self.pidfile:
            with contextlib.suppress(OSError):
                os.unlink(self.pidfile)
        if self.stacks is not None:
            faulthandler.unregister(signal.SIGUSR1)
            with contextlib.suppress(OSError):
                os.unlink(self.stacks.name)
            self.stacks.close()
            self.stacks = None


def _say(msg: str) -> None:
    sys.stderr.write(f"{PROG}: {msg}\n")


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    try:
        o = parse_options(a.options)
    except Trouble as e:
        _say(str(e))
        return 2
    ready_w = None
    if not a.foreground:
        ready_r, ready_w = os.pipe()
        if os.fork():
            os.close(ready_w)
            msg = os.read(ready_r, 4096)
            if msg == b"ok":
                return 0
            sys.stderr.write(msg.decode(errors="replace") or f"{PROG}: failed\n")
            return 1
        os.close(ready_r)
        os.setsid()
    r = Runner(a, o)
    try:
        r.setup()
        r.isolate()
    except Trouble as e:
        r.teardown()
        return _fail(ready_w, f"{PROG}: {e}\n")
    except Exception as e:
        r.teardown()
        return _fail(ready_w, f"{PROG}: {type(e).__name__}: {e}\n")
    if ready_w is not None:
        os.write(ready_w, b"ok")
        os.close(ready_w)
        _detach_stdio()
        os.chdir("/")                  # keep no directory of the caller's busy
    return r.run()


def _fail(ready_w: int | None, msg: str) -> int:
    if ready_w is None:
        sys.stderr.write(msg)
    else:
        os.write(ready_w, msg.encode())
        os.close(ready_w)
    return 1


def _detach_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


# ---- rump_umount --------------------------------------------------------------------------------
def umount_main(argv: list[str] | None = None) -> int:
    """rump_umount [-z] MOUNTPOINT: unmount and wait until the server has flushed the image."""
    from rumpkernel.hypercall import fusedev

    p = argparse.ArgumentParser(prog="rump_umount", description="Unmount a rump_mount mount "
                                "and wait until its server has written everything back.")
    p.add_argument("-z", dest="lazy", action="store_true", help="lazy unmount (busy mounts)")
    p.add_argument("-t", dest="timeout", type=float, default=120.0,
                   help="seconds to wait for the server (default 120)")
    p.add_argument("mountpoint")
    a = p.parse_args(argv)
    mnt = os.path.abspath(a.mountpoint)
    if not fusedev.is_mounted(mnt):
        print(f"rump_umount: {a.mountpoint}: not a FUSE mount point", file=sys.stderr)
        return 1
    pid = None
    with contextlib.suppress(OSError, ValueError), open(pidfile_for(mnt)) as f:
        pid = int(f.read().strip())
    try:
        fusedev.unmount(mnt, lazy=a.lazy)
    except OSError as e:
        print(f"rump_umount: {a.mountpoint}: {e.strerror or e}", file=sys.stderr)
        return 1
    if pid is not None and not _wait_gone(pid, a.timeout):
        print(f"rump_umount: server {pid} still running after {a.timeout:g}s", file=sys.stderr)
        return 1
    return 0


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        time.sleep(0.05)
    return False


if __name__ == "__main__":
    sys.exit(main())
