"""The file system drivers the FS-independent suite runs against, and how to get each one
mounted at /mnt in a fresh kernel.  A driver declares its semantics (FsFeatures); the suite reads
them instead of papering over differences."""

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

    @property
    def sys(self):
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
        from tests.remote.harness import stat, wait_for

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
        self.sys.unmount(MNT)
        self.k.mount_image(str(self.image), MNT, fstype=self.fstype, options=self.mount_opts)

    @contextlib.contextmanager
    def user(self, uid: int = 1000, gid: int = 1000,
             groups: tuple[int, ...] = ()) -> Iterator[None]:
        """Run the body as an unprivileged process (a child of pid 1)."""
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
