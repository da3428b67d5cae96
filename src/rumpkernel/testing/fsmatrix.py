"""The file-system matrix of the shipped testing kit: every file-system driver x every client
mode, for one test body written once.

Drivers come from the components' declared ``TestImage`` recipes (``kern/component.py``), so a
new driver joins the matrix by declaring how its test images are made; each is mounted at /mnt
in a fresh kernel, and a driver declares its semantics (``FsFeatures``), which the tests read
instead of papering over differences.  Client modes: ``local`` (``k.sys``), ``remote`` (a
sysproxy connection to an in-process server), ``process`` (a real ``rump_server`` process;
tmpfs), ``fuse`` (the host's own system calls on a FUSE mount of the kernel; tmpfs, ext4, FAT32).

The plugin (``rumpkernel.testing.plugin``) turns this into the ``fs`` fixture:
``def test_x(fs): fs.sys.open(fs.p("f"), ...)``.

Interface: FsEnv; DRIVERS (name -> maker); CLIENTS; fs_params(); open_fs(request, tmp, param)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rumpkernel
from rumpkernel import PosixHost, SimHost
from rumpkernel.client.sys import Sys
from rumpkernel.vfs.vattr import FsFeatures

MNT = "/mnt"
TOP = "/mnt/t"   # the tests work in a fresh directory: real images have lost+found and more
TMPFS_OPTS = {"mode": "755", "link_max": "64"}


@dataclass
class FsEnv:
    k: rumpkernel.Kernel
    name: str
    features: FsFeatures
    persistent: bool
    image: Path | None = None
    mount_opts: dict | None = None
    fstype: str = ""
    remote: Any = None          # in remote mode: a sysproxy connection to ``k`` (tests/remote)
    server: Any = None

    remote_sys: Any = None
    fuse: Any = None            # in FUSE mode: testing.fusemode.FuseMode (host calls on a mount)

    @property
    def sys(self):
        if self.fuse is not None:
            return self.fuse.sys
        return self.remote_sys if self.remote is not None else self.k.sys

    def serve_remote(self, tmp: Path) -> None:
        """Remote mode: serve ``k`` in-process (a server thread on a unix socket) and make
        ``sys`` a remote connection to it; every suite call is then a remote system call."""
        from rumpkernel.apps.rump_server import Server

        self.server = Server(self.k, f"unix://{tmp}/rump.sock").start()
        self.remote = rumpkernel.connect(self.server.url, autofork=False)
        # like k.sys follows the thread's lwp, this follows the current connection (user())
        self.remote_sys = Sys(lambda num, args: self.remote._call(num, args))

    def serve_process(self, server: Any) -> None:
        """Remote mode against a real ``rump_server`` process shared by the session (tmpfs only:
        image drivers need the in-process kernel to remount); each test gets a fresh tmpfs at
        /mnt, mounted like make_tmpfs's, and ``close_remote`` puts the root back as it was."""
        self.server = server
        self.remote = server.connect()
        self.remote_sys = Sys(lambda num, args: self.remote._call(num, args))
        if "mnt" not in self.sys.listdir("/"):
            self.sys.mkdir(MNT, 0o755)
        self.sys.mount("tmpfs", MNT, 0, TMPFS_OPTS)
        self.sys.mkdir(TOP, 0o755)

    def close_remote(self) -> None:
        """End the connection and wait until the server has ended its process.  A shared server
        process must then show no leftover processes or descriptors."""
        if self.remote is None:
            return
        if not hasattr(self.server, "proc"):
            self.remote.close()
            self.server.stop(halt=False)
            return
        from rumpkernel.testing.remote import stat, wait_for

        s = self.sys
        s.chdir("/")
        root_dev = s.stat("/").st_dev
        for name in s.listdir("/"):
            if name != "dev":
                if s.stat("/" + name).st_dev != root_dev:
                    s.unmount("/" + name)
                if name != "mnt":
                    _remove_tree(s, "/" + name)
        self.remote.close()
        with self.server.connect() as probe:
            assert wait_for(lambda: (stat(probe, "processes"), stat(probe, "open_files"))
                            == (3, 0)), "the server process leaked"

    def p(self, *parts: str) -> str:
        return "/".join((TOP, *parts))

    def remount(self) -> None:
        """Unmount and mount again: what reached the 'disk' is all that is left."""
        if not self.persistent:
            raise RuntimeError("not a persistent file system")
        if self.fuse is not None:
            self.fuse.remount()
            return
        self.sys.unmount(MNT)
        self.k.mount_image(str(self.image), MNT, fstype=self.fstype, options=self.mount_opts)

    @contextlib.contextmanager
    def user(self, uid: int = 1000, gid: int = 1000,
             groups: tuple[int, ...] = ()) -> Iterator[None]:
        """Run the body as an unprivileged process (a child of pid 1)."""
        if self.fuse is not None:           # the host process's effective ids
            with self.fuse.user(uid, gid, groups):
                yield
            return
        if self.remote is not None:   # a second connection is a new process, child of pid 1
            main = self.remote
            self.remote = rumpkernel.connect(self.server.url, autofork=False)
            try:
                self.sys.setgroups(list(groups))
                self.sys.setgid(gid)
                self.sys.setuid(uid)
                yield
            finally:
                self.remote.close()
                self.remote = main
            return
        self.k.lwproc.rfork()
        try:
            self.sys.setgroups(list(groups))
            self.sys.setgid(gid)
            self.sys.setuid(uid)
            yield
        finally:
            self.k.lwproc.release()


