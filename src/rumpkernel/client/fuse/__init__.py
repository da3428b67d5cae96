"""The microkernel file server (p2k, dissertation section 3.11): a kernel file system served to
the host through FUSE, so the driver parsing an image runs in a process, not in the host kernel.

    from rumpkernel.client.fuse import FuseMount, LocalKernel, Config
    k = rumpkernel.boot(); k.mount_image("disk.img", "/mnt")
    m = FuseMount(LocalKernel(k, "/mnt"), "/host/dir").start()
    ...                      # host programs use /host/dir
    m.unmount()              # or fusermount3 -u /host/dir; then m.wait()

Modules: ``proto`` (the FUSE wire protocol, sans-IO), ``server`` (requests to system calls),
``kernel`` (local or remote kernel, per-request credentials).  The host loop, mounting and
unmounting are ``hypercall.fusedev``; the command is ``apps/rump_mount``.

Interface:
    FuseMount(kernel, mountpoint, config=Config(), options=(), fsname=, subtype=, readonly=,
              nthreads=1)
        .start()               mount on the host and serve in background threads
        .wait(timeout=None)    None once unmounted, or the exception that stopped serving
        .unmount(lazy=False)   unmount on the host, wait for the server, release the kernel side
        .abandon()             stop without unmounting (what a crash leaves: ENOTCONN)
        .server / .channel / .kernel
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from rumpkernel.client.fuse.kernel import LocalKernel, RemoteKernel
from rumpkernel.client.fuse.server import Config, FuseServer
from rumpkernel.hypercall import fusedev

__all__ = ["Config", "FuseMount", "FuseServer", "LocalKernel", "RemoteKernel"]


class FuseMount:
    def __init__(self, kernel: Any, mountpoint: str, config: Config | None = None,
                 options: Iterable[str] = (), fsname: str = "rumpkernel",
                 subtype: str = "rump", readonly: bool = False, nthreads: int = 1) -> None:
        self.kernel = kernel
        self.mountpoint = mountpoint
        self.config = config or Config()
        self.options = tuple(options)
        self.fsname = fsname
        self.subtype = subtype
        self.readonly = readonly
        self.nthreads = nthreads
        self.server = FuseServer(kernel, self.config, fusedev.caller_groups,
                                 fusedev.allocate_lock())
        self.channel: fusedev.Channel | None = None
        self.service: fusedev.Service | None = None
        self._closed = False

    def start(self) -> FuseMount:
        self.channel = fusedev.Channel.mount(self.mountpoint, self.fsname, self.subtype,
                                             self.options, self.readonly)
        self.service = fusedev.Service(self.channel, self.server.handle, self.kernel.worker,
                                       self.nthreads).start()
        return self

    def wait(self, timeout: float | None = None) -> BaseException | None:
        assert self.service is not None
        failure = self.service.wait(timeout)
        if failure is None and not self.service.running:
            self._release()
        return failure

    def unmount(self, lazy: bool = False, timeout: float = 60.0) -> BaseException | None:
        """Unmount on the host (if still mounted), wait for the server threads, then release
        the kernel side.  Returns what stopped the server abnormally, if anything."""
        if self.channel is not None and fusedev.is_mounted(self.channel.mountpoint):
            fusedev.unmount(self.channel.mountpoint, lazy=lazy)
        if self.service is None:
            self._release()
            return None
        failure = self.service.wait(timeout)
        if failure is None and self.service.running:
            raise TimeoutError(f"FUSE server on {self.mountpoint} did not stop")
        self._release()
        return failure

    def abandon(self) -> None:
        """Stop answering (the host sees ENOTCONN once the device closes); used after a
        failure, before the process exits."""
        if self.channel is not None:
            with contextlib.suppress(OSError):
                self.channel.close()

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.channel is not None:
            with contextlib.suppress(OSError):
                self.channel.close()
        self.kernel.close()
