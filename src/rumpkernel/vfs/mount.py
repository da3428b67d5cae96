"""Mounts and the VFS state of one kernel.

Interface:
    Mount                      one mounted file system: ``fs`` (the driver instance), ``rootvp``,
                               ``covered`` (the vnode it is mounted on), ``readonly``, ``lock``
    Vfs(k)                     the faction's state, ``k.vfs``:
        register_fstype(cls)   make a driver mountable by name (and probe-able)
        mount(fstype, covered, readonly, options, dev) -> Mount
        unmount(mp, force)     EBUSY while any vnode (or a working directory) is referenced
        sync()                 flush every mount
        probe(dev) -> name     the first driver whose probe accepts the device
        bdevs / cdevs          device number -> block device / character device driver
        vcache                 the vnode cache
Rules: only the kernel's VFS calls drivers, always under the mount's lock.  A failing driver
``mount`` leaves nothing behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.bio import BlockDevice
from rumpkernel.vfs.fstype import FileSystemType, LazyFileSystemType, MountContext
from rumpkernel.vfs.vnode import MountLock, Vnode, VnodeCache
from rumpkernel.vfs.vnode_if import FileSystem

if TYPE_CHECKING:
    from rumpkernel.kern.kernel import Kernel

MNT_RDONLY = 0x1
MNT_NOSUID = 0x8
MNT_FORCE = 0x80000

DEV_MAJOR_ETFS = 253


class Mount:
    __slots__ = ("covered", "dead", "dev", "fs", "fstype", "id", "lock", "options", "readonly",
                 "rootvp", "source")

    def __init__(self, k: Kernel, mid: int, fstype: str, fs: FileSystem, readonly: bool,
                 dev: BlockDevice | None, source: str, options: dict[str, str]) -> None:
        self.id = mid
        self.fstype = fstype
        self.fs = fs
        self.readonly = readonly
        self.dev = dev
        self.source = source
        self.options = options
        self.lock = MountLock(k)
        self.rootvp: Vnode = None  # type: ignore[assignment]
        self.covered: Vnode | None = None
        self.dead = False

    def __repr__(self) -> str:
        return f"<Mount {self.fstype} {self.source} id={self.id}{' ro' if self.readonly else ''}>"


class Vfs:
    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.fstypes: dict[str, type[FileSystemType] | LazyFileSystemType] = {}
        self.probe_order: list[str] = []
        self.mounts: list[Mount] = []
        self.vcache = VnodeCache(k)
        self.rootvp: Vnode = None  # type: ignore[assignment]
        self.bdevs: dict[int, BlockDevice] = {}
        self.cdevs: dict[int, Any] = {}
        self._next_mount_id = 1
        self.next_etfs_minor = 0

    # ---- drivers --------------------------------------------------------------------------
    def register_fstype(self, cls: type[FileSystemType] | LazyFileSystemType, *,
                        probe: bool = True) -> None:
        self.fstypes[cls.name] = cls
        if probe and cls.needs_device and cls.name not in self.probe_order:
            self.probe_order.append(cls.name)

    def fstype(self, name: str) -> type[FileSystemType]:
        cls = self.fstypes.get(name)
        if cls is None:
            raise KernelError(Errno.ENODEV, f"unknown file system type {name!r} "
                              f"(known: {', '.join(sorted(self.fstypes))})")
        if isinstance(cls, LazyFileSystemType):
            cls = self.fstypes[name] = cls.load()
        return cls

    def probe(self, dev: BlockDevice) -> str:
        tried = []
        for name in self.probe_order:
            tried.append(name)
            entry = self.fstypes[name]
            try:
                if isinstance(entry, LazyFileSystemType) and not entry.quick_probe(dev):
                    continue
                if self.fstype(name).probe(dev):
                    return name
            except KernelError:
                continue
        raise KernelError(Errno.EINVAL, f"{dev.name}: no file system recognised "
                          f"(tried: {', '.join(tried) or 'none registered'})")

    def context(self, dev: BlockDevice | None, readonly: bool,
                options: dict[str, str]) -> MountContext:
        k = self.k
        return MountContext(dev=dev, readonly=readonly, options=options, now_ns=k.time_ns,
                            random_bytes=k.random_bytes, log=k.log, kmem=k.kmem)

    # ---- mount and unmount ----------------------------------------------------------------
    def mount(self, fstype: str, covered: Vnode | None, readonly: bool,
              options: dict[str, str], dev: BlockDevice | None, source: str) -> Mount:
        cls = self.fstype(fstype)
        if cls.needs_device and dev is None:
            raise KernelError(Errno.ENOTBLK, f"{fstype} needs a device (from=...)")
        unknown = set(options) - cls.option_names - {"from", "ro", "rw"}
        if unknown:
            raise KernelError(Errno.EINVAL, f"{fstype}: unknown mount options "
                              f"{', '.join(sorted(unknown))}")
        if dev is not None and dev.readonly and not readonly:
            self.k.log(f"{dev.name}: device is read-only, mounting read-only")
            readonly = True
        driver_opts = {k: v for k, v in options.items() if k not in ("from", "ro", "rw")}
        fs = cls.mount(self.context(dev, readonly, driver_opts))
        readonly = readonly or fs.readonly
        mp = Mount(self.k, self._next_mount_id, cls.name, fs, readonly, dev, source, options)
        self._next_mount_id += 1
        try:
            mp.rootvp = self.vcache.get(mp, fs.root_ino)
        except KernelError:
            with mp.lock:
                fs.unmount()
            raise
        if not mp.rootvp.isdir:
            self.vcache.vrele(mp.rootvp)
            self.vcache.purge(mp)
            raise KernelError(Errno.EUCLEAN, f"{fstype}: root inode is not a directory")
        if covered is not None:
            self.vcache.vref(covered)
            covered.mounted_here = mp
            mp.covered = covered
        self.mounts.append(mp)
        self.k.log(f"mounted {fstype} from {source}{' (read-only)' if readonly else ''}")
        return mp

    def unmount(self, mp: Mount, force: bool = False) -> None:
        if any(m.covered is not None and m.covered.mount is mp for m in self.mounts):
            raise KernelError(Errno.EBUSY, "another file system is mounted inside")
        busy = self.vcache.busy(mp, allowed=1)
        if busy and not force:
            raise KernelError(Errno.EBUSY, f"{len(busy)} files in use")
        err: KernelError | None = None
        with mp.lock:
            try:
                mp.fs.unmount()
            except KernelError as e:
                if not force:
                    raise
                err = e
        mp.dead = True
        self.vcache.purge(mp)
        if mp.covered is not None:
            mp.covered.mounted_here = None
            self.vcache.vrele(mp.covered)
            mp.covered = None
        self.mounts.remove(mp)
        if mp.dev is not None:
            close = getattr(mp.dev, "release", None)
            if close is not None:
                close()
        self.k.log(f"unmounted {mp.fstype} from {mp.source}")
        if err is not None:
            self.k.log(f"unmount: {err}")

    def sync(self) -> None:
        for mp in list(self.mounts):
            if not mp.readonly and not mp.dead:
                with mp.lock:
                    mp.fs.sync()

    def unmount_all(self, sync: bool) -> None:
        """Halt: unmount everything, innermost first (flushing unless ``sync`` is False)."""
        for mp in sorted(self.mounts, key=lambda m: -m.id):
            if mp.covered is None:
                continue
            try:
                if not sync:
                    mp.dead = True
                self.unmount(mp, force=True)
            except KernelError as e:
                self.k.log(f"halt: unmount {mp.source}: {e}")

    def mount_of(self, vp: Vnode) -> Mount:
        return vp.mount

    def stats(self) -> dict[str, Any]:
        return {"mounts": [(m.fstype, m.source, m.readonly) for m in self.mounts],
                **{f"vnodes_{k}": v for k, v in self.vcache.stats().items()}}