def _remove_tree(s: Any, path: str) -> None:
    import stat as st

    if st.S_ISDIR(s.lstat(path).st_mode):
        for name in s.listdir(path):
            _remove_tree(s, f"{path}/{name}")
        s.rmdir(path)
    else:
        s.unlink(path)


Maker = Callable[..., FsEnv]   # (tmp, posix=False): posix=True needs a PosixHost kernel
DRIVERS: dict[str, Maker] = {}


def driver(name: str) -> Callable[[Maker], Maker]:
    def reg(fn: Maker) -> Maker:
        DRIVERS[name] = fn
        return fn
    return reg


def _features(k: rumpkernel.Kernel) -> FsFeatures:
    with k.entered() as l:
        vp = k.vfs.namei.walk(l, -100, MNT.encode())
        try:
            return vp.mount.fs.features
        finally:
            k.vfs.vcache.vrele(vp)


@driver("tmpfs")
def make_tmpfs(tmp: Path, posix: bool = False) -> FsEnv:
    k = rumpkernel.boot(PosixHost() if posix else SimHost(seed=99))
    k.sys.mkdir(MNT, 0o755)
    k.sys.mount("tmpfs", MNT, 0, TMPFS_OPTS)
    k.sys.mkdir(TOP, 0o755)
    return FsEnv(k, "tmpfs", _features(k), persistent=False)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def image_env(name: str, fstype: str, image: Path, opts: dict | None = None) -> FsEnv:
    k = rumpkernel.boot()
    k.mount_image(str(image), MNT, fstype=fstype, options=opts)
    k.sys.mkdir(TOP, 0o755)
    return FsEnv(k, name, _features(k), persistent=True, image=image, mount_opts=opts,
                 fstype=fstype)


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True,
                   env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})


def _register_declared() -> None:
    """Every image-backed test image a component declares (``TestImage`` recipes: the driver
    says how to make them) joins the matrix; adding a driver needs no edit here."""
    from rumpkernel.kern.component import catalog

    for comp in catalog().values():
        for ti in comp.test_images:
            if not ti.command or ti.name in DRIVERS:
                continue

            def make(tmp: Path, posix: bool = False, ti: Any = ti) -> FsEnv:
                img = tmp / f"{ti.name}.img"
                run(*(str(img) if a == "{image}" else a for a in ti.command))
                return image_env(ti.name, ti.fstype, img, ti.mount_options)
            DRIVERS[ti.name] = make


_register_declared()


# every driver through a local client and through a remote (sysproxy) client served in-process;
# tmpfs also through a real rump_server process; tmpfs, ext4 and FAT32 also through the host's
# system calls on a FUSE mount of the kernel (testing/fusemode.py)
CLIENTS = ("local", "remote", "process", "fuse")
FUSE_DRIVERS = ("tmpfs", "ext4", "fat32")


def _wanted(driver: str, client: str) -> bool:
    if client == "process":
        return driver == "tmpfs"
    if client == "fuse":
        return driver in FUSE_DRIVERS
    return True


def fs_params() -> list[tuple[str, str]]:
    return [(d, c) for d in sorted(DRIVERS) for c in CLIENTS if _wanted(d, c)]


def fs_id(param: tuple[str, str]) -> str:
    return param[0] if param[1] == "local" else f"{param[0]}-{param[1]}"


def open_fs(request: Any, tmp_path: Path, param: tuple[str, str]) -> Iterator[FsEnv]:
    """The ``fs`` fixture's body: the environment, leak-checked and torn down afterwards."""
    from rumpkernel.testing.plugin import checked

    driver, client = param
    env = DRIVERS[driver](tmp_path, posix=client != "local")
    checks = checked(env.k)
    next(checks)                      # the baseline is taken before any connection exists
    if client == "remote":
        env.serve_remote(tmp_path)
    elif client == "process":
        env.serve_process(request.getfixturevalue("rump_server_process"))
    elif client == "fuse":
        from rumpkernel.testing.fusemode import FuseMode

        env.fuse = FuseMode(env, tmp_path)
    try:
        yield env
    finally:
        if env.fuse is not None:
            env.fuse.cleanup()
    env.close_remote()
    for _ in checks:
        pass
