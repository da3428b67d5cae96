"""The mounted FAT file system: mount-time checks, nodes, and the vnode operations.

Interface:
    mount_fs(ctx, fstype) -> MsdosFS       -- validate the boot sector, load the FAT, parse root
    MsdosFS                                -- ``vnode_if.FileSystem`` for FAT12/16/32 + VFAT

Rules: the driver runs under the VFS's per-mount lock and trusts the VFS for permission, EROFS,
type and name-syntax checks.  Everything read from the image is checked before use (layout,
Geometry, FatTable.chain, Directory); failures are KernelError (EUCLEAN for corruption, EINVAL
for "not FAT").  While mounted read-write the FAT16/32 clean bit is cleared; a clean unmount sets
it again (unless the volume was already dirty at mount).  Directory operations live in
``dirops``; file data in ``fileio``.
"""

from __future__ import annotations

from array import array

from rumpkernel.fs.msdos import fileio
from rumpkernel.fs.msdos.directory import MAX_SLOTS, Directory
from rumpkernel.fs.msdos.dirops import DirOps
from rumpkernel.fs.msdos.fat import FatTable
from rumpkernel.fs.msdos.fattime import date_to_ns, from_fat, to_fat
from rumpkernel.fs.msdos.layout import (
    ATTR_ARCHIVE,
    ATTR_DIR,
    ATTR_HIDDEN,
    ATTR_LFN,
    ATTR_READONLY,
    ATTR_SYSTEM,
    ATTR_VOLUME,
    DIRENT_SIZE,
    FsInfo,
    Geometry,
    ShortEntry,
)
from rumpkernel.fs.msdos.names import DOT, DOTDOT, ShortNamer
from rumpkernel.fs.msdos.node import ROOT_INO, InodeTable, Node
from rumpkernel.fs.msdos.options import MountOptions
from rumpkernel.fs.msdos.probe import find_volume
from rumpkernel.fs.msdos.scan import scan_entries
from rumpkernel.kern.errno import Errno, KernelError, corrupt
from rumpkernel.vfs.bio import BlockIO
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.vattr import S_IFDIR, S_IFREG, FsFeatures, StatFS, VAttr
from rumpkernel.vfs.vnode_if import FileSystem

FAT_FEATURES = FsFeatures(
    symlinks=False, hardlinks=False, special_files=False, owners=False, permissions=False,
    link_max=1, name_max=255, case_insensitive=True, sparse=False, xattr=False,
    time_resolution_ns=2_000_000_000, max_file_size=fileio.MAX_FILE_SIZE,
    unsupported_errno={"symlink": int(Errno.EPERM), "link": int(Errno.EPERM),
                       "mknod": int(Errno.EPERM), "chown": int(Errno.EPERM)})


