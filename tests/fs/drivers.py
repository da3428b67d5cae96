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

    def close_remote(self) -> None:
        """End the connection and wait until the server has ended its process."""
        if self.remote is not None:
            self.remote.close()
            self.server.stop(halt=False)

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
    k.sys.mount("tmpfs", MNT, 0, {"mode": "755", "link_max": "64"})
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


def _register_optional() -> None:
    from rumpkernel.kern.component import catalog

    names = catalog()
    if "ext2" in names:
        for flavour in ("ext2", "ext4"):
            def make(tmp: Path, posix: bool = False, flavour: str = flavour) -> FsEnv:
                img = tmp / f"{flavour}.img"
                run("mke2fs", "-q", "-F", "-t", flavour, "-b", "1024", str(img), "16M")
                return image_env(flavour, "ext2", img)
            DRIVERS[flavour] = make
    if "msdos" in names:
        for bits, size in ((12, "4096"), (16, "32768"), (32, "65536")):
            def make(tmp: Path, posix: bool = False, bits: int = bits,
                     size: str = size) -> FsEnv:
                img = tmp / f"fat{bits}.img"
                run("mkfs.fat", "-C", "-F", str(bits), str(img), size)
                return image_env(f"fat{bits}", "msdos", img)
            DRIVERS[f"fat{bits}"] = make


_register_optional()
