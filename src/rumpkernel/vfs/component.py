"""The vfs faction: boot-time setup, etfs, images, and the kernel-side tools built on them.

At init the VFS mounts rumpfs as the root, creates ``/dev``, points every process's working
directory at the root, installs the file system calls and attaches itself to the kernel's
halt, fork/exit and statistics hooks.

Kernel-object API (``k.vfs.api``; ``Kernel.etfs_register`` etc. enter the kernel and call these
with the calling lwp first):
    etfs_register(l, key, host_path, kind, offset=0, size=None, readonly=False)
    etfs_remove(l, key)
    mount_image(l, host_path, target, fstype=None, readonly=False, partition=None, offset=0,
                options=None) -> fstype name
    newfs(l, fstype, host_path, partition, offset, options)   format a host file (or a
                                             partition window of it)
    put_file(l, dirfd, name, mode, uid, gid, data, size, atime_ns, mtime_ns)
                                             one new regular file, whole, in one kernel entry
                                             (makefs: creat + write + utimens without the
                                             per-call descriptor and path work)
"""

from __future__ import annotations

from typing import Any

from rumpkernel.kern import disklabel
from rumpkernel.kern.abi import AT_FDCWD, makedev
from rumpkernel.kern.component import Phase, component
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.blkdev import HostBlockDevice, HostFile
from rumpkernel.vfs.mount import DEV_MAJOR_ETFS, Vfs
from rumpkernel.vfs.namei import Namei
from rumpkernel.vfs.rumpfs import EtfsInfo, Rumpfs, RumpfsType
from rumpkernel.vfs.vattr import S_IFDIR

ETFS_KINDS = ("reg", "blk", "chr", "dir", "dir_subdirs")


class HostDirOpener:
    """What a mapped etfs directory uses to find and open host files."""

    def __init__(self, k: Any, readonly: bool) -> None:
        self.k = k
        self.readonly = readonly

    def listdir(self, path: str) -> list[str]:
        return self.k.hostcall(self.k.host.file_listdir, path)

    def kind(self, path: str) -> str | None:
        return self.k.host.file_kind(path)

    def open(self, path: str) -> HostFile:
        return _open_host(self.k, path, self.readonly)


def _open_host(k: Any, path: str, readonly: bool) -> HostFile:
    if not readonly:
        try:
            return HostFile(k, path, True)
        except KernelError as e:
            if e.errno not in (Errno.EACCES, Errno.EROFS, Errno.EPERM):
                raise
            k.log(f"etfs: {path} is not writable, mapping it read-only")
    return HostFile(k, path, False)


