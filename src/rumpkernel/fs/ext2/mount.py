"""Mounting and unmounting: the feature policy, journal recovery, clean/error state, inode
write-back and ``sync``.  ``fs.ExtFileSystem`` inherits this.

Policy:
- incompat features outside ``INCOMPAT_READ`` (compression, journal device, dirdata):
  refused with EOPNOTSUPP naming the feature.
- features outside ``INCOMPAT_WRITE`` / ``RO_COMPAT_WRITE`` (mmp, casefold, encrypt (read as
  Linux reads it without the key: ``crypt.py``), ea_inode, bigalloc, quota, verity,
  orphan_present...), a non-empty orphan list, or an error
  state recorded by the kernel: mounted read-only, with a ``ctx.log`` line saying why; the
  reason stays in ``fs.ro_reason`` (and ``info()["ro_reason"]``) for callers to show.
- a journal that needs recovery is replayed into an in-memory overlay; a read-write mount
  writes it to the device once the mount is known to succeed, then journals its own writes
  (``jwrite.py``; mount option ``nojournal`` writes in place instead, for tools that build
  a new image and need no crash safety until they are done).  An external journal, or one
  that cannot be replayed, refuses a read-write mount (EROFS/EUCLEAN).
- mount option ``build`` (makefs: a brand-new image that is discarded unless the whole build
  succeeds): no journal, no undo log (an operation that fails may leave the file system
  inconsistent), frees not deferred, nothing written before unmount except when the
  buffer cache must make room, and one flush at unmount.  The journal stays as newfs left it
  (empty, valid); the superblock's mount count and time stay as newfs left them.
- nothing is written while mounting until the root directory has been read and checked; the
  superblock's mount fields (not-clean state, mount count and time) are written before the
  first change, not at mount: a read-write mount that changes nothing, or whose every
  operation failed, leaves the image byte-identical.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.fs.ext2 import journal
from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.csum import ext_crc32c
from rumpkernel.fs.ext2.jwrite import JournalWriter
from rumpkernel.fs.ext2.volume import Volume
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.fstype import MountContext
from rumpkernel.vfs.vattr import FsFeatures

INCOMPAT_WRITE = (L.INCOMPAT_FILETYPE | L.INCOMPAT_RECOVER | L.INCOMPAT_META_BG
                  | L.INCOMPAT_EXTENTS | L.INCOMPAT_64BIT | L.INCOMPAT_FLEX_BG
                  | L.INCOMPAT_CSUM_SEED | L.INCOMPAT_LARGEDIR | L.INCOMPAT_INLINE_DATA)
INCOMPAT_READ = (INCOMPAT_WRITE | L.INCOMPAT_MMP | L.INCOMPAT_EA_INODE | L.INCOMPAT_CASEFOLD
                 | L.INCOMPAT_ENCRYPT)
RO_COMPAT_WRITE = (L.RO_COMPAT_SPARSE_SUPER | L.RO_COMPAT_LARGE_FILE | L.RO_COMPAT_HUGE_FILE
                   | L.RO_COMPAT_GDT_CSUM | L.RO_COMPAT_DIR_NLINK | L.RO_COMPAT_EXTRA_ISIZE
                   | L.RO_COMPAT_METADATA_CSUM | L.RO_COMPAT_PROJECT)

_NAMES = {
    "compat": {L.COMPAT_HAS_JOURNAL: "has_journal", L.COMPAT_EXT_ATTR: "ext_attr",
               L.COMPAT_RESIZE_INODE: "resize_inode", L.COMPAT_DIR_INDEX: "dir_index",
               L.COMPAT_SPARSE_SUPER2: "sparse_super2", L.COMPAT_FAST_COMMIT: "fast_commit",
               L.COMPAT_STABLE_INODES: "stable_inodes", L.COMPAT_ORPHAN_FILE: "orphan_file",
               L.COMPAT_DIR_PREALLOC: "dir_prealloc", L.COMPAT_IMAGIC_INODES: "imagic_inodes"},
    "incompat": {L.INCOMPAT_COMPRESSION: "compression", L.INCOMPAT_FILETYPE: "filetype",
                 L.INCOMPAT_RECOVER: "needs_recovery", L.INCOMPAT_JOURNAL_DEV: "journal_dev",
                 L.INCOMPAT_META_BG: "meta_bg", L.INCOMPAT_EXTENTS: "extent",
                 L.INCOMPAT_64BIT: "64bit", L.INCOMPAT_MMP: "mmp",
                 L.INCOMPAT_FLEX_BG: "flex_bg", L.INCOMPAT_EA_INODE: "ea_inode",
                 L.INCOMPAT_DIRDATA: "dirdata", L.INCOMPAT_CSUM_SEED: "metadata_csum_seed",
                 L.INCOMPAT_LARGEDIR: "large_dir", L.INCOMPAT_INLINE_DATA: "inline_data",
                 L.INCOMPAT_ENCRYPT: "encrypt", L.INCOMPAT_CASEFOLD: "casefold"},
    "ro_compat": {L.RO_COMPAT_SPARSE_SUPER: "sparse_super", L.RO_COMPAT_LARGE_FILE:
                  "large_file", L.RO_COMPAT_HUGE_FILE: "huge_file",
                  L.RO_COMPAT_GDT_CSUM: "uninit_bg", L.RO_COMPAT_DIR_NLINK: "dir_nlink",
                  L.RO_COMPAT_EXTRA_ISIZE: "extra_isize", L.RO_COMPAT_QUOTA: "quota",
                  L.RO_COMPAT_BIGALLOC: "bigalloc", L.RO_COMPAT_METADATA_CSUM:
                  "metadata_csum", L.RO_COMPAT_READONLY: "read-only",
                  L.RO_COMPAT_PROJECT: "project", L.RO_COMPAT_VERITY: "verity",
                  L.RO_COMPAT_ORPHAN_PRESENT: "orphan_present",
                  L.RO_COMPAT_HAS_SNAPSHOT: "snapshot", L.RO_COMPAT_REPLICA: "replica",
                  L.RO_COMPAT_SHARED_BLOCKS: "shared_blocks", L.RO_COMPAT_BTREE_DIR:
                  "btree_dir"},
}


def feature_list(kind: str, bits: int) -> list[str]:
    names = _NAMES[kind]
    out = []
    for bit in range(32):
        if bits >> bit & 1:
            out.append(names.get(1 << bit, f"{kind}_{1 << bit:#x}"))
    return out


def read_super(dev: Any) -> bytes:
    ss = dev.sector_size
    start = L.SUPERBLOCK_OFFSET // ss * ss
    end = -(-(L.SUPERBLOCK_OFFSET + L.SUPERBLOCK_SIZE) // ss) * ss
    if dev.size < end:
        raise KernelError(Errno.EINVAL, "ext: device too small for a superblock")
    raw = dev.pread(start, end - start)
    return raw[L.SUPERBLOCK_OFFSET - start:L.SUPERBLOCK_OFFSET - start + L.SUPERBLOCK_SIZE]


def _super_ok(raw: bytes) -> bool:
    """Magic right, and the checksum when the superblock says it has one."""
    sb = L.Superblock.parse(raw)
    if sb.s_magic != L.EXT2_MAGIC:
        return False
    if sb.s_rev_level and sb.s_feature_ro_compat & L.RO_COMPAT_METADATA_CSUM:
        return ext_crc32c(0xFFFFFFFF, raw[:L.SB_CHECKSUM_OFFSET]) == sb.s_checksum
    return True


def _backup_super(dev: Any) -> tuple[bytes, int] | None:
    """The first backup superblock (group 1) for the usual geometries, if intact."""
    for log in range(7):
        bs = 1024 << log
        blk = 8 * bs + (1 if bs == 1024 else 0)
        off = blk * bs
        if off + L.SUPERBLOCK_SIZE > dev.size or off % dev.sector_size:
            continue
        try:
            raw = dev.pread(off, L.SUPERBLOCK_SIZE)
        except KernelError:
            continue
        sb = L.Superblock.parse(raw)
        if _super_ok(raw) and sb.s_log_block_size == log and sb.s_block_group_nr == 1:
            return raw, blk
    return None


def _release(bio: Any) -> None:
    """Drop the buffer cache (its memory accounting and pagedaemon hook too)."""
    bio.invalidate()
    if bio.kmem is not None:
        bio.kmem.unregister_reclaimer(bio.reclaim)


class MountState:
    """Mount-time state of an ext file system (mixed into ``ExtFileSystem``)."""

    def __init__(self, ctx: MountContext, name: str) -> None:
        if ctx.dev is None:
            raise KernelError(Errno.ENOTBLK, "ext: needs a block device")
        self.ctx = ctx
        self.fstype = name
        self.inodes: dict[int, Any] = {}
        self.replayed = False
        self.had_errors = False
        self.unmounted = False
        self.mounted = False         # errors found while mounting are not recorded on disk
        self.was_clean = False
        self.journal: JournalWriter | None = None
        self.commit_at = 0
        self._overhead_blocks: int | None = None
        self._replay: journal.Recovery | None = None
        raw = read_super(ctx.dev)
        self.backup_sb = 0
        if not _super_ok(raw):          # torn or damaged: a backup, as e2fsck would take
            found = _backup_super(ctx.dev)
            if found is None:
                sb = L.Superblock.parse(raw)
                if sb.s_magic != L.EXT2_MAGIC:
                    raise KernelError(Errno.EINVAL, "ext: bad superblock magic")
                raise KernelError(Errno.EUCLEAN, "ext: superblock checksum mismatch")
            raw, self.backup_sb = found
            ctx.log(f"ext: {ctx.dev.name}: primary superblock damaged; using the backup in "
                    f"block {self.backup_sb}")
        sb = L.Superblock.parse(raw)
        why = self._policy(sb)
        asked_ro = bool(ctx.readonly or ctx.dev.readonly or "ro" in ctx.options)
        self.readonly = asked_ro or bool(why)
        self.build = "build" in ctx.options and not self.readonly
        self.ro_reason = "" if asked_ro else why
        if self.ro_reason:
            ctx.log(f"ext: {ctx.dev.name}: mounting read-only: {why}")
        bs = 1024 << min(sb.s_log_block_size, 6)
        bio = ctx.blockio(bs)
        try:
            self.vol = Volume(bio, raw, ctx.dev.size // bs, self.readonly, ctx.log)
            self.vol.load_gds()
            if self.vol.geo.incompat & L.INCOMPAT_RECOVER or self.backup_sb:
                self._recover()
            if self.backup_sb and not self.readonly and not self._primary_restored():
                self.readonly = True
                self.vol.readonly = True
                self.ro_reason = "primary superblock damaged (run e2fsck)"
                ctx.log(f"ext: {ctx.dev.name}: mounting read-only: {self.ro_reason}")
            self._settle()
            if "_newfs" not in ctx.options:      # newfs mounts before the root exists
                self._check_root()
            self.mounted = True
            if not self.readonly:
                self._finish_rw_mount()
        except BaseException:
            _release(bio)    # a failed mount gives its cache memory back
            raise

    def _primary_restored(self) -> bool:
        """Did journal replay bring back a good primary superblock?"""
        bs = self.vol.block_size
        blk, off = divmod(L.SUPERBLOCK_OFFSET, bs)
        data = self.vol.overlay.get(blk)
        return data is not None and _super_ok(data[off:off + L.SUPERBLOCK_SIZE])

    def _check_root(self) -> None:
        try:
            root = self.vget(L.ROOT_INO)  # type: ignore[attr-defined]
        except KernelError as err:
            if err.errno != Errno.ENOENT:
                raise
            raise KernelError(Errno.EUCLEAN, "ext: root inode is not in use") from None
        if not root.is_dir:
            raise KernelError(Errno.EUCLEAN, "ext: root inode is not a directory")

    def _finish_rw_mount(self) -> None:
        """The mount succeeds: write the replayed journal, clean up orphans, and arrange for
        the superblock to be marked in use before the first change."""
        if self._replay is not None:
            self._write_replay(self._replay)
            self._replay = None
        if self.build:                  # a new image, written once, no crash safety
            self.vol.on_first_change = self._mark_building
            return
        self._open_journal()
        self.vol.defer_frees = True
        self.vol.on_first_change = self._mark_mounted
        if self.vol.sb.s_last_orphan:
            self._process_orphans()
            self.commit()

    def _open_journal(self) -> None:
        """Journal the writes of a read-write ext3/ext4 mount (jwrite.py); without a journal
        we can write, changes go in place (ext2)."""
        vol = self.vol
        sb = vol.sb
        if not vol.geo.compat & L.COMPAT_HAS_JOURNAL or not sb.s_journal_inum or \
                sb.s_journal_dev or "nojournal" in self.ctx.options:
            return
        try:
            self.journal = JournalWriter.open(vol, *self._load_journal())
        except KernelError as err:
            self.ctx.log(f"ext: {self.ctx.dev.name}: writing in place, without the journal: "
                         f"{err.detail}")
            return
        vol.journaled = True
        vol.journal_live = self.journal.live
        self.commit_at = max(8, self.journal.capacity // 2)

    # -- feature policy -----------------------------------------------------------------------
    def _policy(self, sb: Any) -> str:
        """Refuse what cannot be read; return why a write mount is impossible ('' if fine)."""
        incompat = sb.s_feature_incompat if sb.s_rev_level else 0
        ro_compat = sb.s_feature_ro_compat if sb.s_rev_level else 0
        bad = incompat & ~INCOMPAT_READ
        if bad:
            raise KernelError(Errno.EOPNOTSUPP, "ext: unsupported features: "
                              + ",".join(feature_list("incompat", bad)))
        reasons = feature_list("incompat", incompat & ~INCOMPAT_WRITE)
        reasons += feature_list("ro_compat", ro_compat & ~RO_COMPAT_WRITE)
        why = "features not supported for writing: " + ",".join(reasons) if reasons else ""
        if sb.s_state & L.STATE_ERROR and not why:
            why = "file system has errors (run e2fsck)"
        return why

    def _recover(self) -> None:
        vol = self.vol
        sb = vol.sb
        if not sb.s_feature_compat & L.COMPAT_HAS_JOURNAL or sb.s_journal_dev or \
                sb.s_journal_inum == 0:
            if not self.readonly:
                raise KernelError(Errno.EROFS, "ext: needs recovery from an external journal")
            self.ctx.log("ext: external journal not replayed (read-only mount)")
            return
        try:
            rec = journal.recover(vol, self._load_journal)
        except KernelError as err:
            if self.readonly:
                self.ctx.log(f"ext: journal not replayed: {err}")
                return
            raise KernelError(err.errno, f"ext: journal recovery failed: {err.detail}") from None
        if rec.fast_commit:
            if not self.readonly:
                raise KernelError(Errno.EOPNOTSUPP, "ext: the journal may hold fast commits, "
                                  "which this driver cannot replay: run e2fsck first")
            self.ctx.log("ext: fast commits not replayed (read-only view of full commits)")
        self._apply_recovery(rec)

    def _load_journal(self) -> tuple[Any, Any]:
        from rumpkernel.fs.ext2.inode import Inode

        ino = self.vol.sb.s_journal_inum
        node = Inode.decode(self.vol, ino, self.vol.read_inode_raw(ino))
        return node, self.bmap(node)  # type: ignore[attr-defined]

    def _apply_recovery(self, rec: journal.Recovery) -> None:
        """Replay into memory; a read-write mount writes it out in ``_write_replay``."""
        self.replayed = bool(rec.blocks)
        self.vol.overlay = dict(rec.blocks)
        self._reload_super()
        if self.readonly:
            self.ctx.log(f"ext: replayed {rec.transactions} transactions into memory")
        else:
            self._replay = rec

    def _write_replay(self, rec: journal.Recovery) -> None:
        vol = self.vol
        for blk, data in sorted(vol.overlay.items()):
            vol.bio.write(blk, data)
        vol.overlay = {}
        vol.bio.write(rec.jsb_block, journal.clean_jsb(rec, vol))
        vol.bio.flush(sync=True)
        vol.update_super(s_feature_incompat=vol.sb.s_feature_incompat & ~L.INCOMPAT_RECOVER)
        vol.write_super_now()
        vol.bio.flush(sync=True)
        self.ctx.log(f"ext: replayed {rec.transactions} journal transactions")

    def _reload_super(self) -> None:
        """Rebuild the volume from the (replayed) superblock and descriptors."""
        old = self.vol
        bs = old.block_size
        blk, off = divmod(L.SUPERBLOCK_OFFSET, bs)
        raw = old.read(blk)[off:off + L.SUPERBLOCK_SIZE]
        if not _super_ok(raw):          # not in the journal, primary damaged: the backup
            raw = old.sb.emit()
        old.bio.invalidate()
        vol = Volume(old.bio, raw, self.ctx.dev.size // bs, old.readonly, old.log)  # type: ignore
        vol.overlay = old.overlay
        vol.load_gds()
        self.vol = vol

    def _settle(self) -> None:
        vol = self.vol
        geo = vol.geo
        sb = vol.sb
        self.label = sb.s_volume_name.split(b"\0")[0].decode("utf-8", "replace")
        self.filetype = bool(geo.incompat & L.INCOMPAT_FILETYPE)
        self.extents = bool(geo.incompat & L.INCOMPAT_EXTENTS)
        self.is64 = bool(geo.incompat & L.INCOMPAT_64BIT)
        self.largedir = bool(geo.incompat & L.INCOMPAT_LARGEDIR)
        self.dir_index = bool(geo.compat & L.COMPAT_DIR_INDEX)
        self.dir_nlink = bool(geo.ro_compat & L.RO_COMPAT_DIR_NLINK)
        self.hash_seed = tuple(int.from_bytes(sb.s_hash_seed[i:i + 4], "little")
                               for i in range(0, 16, 4))
        self.hash_unsigned = bool(sb.s_flags & L.FLAGS_UNSIGNED_HASH)
        self.link_max = 65000 if self.extents or self.dir_nlink else 32000
        self.max_file_size = self._max_size()
        self.generation = int.from_bytes(self.ctx.random_bytes(4), "little")
        self.features = FsFeatures(xattr=True, link_max=self.link_max, name_max=255,
                                   max_file_size=self.max_file_size)

    def _max_size(self) -> int:
        bs = self.vol.block_size
        if self.extents:
            return min((1 << 32) * bs, (1 << 44) * 512) - bs
        p = bs // 4
        blocks = 12 + p + p * p + p * p * p
        limit = blocks * bs
        if not self.vol.geo.ro_compat & L.RO_COMPAT_LARGE_FILE:
            limit = min(limit, (1 << 31) - 1)
        return min(limit, (1 << 32) * 512 - 1 if not self.vol.geo.ro_compat &
                   L.RO_COMPAT_HUGE_FILE else limit)

    def feature_names(self) -> list[str]:
        g = self.vol.geo
        return (feature_list("compat", g.compat) + feature_list("incompat", g.incompat)
                + feature_list("ro_compat", g.ro_compat))

    # -- state --------------------------------------------------------------------------------
    def now(self) -> int:
        return self.ctx.now_ns()

    def _check_rw(self) -> None:
        if self.readonly:
            raise KernelError(Errno.EROFS, "ext: mounted read-only")

    def _mark_mounted(self) -> None:
        vol = self.vol
        sb = vol.sb
        self.was_clean = bool(sb.s_state & L.STATE_VALID)
        secs = self.now() // 1_000_000_000
        incompat = sb.s_feature_incompat | (L.INCOMPAT_RECOVER if vol.journaled else 0)
        vol.update_super(s_state=sb.s_state & ~L.STATE_VALID,
                         s_mnt_count=(sb.s_mnt_count + 1) & 0xFFFF,
                         s_mtime=secs & 0xFFFFFFFF, s_mtime_hi=(secs >> 32) & 0xFF,
                         s_feature_incompat=incompat)
        vol.write_super_home()

    def _mark_building(self) -> None:
        """``build``: the not-clean mark stays in memory (the image is not in use until the
        unmount that writes it); the mount count and time stay as newfs left them."""
        self.was_clean = bool(self.vol.sb.s_state & L.STATE_VALID)

    def note_error(self, detail: str) -> None:
        """Record detected corruption in the superblock (Linux's ext4_error bookkeeping)."""
        if self.readonly or not self.mounted:
            return
        self.ctx.log(f"ext: {self.ctx.dev.name}: error: {detail}")  # type: ignore[union-attr]
        vol = self.vol
        sb = vol.sb
        secs = (self.now() // 1_000_000_000) & 0xFFFFFFFF
        first = {} if sb.s_first_error_time else {"s_first_error_time": secs}
        vol.update_super(s_state=sb.s_state | L.STATE_ERROR,
                         s_error_count=(sb.s_error_count + 1) & 0xFFFFFFFF,
                         s_last_error_time=secs, **first)
        self.had_errors = True
        vol.write_super_now()
        if vol.journaled and vol.txn is None:
            try:
                self.commit()
            except KernelError as err:
                self.ctx.log(f"ext: recording the error failed: {err}")

    def _process_orphans(self) -> None:
        """Finish what a crash interrupted: free unlinked inodes on the orphan list and cut
        truncated ones back to their size (the list is chained through i_dtime)."""
        from rumpkernel.fs.ext2 import fileio
        from rumpkernel.fs.ext2.inode import Inode

        vol = self.vol
        geo = vol.geo
        ino, seen = vol.sb.s_last_orphan, set()
        while ino:
            if ino in seen or not geo.first_ino <= ino <= geo.inodes_count:
                self.note_error(f"orphan list broken at inode {ino}")
                break
            seen.add(ino)
            node = Inode.decode(vol, ino, vol.read_inode_raw(ino))
            ino, node.dtime = node.dtime, 0
            node.dirty = True
            self.inodes[node.ino] = node
            if node.links == 0:
                self._free_inode(node)  # type: ignore[attr-defined]
            elif fileio.has_map(node):
                self.bmap(node).truncate(-(-node.size // vol.block_size))  # type: ignore
        vol.update_super(s_last_orphan=0)
        self._write_dirty_inodes()
        if not vol.journaled:
            vol.flush()
        self.ctx.log(f"ext: cleaned up {len(seen)} orphan inodes")

    def _write_dirty_inodes(self) -> None:
        """Every changed inode into its table block (each block read and written once)."""
        if self.readonly:
            return
        nodes, out = [], []
        for node in list(self.inodes.values()):
            if node.emap is not None and node.emap.dirty:
                node.emap.store()
            if node.dirty:
                out.append((node.ino, node.encode(self.vol)))
                nodes.append(node)
        self.vol.write_inodes_raw(out)
        for node in nodes:
            node.dirty = False

    def sync(self) -> None:
        """Everything durable and in place: a journal commit and a checkpoint (so the image
        reads consistent without replay, e.g. for e2fsck or a second reader), or the
        write-back."""
        self._sync(checkpoint=True)

    def _sync(self, checkpoint: bool) -> None:
        if self.readonly:
            return
        self._write_dirty_inodes()
        if not self.vol.changed:    # nothing changed (or every change was undone)
            if self.vol.home_sb_stale:
                self.vol.write_super_home()
            self.vol.bio.flush(sync=True)
            return
        secs = self.now() // 1_000_000_000
        self.vol.update_super(s_wtime=secs & 0xFFFFFFFF, s_wtime_hi=(secs >> 32) & 0xFF)
        if self.vol.journaled:
            self.commit()
            if checkpoint and self.journal is not None:
                self.journal.checkpoint()
            return
        vol = self.vol              # ext2: what the frees depend on is durable first
        vol.flush(sync=True)
        if vol.pending_frees or vol.pending_ifrees:
            vol.apply_frees()
            vol.flush(sync=True)

    def barrier(self) -> None:
        """Without a journal: everything so far durable now (a rename makes its new name
        durable before it removes the old one, so a crash leaves the file under one name
        at least; frees stay pending)."""
        if not self.vol.journaled and not self.readonly:
            self._write_dirty_inodes()
            self.vol.flush(sync=True)

    def release_frees(self) -> None:
        """Make what waits to be freed reusable (an operation ran out of space)."""
        if self.vol.journaled:
            self.commit()
        else:
            self._sync(checkpoint=False)

    def commit(self) -> None:
        """Journaling: put everything changed since the last commit into one transaction,
        commit it and write it home (jwrite.py).  Only between operations."""
        vol = self.vol
        if not vol.journaled or self.journal is None:
            return
        self._write_dirty_inodes()
        freed = vol.apply_frees()
        vol.flush_metadata()
        blocks = dict(vol.overlay)
        vol.revokes |= self.journal.freed_live(freed)    # kept until a commit succeeds
        try:
            self.journal.commit(blocks, vol.revokes, self.now())
        except OverflowError as err:      # bigger than the journal: in place, unprotected
            self.ctx.log(f"ext: {err}; written in place")
            self.journal.checkpoint()
            for blk, data in blocks.items():
                vol.bio.write(blk, data)
            vol.bio.flush(sync=True)
        vol.revokes = set()
        for blk in blocks:
            vol.take_pending(blk)

    def fsync(self, node: Any, datasync: bool) -> None:
        """Durable: with a journal, one commit (replay puts it in place after a crash)."""
        self._sync(checkpoint=False)

    def unmount(self) -> None:
        if self.build:
            self._unmount_build()
        elif not self.readonly:
            for node in list(self.inodes.values()):
                if node.links == 0 and node.mode:
                    self._free_inode(node)  # type: ignore[attr-defined]
            self._write_dirty_inodes()
            self.sync()
            if self.vol.changed:
                self._mark_clean()
        _release(self.vol.bio)
        for blk in list(self.vol.overlay):
            self.vol.take_pending(blk)
        self.inodes.clear()
        self.unmounted = True

    def _unmount_build(self) -> None:
        """``build``: every dirty block out once, in ascending order, and one flush."""
        vol = self.vol
        for node in list(self.inodes.values()):
            if node.links == 0 and node.mode:       # unlinked while still open
                self._free_inode(node)  # type: ignore[attr-defined]
        self._write_dirty_inodes()
        if vol.changed:
            secs = self.now() // 1_000_000_000
            vol.update_super(s_wtime=secs & 0xFFFFFFFF, s_wtime_hi=(secs >> 32) & 0xFF,
                             s_state=vol.sb.s_state | (L.STATE_VALID if self.was_clean else 0))
        vol.flush(sync=True)

    def _mark_clean(self) -> None:
        """Clean unmount: the superblock without needs_recovery and, if it was clean before,
        clean again.  With a journal it goes through one last transaction, then home, then
        the journal is emptied: the superblock is never rewritten in place while no journal
        copy of it exists (a torn write of it stays repairable by replay)."""
        vol = self.vol
        sb = vol.sb
        vol.update_super(
            s_state=sb.s_state | (L.STATE_VALID if self.was_clean else 0),
            s_feature_incompat=sb.s_feature_incompat & ~L.INCOMPAT_RECOVER)
        if self.journal is None:
            vol.write_super_home()
            return
        vol.write_super_now()
        self.commit()
        self.journal.close()
        vol.journaled = False
