"""The FUSE client mode of ``tests/fs``: the kernel's ``/mnt`` served by the FUSE server in this
process, and the suite's calls made by the host on the mount (``hostsys.HostSys``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rumpkernel.testing.hostsys import HostSys, host_user

OPTIONS = ("allow_other", "default_permissions", "dev", "suid")


def fuse_usable() -> str | None:
    """Why FUSE tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "FUSE mode needs root (mounts with allow_other, seteuid for other users)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (apt-get install fuse3)"
    return None


def need_fuse() -> None:
    """Skip without root, /dev/fuse or fusermount3 -- fail instead where the test command
    requires its oracles (RUMPKERNEL_REQUIRE_ORACLES=1, as in CI)."""
    from rumpkernel.testing.plugin import need_root, need_tools

    need_root()
    need_tools("fusermount3")
    why = fuse_usable()
    if why:
        pytest.skip(why)


class FuseMode:
    """One FUSE mount of ``env.k``'s /mnt under ``tmp``; ``sys`` is the host view."""

    def __init__(self, env: Any, tmp: Path, nthreads: int = 2) -> None:
        need_fuse()
        self.env = env
        self.home = os.getcwd()
        # other users must reach the mount (pytest's own tmp directories are 0700)
        self.root = Path(tempfile.mkdtemp(prefix=f"fuse-fs-{os.getpid()}-"))
        self.root.chmod(0o755)
        (self.root / "mnt").mkdir()
        self.sys = HostSys(str(self.root))
        self.nthreads = nthreads
        self.m: Any = None
        self.start()

    def start(self) -> None:
        from rumpkernel.client.fuse import FuseMount, LocalKernel

        kernel = LocalKernel(self.env.k, "/mnt")
        self.m = FuseMount(kernel, str(self.root / "mnt"), options=OPTIONS,
                           fsname=f"fs-suite-{self.env.name}", nthreads=self.nthreads)
        try:
            self.m.start()
        except BaseException:
            kernel.close()
            raise

    def stop(self) -> None:
        """Unmount (lazily if still busy) and wait for the server; the mirror directory goes
        at the end."""
        os.chdir(self.home)
        self.sys.close_all()
        m, self.m = self.m, None
        if m is None:
            return
        try:
            failure = m.unmount(timeout=30)
        except OSError:
            failure = m.unmount(lazy=True, timeout=30)
        if failure is not None:
            raise failure

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def remount(self) -> None:
        """What reached the kernel's disk is all that is left: unmount the FUSE mount and the
        kernel file system, mount both again."""
        env = self.env
        self.stop()
        env.k.sys.unmount("/mnt")
        env.k.mount_image(str(env.image), "/mnt", fstype=env.fstype, options=env.mount_opts)
        self.start()

    @contextlib.contextmanager
    def user(self, uid: int, gid: int, groups: tuple[int, ...]) -> Iterator[None]:
        with host_user(uid, gid, groups):
            yield