class VfsApi:
    """Image and etfs management on top of a kernel's Vfs."""

    def __init__(self, k: Any, vfs: Vfs) -> None:
        self.k = k
        self.vfs = vfs
        self.etfs: dict[str, tuple[EtfsInfo, int]] = {}
        self.next_image = 0
        # test hooks (testing/crashbed, testing/faultdev): each wraps a new host block device
        self.device_filters: list[Any] = []

    @property
    def rootfs(self) -> Rumpfs:
        return self.vfs.rootvp.mount.fs  # type: ignore[return-value]

    def etfs_register(self, l: Any, key: str, host_path: str, kind: str, offset: int = 0,
                      size: int | None = None, readonly: bool = False) -> None:
        if kind not in ETFS_KINDS:
            raise KernelError(Errno.EINVAL, f"etfs kind {kind!r} (one of {', '.join(ETFS_KINDS)})")
        if not key.startswith("/") or key in self.etfs:
            raise KernelError(Errno.EEXIST if key in self.etfs else Errno.EINVAL,
                              f"etfs key {key!r} must be a new absolute path")
        comps = [c for c in key.encode().split(b"/") if c]
        hkind = self.k.host.file_kind(host_path)
        if hkind is None:
            raise KernelError(Errno.ENOENT, f"etfs: host path {host_path} does not exist")
        rdev = 0
        if kind.startswith("dir"):
            if hkind != "dir":
                raise KernelError(Errno.ENOTDIR, f"etfs: {host_path} is not a directory")
            info = EtfsInfo(kind, None, host_path, HostDirOpener(self.k, readonly))
        else:
            if hkind == "dir":
                raise KernelError(Errno.EISDIR, f"etfs: {host_path} is a directory")
            hf = _open_host(self.k, host_path, readonly)
            if kind == "reg":
                info = EtfsInfo(kind, hf, host_path)
            else:
                try:
                    dev = HostBlockDevice(self.k, hf, offset, size, name=key, readonly=readonly)
                    for wrap in self.device_filters:
                        dev = wrap(dev)
                except KernelError:
                    hf.close()
                    raise
                rdev = makedev(DEV_MAJOR_ETFS, self.vfs.next_etfs_minor)
                self.vfs.next_etfs_minor += 1
                self.vfs.bdevs[rdev] = dev
                info = EtfsInfo(kind, dev, host_path)
        with self.vfs.rootvp.mount.lock:
            try:
                self.rootfs.etfs_add(comps, kind, info, rdev)
            except KernelError:
                self._close(info, rdev)
                raise
        self.etfs[key] = (info, rdev)

    def _close(self, info: EtfsInfo, rdev: int) -> None:
        self.vfs.bdevs.pop(rdev, None)
        backing = info.backing
        if isinstance(backing, HostFile):
            backing.close()
        elif isinstance(getattr(backing, "file", None), HostFile):
            backing.file.close()    # a host block device, perhaps wrapped by a test filter

    def etfs_remove(self, l: Any, key: str) -> None:
        entry = self.etfs.get(key)
        if entry is None:
            raise KernelError(Errno.ENOENT, f"etfs: no key {key!r}")
        info, rdev = entry
        if rdev and any(m.dev is info.backing for m in self.vfs.mounts):
            raise KernelError(Errno.EBUSY, f"etfs: {key} is mounted")
        comps = [c for c in key.encode().split(b"/") if c]
        with self.vfs.rootvp.mount.lock:
            self.rootfs.etfs_remove(comps)
        del self.etfs[key]
        self._close(info, rdev)

    def _window(self, host_path: str, partition: int | None, offset: int) -> tuple[int, int | None]:
        if partition is None:
            return offset, None
        hf = HostFile(self.k, host_path, False)
        try:
            part = disklabel.find(lambda o, n: hf.pread(o, n), hf.size(), partition)
        finally:
            hf.close()
        return part.offset, part.size

    def image_device(self, host_path: str, readonly: bool, partition: int | None,
                     offset: int, prefix: str = "img") -> tuple[str, Any]:
        start, size = self._window(host_path, partition, offset)
        key = f"/dev/{prefix}{self.next_image}"
        self.next_image += 1
        self.etfs_register(None, key, host_path, "blk", offset=start, size=size,
                           readonly=readonly)
        _info, rdev = self.etfs[key]
        return key, self.vfs.bdevs[rdev]

    def mount_image(self, l: Any, host_path: str, target: str, fstype: str | None,
                    readonly: bool, partition: int | None, offset: int,
                    options: dict[str, Any] | None) -> str:
        from rumpkernel.vfs.vfs_syscalls import parse_options

        key, dev = self.image_device(host_path, readonly, partition, offset)
        try:
            name = fstype or self._probe(dev, host_path, partition, offset)
            self.makedirs(l, target.encode())
            opts = parse_options(_options_text(options).encode())
            opts["from"] = key
            mp_dev, source = dev, key
            vp = self.vfs.namei.walk(l, AT_FDCWD, target.encode())
            try:
                if not vp.isdir:
                    raise KernelError(Errno.ENOTDIR, f"{target} is not a directory")
                if vp.mounted_here is not None:
                    raise KernelError(Errno.EBUSY, f"{target} is already a mount point")
                self.vfs.mount(name, vp, readonly or "ro" in opts, opts, mp_dev, source)
            finally:
                self.vfs.vcache.vrele(vp)
        except BaseException:
            self.etfs_remove(l, key)
            raise
        return name

    def _probe(self, dev: Any, host_path: str, partition: int | None, offset: int) -> str:
        """The type of the image's file system; the error names the host file (not the
        kernel's device node) and, on a partitioned disk, the partitions to choose from."""
        try:
            return self.vfs.probe(dev)
        except KernelError as e:
            detail = (e.detail or "").replace(f"{dev.name}:", f"{host_path}:", 1)
            if partition is None and not offset:
                parts = disklabel.partitions(lambda o, n: dev.pread(o, n), dev.size)
                if parts:
                    nums = ", ".join(str(p.number) for p in parts)
                    detail += (f"; {host_path} has a partition table (partitions {nums}): "
                               f"mount one with partition=N")
            raise KernelError(e.errno, detail) from None

    def makedirs(self, l: Any, path: bytes) -> None:
        from rumpkernel.vfs.vfs_names import sys_mkdirat

        parts = [c for c in path.split(b"/") if c]
        for i in range(1, len(parts) + 1):
            sub = b"/" + b"/".join(parts[:i])
            try:
                sys_mkdirat(l, AT_FDCWD, sub, 0o755)
            except KernelError as e:
                if e.errno != Errno.EEXIST:
                    raise

    def newfs(self, l: Any, fstype: str, host_path: str, partition: int | None, offset: int,
              options: dict[str, Any]) -> None:
        cls = self.vfs.fstype(fstype)
        key, dev = self.image_device(host_path, False, partition, offset, prefix="newfs")
        try:
            cls.newfs(dev, **options)
            dev.flush()
        finally:
            self.etfs_remove(l, key)

    def put_file(self, l: Any, dirfd: int, name: bytes, mode: int, uid: int, gid: int,
                 data: bytes, size: int, atime_ns: int, mtime_ns: int) -> None:
        """Create regular file ``name`` (one component) in the directory open as ``dirfd``,
        owned by ``uid``:``gid`` with permission bits ``mode`` (no umask), holding ``data``
        from offset 0 and ``size`` bytes long (a hole after the data), with the times given:
        the driver's own create, write and setattr under one hold of the mount's lock.
        Superuser only (EPERM); EEXIST when the name exists, EINVAL for a bad name or size,
        ENOTDIR, EROFS, ENAMETOOLONG, ENOSPC as creat(2) and write(2).  A failure after the
        create leaves the file (as a failed write(2) does)."""
        from rumpkernel.vfs.vattr import S_IFREG, SetAttr
        from rumpkernel.vfs.vfs_common import check_name, fd_vnode, require_writable

        if l.proc.cred.euid != 0:
            raise KernelError(Errno.EPERM, "put_file: superuser only")
        if not name or b"/" in name or b"\0" in name or name in (b".", b".."):
            raise KernelError(Errno.EINVAL, f"put_file: bad name {name!r}")
        if size < len(data) or mode & ~0o7777:
            raise KernelError(Errno.EINVAL, "put_file: size below the data, or bad mode")
        dvp = fd_vnode(l, dirfd)
        if not dvp.isdir:
            raise KernelError(Errno.ENOTDIR, f"fd {dirfd} is not a directory")
        mp = dvp.mount
        if mp.dead:
            raise KernelError(Errno.EIO, "file system was unmounted")
        require_writable(dvp)
        check_name(dvp, name)
        with mp.lock:
            ino = mp.fs.create(dvp.node, name, S_IFREG | mode, uid, gid, 0)
        vp = self.vfs.vcache.get(mp, ino, S_IFREG)
        try:
            with mp.lock:
                fs = mp.fs
                done = 0
                while done < len(data):
                    done += fs.write(vp.node, done, data[done:] if done else data)
                fs.setattr(vp.node, SetAttr(size=size if size > done else None,
                                            atime_ns=atime_ns, mtime_ns=mtime_ns))
        finally:
            self.vfs.vcache.vrele(vp)

    def close_all(self) -> None:
        for key in list(self.etfs):
            try:
                self.etfs_remove(None, key)
            except KernelError as e:
                self.k.log(f"halt: etfs {key}: {e}")


