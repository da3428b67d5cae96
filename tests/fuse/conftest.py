"""Fixtures for FUSE tests: kernels with a file system at /mnt, served on a host mount point that
is always unmounted again (also when a test fails)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rumpkernel
from rumpkernel.testing.plugin import checked
from tests.fuse.fsmode import need_fuse


def run(*cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=300, **kw)


def host_dir(prefix: str) -> Path:
    """A fresh directory other users can reach (pytest's tmp directories are 0700)."""
    d = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-"))
    d.chmod(0o755)
    return d


@contextlib.contextmanager
def served(k: Any, kpath: str = "/mnt", options: tuple[str, ...] = ("allow_other",
           "default_permissions"), nthreads: int = 1, **config: Any) -> Iterator[Any]:
    """``k``'s ``kpath`` on a fresh host mount point; yields the FuseMount (``.mountpoint``)."""
    from rumpkernel.client.fuse import Config, FuseMount, LocalKernel

    need_fuse()
    d = host_dir("fuse-t")
    kernel = LocalKernel(k, kpath)
    m = FuseMount(kernel, str(d), Config(**config), options, fsname="fuse-test",
                  nthreads=nthreads)
    try:
        m.start()
    except BaseException:
        kernel.close()
        shutil.rmtree(d, ignore_errors=True)
        raise
    home = os.getcwd()
    try:
        yield m
    finally:
        os.chdir(home)
        try:
            failure = m.unmount(timeout=30)
        except OSError:
            failure = m.unmount(lazy=True, timeout=30)
        shutil.rmtree(d, ignore_errors=True)
    if failure is not None:
        raise failure


@pytest.fixture
def tmpfs_kernel() -> Iterator[Any]:
    """A posix-host kernel with a tmpfs at /mnt (mode 755), leak-checked at the end."""
    k = rumpkernel.boot()
    k.sys.mkdir("/mnt", 0o755)
    k.sys.mount("tmpfs", "/mnt", 0, {"mode": "755"})
    yield from checked(k)


@pytest.fixture
def ext4_image(tmp_path: Path) -> Path:
    img = tmp_path / "ext4.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", str(img), "64M")
    return img


@pytest.fixture
def ext4_kernel(ext4_image: Path) -> Iterator[Any]:
    k = rumpkernel.boot()
    k.mount_image(str(ext4_image), "/mnt")
    yield from checked(k)