class MsdosFS(DirOps, FileSystem):
    features = FAT_FEATURES
    root_ino = ROOT_INO

    def __init__(self, ctx: MountContext, fstype: str) -> None:
        self.ctx = ctx
        self.log = ctx.log
        self.fstype = fstype
        self.opts = MountOptions.parse(ctx.options)
        self.mode = self.opts.shortname
        self.codepage = self.opts.codepage
        self.namer = ShortNamer(self.mode)
        dev = ctx.dev
        if dev is None:
            raise KernelError(Errno.ENOTBLK, "msdos: needs a block device")
        self.offset, boot = find_volume(dev, self.opts.offset, self.opts.partition)
        self.boot = boot
        self.geo = Geometry.from_boot(boot, dev.size - self.offset)
        self.readonly = bool(ctx.readonly or dev.readonly)
        self.bio: BlockIO = ctx.blockio(self.geo.sector_size, first_byte=self.offset)
        try:
            self._setup(ctx)
        except KernelError:
            self.bio.invalidate()
            if ctx.kmem is not None:
                ctx.kmem.unregister_reclaimer(self.bio.reclaim)
            raise

    def _setup(self, ctx: MountContext) -> None:
        self.fat = FatTable(self.bio, self.geo)
        self.inos = InodeTable()
        self._serial = 1
        self._owner = array("I", bytes(4 * (self.geo.max_cluster + 1)))
        self._parent_hint: dict[int, int] = {}
        self.damage: str | None = None
        self.sync_gen = 0
        self.ro_reason = ""
        self.free_known = True
        self.fsinfo_ok = self._read_fsinfo()
        self.was_clean = self.fat.clean
        if not self.readonly:
            self._cross_check_fats()
            if not self.readonly:
                self._scan()
        self.root = self._make_root()
        self.label = self._read_label()
        if not self.was_clean:
            self.log("msdos: volume was not properly unmounted; run fsck")
        self._kmem_bytes = self.fat.arr.itemsize * len(self.fat.arr) + 4 * len(self._owner)
        if ctx.kmem is not None:
            ctx.kmem.alloc(self._kmem_bytes, "msdos")
        self.fat.short_hook = self.sync
        if not self.readonly:
            self.bio.before_flush = self._before_flush
            self.fat.set_clean(False)
            self._write_fsinfo(known=False)
            self.sync()

    # -- mount helpers ----------------------------------------------------------------------
    def _read_fsinfo(self) -> bool:
        geo, boot = self.geo, self.boot
        if geo.fat_bits != 32 or not 1 <= boot.fsinfo_sector < geo.reserved:
            return False
        try:
            info = FsInfo.parse(self.bio.read(boot.fsinfo_sector))
        except KernelError:
            self.log("msdos: FSInfo sector invalid; ignored")
            return False
        if 2 <= info.next_free <= geo.max_cluster:
            self.fat.next_free = info.next_free
        if info.free_count not in (0xFFFFFFFF, self.fat.free_count):
            self.free_known = False
            self.log(f"msdos: FSInfo free count {info.free_count} but the FAT has "
                     f"{self.fat.free_count} free clusters; the count will be marked unknown")
        return True

    def _cross_check_fats(self) -> bool:
        """Write mounts trust no single FAT copy: an entry free in one copy and used in another
        counts as used; entries used in both but different make the mount read-only -- unless
        the volume was not cleanly unmounted: a cut between the two copies' writes leaves them
        different, and our write order makes either copy safe to keep, so FAT 1 wins (as in
        fsck.fat)."""
        merged, conflicts = self.fat.merge_copies()
        if merged or conflicts:
            self.free_known = False
        if merged:
            self.log(f"msdos: {merged} FAT entries free in one copy but used in another; "
                     "kept as used")
        if conflicts and not self.was_clean:
            self.log(f"msdos: the FAT copies differ at {len(conflicts)} clusters after an "
                     "unclean unmount; using FAT 1")
        elif conflicts:
            c, a, b = conflicts[0]
            self.fall_back_ro(f"the FAT copies disagree at {len(conflicts)} clusters "
                              f"(cluster {c}: {a:#x} vs {b:#x}); run fsck.fat")
        return bool(merged or conflicts)

    def _scan(self) -> None:
        """Pin free clusters that entries still use; refuse changes when damaged."""
        problems = scan_entries(self)
        if problems:
            self.log(f"msdos: {len(problems)} problems found: " + "; ".join(problems[:5]))
            self.note_damage(problems[0])

    def fall_back_ro(self, why: str) -> None:
        self.readonly = True
        self.ro_reason = why
        self.log(f"msdos: {self.ctx.dev.name if self.ctx.dev else ''}: mounting read-only: "
                 f"{why}")

    def _make_root(self) -> Node:
        geo = self.geo
        ent = ShortEntry(name=b" " * 11, attr=ATTR_DIR).with_cluster(geo.root_cluster)
        node = Node(ROOT_INO, self._next_serial(), ent, None, True)
        node.parent = ROOT_INO
        self.inos.live[ROOT_INO] = node
        self.root = node
        if geo.fat_bits == 32:
            self.chain_of(node)
        else:
            node.chain = []
        self.dir_of(node)
        return node

    def _read_label(self) -> str:
        assert self.root.dir is not None
        raw = self.root.dir.label
        if raw is None and self.boot.ext_signature in (0x28, 0x29):
            raw = self.boot.label
        if raw is None or raw == b"NO NAME    ":
            return ""
        return raw.decode(self.codepage, "replace").rstrip(" ")

    def _next_serial(self) -> int:
        self._serial = self._serial + 1 if self._serial < 0xFFFFFFFF else 1
        return self._serial

    # -- damage ---------------------------------------------------------------------------
    def note_damage(self, what: str) -> None:
        """Corruption of the FAT or of cluster chains was seen: the FSInfo free count becomes
        unknown and the mount refuses further changes (``check_writable``)."""
        self.free_known = False
        if self.damage is None and not self.readonly:
            self.damage = what.removeprefix("msdos: ")
            self.log(f"msdos: {self.damage}; further changes refused (run fsck.fat)")

    def check_writable(self, node: Node | None = None) -> None:
        """EROFS on a read-only mount (saying why when the driver chose it) or once damage was
        seen; EUCLEAN for a file whose chain does not fit its size."""
        if self.readonly:
            raise KernelError(Errno.EROFS, f"msdos: read-only: {self.ro_reason}"
                              if self.ro_reason else "msdos: mounted read-only")
        if self.damage is not None:
            raise KernelError(Errno.EROFS, f"msdos: read-only after finding damage: "
                              f"{self.damage} (run fsck.fat)")
        if node is not None and node.damaged is not None:
            raise KernelError(Errno.EUCLEAN, f"msdos: file {node.ino}: {node.damaged}; "
                              "not changed (run fsck.fat)")

    # -- services for Directory and fileio --------------------------------------------------
    def read_sectors(self, sectors: list[int]) -> bytes:
        out = []
        i = 0
        while i < len(sectors):
            j = i + 1
            while j < len(sectors) and sectors[j] == sectors[j - 1] + 1 and j - i < 2048:
                j += 1
            out.append(self.bio.read_run(sectors[i], j - i))
            i = j
        return b"".join(out)

    def cluster_sectors(self, clusters: list[int]) -> list[int]:
        geo = self.geo
        spc = geo.cluster_sectors
        out: list[int] = []
        for c in clusters:
            s = geo.data_start + (c - 2) * spc
            out.extend(range(s, s + spc))
        return out

    def chain_of(self, node: Node) -> list[int]:
        """The node's cluster chain (walked once, checked for sharing with live nodes)."""
        if node.chain is None:
            first = node.entry.cluster
            try:
                chain = self.fat.chain(first) if first else []
            except KernelError as e:
                self.note_damage(e.detail or "bad cluster chain")
                raise
            self.own(node, chain)
            node.chain = chain
        return node.chain

    def own(self, node: Node, clusters: list[int]) -> None:
        owner, me = self._owner, node.serial
        for c in clusters:
            o = owner[c]
            if o and o != me:
                self.note_damage(f"cluster {c} belongs to two files")
                raise corrupt(f"msdos: cluster {c} belongs to two files")
            owner[c] = me
        for c in clusters:
            owner[c] = me

    def release(self, node: Node, clusters: list[int]) -> None:
        """Free ``clusters`` (a tail of ``node``'s chain) in the FAT."""
        owner, me = self._owner, node.serial
        spc = self.geo.cluster_sectors
        for c in clusters:
            if owner[c] == me:
                owner[c] = 0
            self.bio.forget(self.geo.cluster_sector(c), spc)
        self.fat.free_chain(clusters)

    def _disown(self, node: Node) -> None:
        if node.chain:
            owner, me = self._owner, node.serial
            for c in node.chain:
                if owner[c] == me:
                    owner[c] = 0

    def grow_dir(self, d: Directory) -> None:
        """Append one zeroed cluster to ``d`` (``Directory.plan_add`` has checked the limits)."""
        if d.is_root and self.geo.fat_bits != 32:
            raise KernelError(Errno.ENOSPC, "msdos: root directory full")
        if d.nslots + self.geo.cluster_size // DIRENT_SIZE > MAX_SLOTS:
            raise KernelError(Errno.EFBIG, f"msdos: directory full ({MAX_SLOTS} entries)")
        last = d.clusters[-1]
        new = self.fat.allocate(1, near=last)
        sectors = self.cluster_sectors(new)
        # zeroed on the device first: the FAT link that makes it part of the directory is
        # written (and barriered) before any entry in it
        try:
            self.bio.write_run(sectors[0], bytes(self.geo.cluster_size))
        except KernelError:
            self.fat.unallocate(new)
            raise
        self.fat.link(last, new[0])
        self._owner[new[0]] = d.owner
        d.extend(new, sectors)

    def dir_name(self, d: Directory) -> str:
        """The path of directory ``d`` from the volume root, for error messages."""
        if d.is_root:
            return "/"
        node = next((n for n in self.inos.live.values() if n.dir is d), None)
        parts: list[str] = []
        try:
            for _ in range(64):
                if node is None or node.ino == ROOT_INO:
                    break
                parent = self.inos.live.get(self.parent_ino(node))
                if parent is None:
                    parts.append("...")
                    break
                pd = self.dir_of(parent)
                slot = next((s for s in pd.entries_from(0, MAX_SLOTS)
                             if pd.epos(s.index) == node.epos), None)
                parts.append(slot.name if slot is not None else "?")
                node = parent
        except KernelError:
            parts.append("?")
        return "/" + "/".join(reversed(parts)) if parts else "a directory"

    def dir_of(self, node: Node) -> Directory:
        if node.dir is None:
            if not node.is_dir:
                raise KernelError(Errno.ENOTDIR, "msdos: not a directory")
            if node.ino == ROOT_INO and self.geo.fat_bits != 32:
                geo = self.geo
                sectors = list(range(geo.root_start, geo.root_start + geo.root_sectors))
                d = Directory(self, [], sectors, True)
            else:
                chain = self.chain_of(node)
                if len(chain) * self.geo.cluster_size > MAX_SLOTS * DIRENT_SIZE:
                    raise corrupt(f"msdos: directory {node.ino} longer than 2 MiB")
                d = Directory(self, chain, self.cluster_sectors(chain), node.ino == ROOT_INO)
            d.owner = node.serial
            node.dir = d
        return node.dir

    # -- entries and times ------------------------------------------------------------------
    def now_fat(self) -> tuple[int, int, int]:
        return to_fat(self.ctx.now_ns(), self.opts.time_offset_s)

    def write_entry(self, node: Node) -> None:
        if node.epos is None or self.readonly:
            return
        per = self.geo.sector_size // DIRENT_SIZE
        sec, k = divmod(node.epos, per)
        blk = bytearray(self.bio.read(sec))
        blk[k * DIRENT_SIZE : (k + 1) * DIRENT_SIZE] = node.entry.emit()
        self.bio.write(sec, bytes(blk))

    def set_first_cluster(self, node: Node, cluster: int) -> None:
        node.entry = node.entry.with_cluster(cluster)

    def file_changed(self, node: Node, size: int) -> None:
        d, t, _ = self.now_fat()
        e = node.entry
        node.entry = e.replace(attr=e.attr | ATTR_ARCHIVE, adate=d, mtime=t, mdate=d, size=size)
        self.write_entry(node)

    def touch_dir(self, dnode: Node) -> None:
        if dnode.epos is None:
            return
        d, t, _ = self.now_fat()
        e = dnode.entry
        dnode.entry = e.replace(adate=d, mtime=t, mdate=d)
        self.write_entry(dnode)

    # -- vget / reclaim ---------------------------------------------------------------------
    def vget(self, ino: int) -> Node:
        node = self.inos.live.get(ino)
        if node is not None:
            return node
        epos = self.inos.pos_of(ino)
        if epos is None:
            raise KernelError(Errno.ENOENT, f"msdos: inode {ino} is stale")
        ent = self._load_entry(epos)
        node = Node(ino, self._next_serial(), ent, epos, bool(ent.attr & ATTR_DIR))
        node.parent = self._parent_hint.pop(ino, None)
        self._check_node(node)
        self.inos.live[ino] = node
        return node

    def _load_entry(self, epos: int) -> ShortEntry:
        geo = self.geo
        per = geo.sector_size // DIRENT_SIZE
        sec, k = divmod(epos, per)
        lo = geo.root_start if geo.fat_bits != 32 else geo.data_start
        if not lo <= sec < geo.data_start + geo.clusters * geo.cluster_sectors:
            raise KernelError(Errno.ENOENT, f"msdos: inode {epos} outside directories")
        raw = self.bio.read(sec)[k * DIRENT_SIZE : (k + 1) * DIRENT_SIZE]
        ent = ShortEntry.parse(raw)
        if (raw[0] in (0, 0xE5) or ent.attr == ATTR_LFN or ent.attr & ATTR_VOLUME
                or ent.name in (DOT, DOTDOT)):
            raise KernelError(Errno.ENOENT, f"msdos: no entry at inode {epos}")
        return ent

    def _check_node(self, node: Node) -> None:
        ent, geo = node.entry, self.geo
        c = ent.cluster
        if node.is_dir:
            if not 2 <= c <= geo.max_cluster:
                raise corrupt(f"msdos: directory {node.ino} starts at cluster {c}")
            self.chain_of(node)
            return
        if c and not 2 <= c <= geo.max_cluster:
            raise corrupt(f"msdos: file {node.ino} starts at cluster {c}")
        nclusters = len(self.chain_of(node))
        cap = nclusters * geo.cluster_size
        if ent.size > cap:
            self.log(f"msdos: file {node.ino}: size {ent.size} beyond its chain ({cap}); "
                     "clamped")
            node.entry = ent.replace(size=cap)
            node.damaged = f"size {ent.size} beyond its cluster chain ({cap} bytes)"
        elif nclusters > -(-ent.size // geo.cluster_size) and self.was_clean:
            # (after a crash a chain longer than its size is an expected leak: writes reuse
            # the extra clusters, truncation frees them)
            node.damaged = f"cluster chain ({cap} bytes) longer than its size {ent.size}"
        if node.damaged is not None:
            self.free_known = False

    def reclaim(self, node: Node) -> None:
        if node is self.root:
            return
        self._disown(node)
        self.inos.forget(node)

    def inactive(self, node: Node) -> None:
        if node.unlinked and node.chain:
            self.release(node, node.chain)
            node.chain = []

    # -- attributes -------------------------------------------------------------------------
    def getattr(self, node: Node) -> VAttr:
        e, geo, opts = node.entry, self.geo, self.opts
        off = opts.time_offset_s
        if node.is_dir:
            mode = S_IFDIR | (0o777 & ~opts.dmask)
            d = self.dir_of(node)
            nlink = 0 if node.unlinked else 2 + d.subdirs
            size = len(d.sectors) * geo.sector_size
        else:
            mode = S_IFREG | (0o777 & ~opts.fmask)
            if e.attr & ATTR_READONLY:
                mode &= ~0o222
            nlink = 0 if node.unlinked else 1
            size = e.size
        nblocks = len(node.chain or ()) * geo.cluster_size // 512
        if node is self.root:
            mtime = atime = birth = 0
            nblocks = size // 512
        else:
            mtime = from_fat(e.mdate, e.mtime, 0, off)
            atime = date_to_ns(e.adate, off)
            birth = from_fat(e.cdate, e.ctime, e.ctime_cs, off)
        return VAttr(ino=node.ino, mode=mode, nlink=nlink, uid=opts.uid, gid=opts.gid,
                     size=size, atime_ns=atime, mtime_ns=mtime, ctime_ns=mtime,
                     birthtime_ns=birth, blocks=nblocks, blksize=geo.cluster_size,
                     flags=_flags(e.attr))

    def statfs(self) -> StatFS:
        cs = self.geo.cluster_size
        free = self.fat.free_total
        return StatFS(bsize=cs, frsize=cs, blocks=self.geo.clusters, bfree=free, bavail=free,
                      files=0, ffree=0, favail=0, namemax=255,
                      fsid=self.boot.volume_id)

    # -- data -------------------------------------------------------------------------------
    def read(self, node: Node, offset: int, size: int) -> bytes:
        if node.is_dir:
            raise KernelError(Errno.EISDIR, "msdos: read of a directory")
        return fileio.read_data(self, node, offset, size)

    def write(self, node: Node, offset: int, data: bytes) -> int:
        if node.is_dir:
            raise KernelError(Errno.EISDIR, "msdos: write to a directory")
        self.check_writable(node)
        return fileio.write_data(self, node, offset, data)

    # -- flushing ---------------------------------------------------------------------------
    def sync(self) -> None:
        """Make everything durable, in the order that lets a crash only leak clusters:
        1. FAT allocations and links (file data and new directory clusters were written
           straight to the device before them), then a barrier;
        2. directory entries (cached blocks), then a barrier;
        3. frees and chain cuts, then a barrier.
        A cut after 1 leaks the new clusters, after 2 the freed ones."""
        if self.readonly:
            return
        self.bio.flush(sync=True)             # runs _commit_allocations first if dirty
        self._commit_allocations()
        if self.fat.commit_frees() and self.fat.flush():
            self.bio.dev.flush()

    def fsync(self, node: Node, datasync: bool) -> None:
        self.sync()

    def barrier(self) -> None:
        """Everything so far durable before the next write (rename's new entry before the old
        one goes)."""
        self.bio.flush(sync=True)

    def _before_flush(self) -> None:
        self.sync_gen += 1            # entries written so far may reach the disk now
        self._commit_allocations()

    def _commit_allocations(self) -> None:
        if self.fat.flush():
            self.bio.dev.flush()

    def _write_fsinfo(self, known: bool) -> None:
        """FSInfo: the free count is written only at a clean unmount; while mounted
        read-write it says "unknown", so a crash never leaves a stale count behind."""
        if not self.fsinfo_ok:
            return
        free = self.fat.free_total if known and self.free_known else 0xFFFFFFFF
        info = FsInfo(free, self.fat.next_free)
        self.bio.write(self.boot.fsinfo_sector, info.emit(self.geo.sector_size))

    def unmount(self) -> None:
        if not self.readonly:
            self._free_unlinked()
            self.sync()
            self._write_fsinfo(known=True)
            if self.was_clean and self.damage is None:
                self.fat.set_clean(True)      # last: only a complete image is marked clean
            self.sync()
        self.bio.close()
        if self.ctx.kmem is not None:
            self.ctx.kmem.free(self._kmem_bytes, "msdos")

    def _free_unlinked(self) -> None:
        """Last-close semantics at unmount (a forced one at halt, with files still open):
        files removed while open give their clusters back, as ``inactive`` would have."""
        for node in list(self.inos.live.values()):
            if node.unlinked and node.chain and not node.is_dir:
                self.release(node, node.chain)
                node.chain = []

    def info(self) -> dict[str, object]:
        g = self.geo
        return {"fat_bits": g.fat_bits, "cluster_size": g.cluster_size, "clusters": g.clusters,
                "free_clusters": self.fat.free_total, "label": self.label,
                "volume_id": f"{self.boot.volume_id:08X}", "clean_at_mount": self.was_clean,
                "readonly_reason": self.ro_reason or self.damage or ""}


# FAT attributes as BSD file flags (FreeBSD's msdosfs values), shown in ``VAttr.flags``.
UF_SYSTEM, UF_ARCHIVE, UF_READONLY, UF_HIDDEN = 0x80, 0x800, 0x1000, 0x8000


def _flags(attr: int) -> int:
    return ((UF_READONLY if attr & ATTR_READONLY else 0) | (UF_HIDDEN if attr & ATTR_HIDDEN else 0)
            | (UF_SYSTEM if attr & ATTR_SYSTEM else 0) | (UF_ARCHIVE if attr & ATTR_ARCHIVE else 0))