def _options_text(options: dict[str, Any] | str | None) -> str:
    if options is None:
        return ""
    if isinstance(options, str):
        return options
    return ",".join(k if v is True else f"{k}={v}" for k, v in options.items()
                    if v is not False and v is not None)


def _vnode_refs(vfs: Vfs) -> int:
    return sum(vp.usecount for vp in vfs.vcache.table.values())


@component("vfs", phase=Phase.VFS, faction="vfs", desc="virtual file system layer")
def vfs_init(k: Any) -> None:
    import rumpkernel.vfs.vfs_syscalls as vfs_syscalls

    vfs = Vfs(k)
    vfs.namei = Namei(vfs)  # type: ignore[attr-defined]
    k.vfs = vfs
    vfs.register_fstype(RumpfsType, probe=False)
    root = vfs.mount("rumpfs", None, False, {"mode": "755"}, None, "rumpfs")
    vfs.rootvp = root.rootvp
    with root.lock:
        root.fs.mkdir(root.fs.vget(root.fs.root_ino), b"dev", S_IFDIR | 0o755, 0, 0)
    for p in (k.proc0, k.proc1):
        p.cwd = vfs.vcache.vref(vfs.rootvp)
    api = VfsApi(k, vfs)
    vfs.api = api  # type: ignore[attr-defined]
    k.install_syscalls("vfs", vfs_syscalls)
    k.sysctl.add("vfs.maxvnodes", "int", getter=lambda: vfs.vcache.maxvnodes,
                 setter=lambda v: setattr(vfs.vcache, "maxvnodes", max(16, v)), writable=True)
    k.sysctl.add("vfs.numvnodes", "int", getter=lambda: len(vfs.vcache.table))
    # one line per mount: "<id = st_dev of its files> <fstype> <source> ro|rw"
    k.sysctl.add("vfs.mounts", "str", getter=lambda: "\n".join(
        f"{m.id} {m.fstype} {m.source} {'ro' if m.readonly else 'rw'}" for m in vfs.mounts))
    _attach_hooks(k, vfs, api)


def _release_dirs(vfs: Vfs, p: Any) -> None:
    for attr in ("cwd", "root"):
        vp = getattr(p, attr)
        if vp is not None:
            setattr(p, attr, None)
            vfs.vcache.vrele(vp)


def _attach_hooks(k: Any, vfs: Vfs, api: VfsApi) -> None:
    """The VFS's part in fork/exit (working directories), halt (flush, unmount everything,
    close etfs host files) and statistics."""

    def on_fork(parent: Any, child: Any) -> None:
        child.cwd = vfs.vcache.vref(parent.cwd or vfs.rootvp)
        if parent.root is not None:
            child.root = vfs.vcache.vref(parent.root)

    def on_halt(sync: bool) -> None:
        if sync:
            vfs.sync()
        vfs.unmount_all(sync)

    def on_halt_final() -> None:
        _release_dirs(vfs, k.proc1)
        _release_dirs(vfs, k.proc0)
        api.close_all()
        rmp = vfs.rootvp.mount
        vfs.vcache.vrele(vfs.rootvp)
        with rmp.lock:
            rmp.fs.unmount()
        rmp.dead = True
        vfs.vcache.purge(rmp)
        vfs.mounts.clear()

    def on_stats(stats: dict[str, Any]) -> None:
        stats["vnodes"] = vfs.vcache.stats()
        stats["vnode_refs"] = stats["vnodes_referenced"] = _vnode_refs(vfs)
        stats["mounts"] = [(m.fstype, m.source, "ro" if m.readonly else "rw")
                           for m in vfs.mounts]

    k.hooks.add("proc_fork", on_fork)
    k.hooks.add("proc_exit", lambda p: _release_dirs(vfs, p))
    k.hooks.add("halt", on_halt)
    k.hooks.add("halt_final", on_halt_final)
    k.hooks.add("statistics", on_stats)
