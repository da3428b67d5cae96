"""The ext2/ext3/ext4 driver: one ``FileSystem`` for the whole family.

Interface: ``ExtFileSystem(ctx, name)`` mounts (see ``mount.py`` for the feature policy and the
journal) and implements the vnode operations of ``vfs.vnode_table``.  Nodes are
``inode.Inode`` objects (``node.ino``); the same object is returned for an inode while it is
cached, until ``reclaim``.

Rules:
- Every modifying operation is all or nothing (``txn.py``).  With a journal (ext3/ext4),
  metadata changes collect in one running transaction, committed through JBD2 between
  operations (``jwrite.py``, data=ordered: file data goes to its place first) at sync,
  fsync, unmount, when it grows large, and when space waits on frees; blocks freed by the
  running transaction are reused only after it commits.  The superblock says
  needs_recovery and not-clean from the first change; a clean unmount empties the journal.
  Without a journal (ext2, or a journal format we do not write) metadata is written back
  in place, the file system marked not clean from the first change until unmount.
- Unlinked inodes are freed by ``inactive`` (last reference gone) or at ``unmount``; with a
  journal they sit on the orphan list in between, so a crash cannot leak them.
- htree directories keep their index: a new entry goes to the leaf its hash selects, full
  leaves and index nodes split, a full one-level index grows a second level; only when that
  is full too is the index dropped (the directory turns linear, which Linux and e2fsck
  accept).  A linear directory that outgrows its first block becomes an htree (dir_index).
- Inline-data inodes are read in place; one that is changed is first moved into ordinary
  blocks (``inline.uninline``); new inodes are never inline.  Casefolded, bigalloc, quota and
  other features listed in ``mount.py`` mount read-only; encrypted ones read as Linux reads
  them without the key (``crypt.py``).
"""

from __future__ import annotations

from typing import Any

from rumpkernel.fs.ext2 import acl, crypt, dirs, fileio, inline, xattr
from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.blockmap import IndirectMap
from rumpkernel.fs.ext2.extents import ExtentMap, empty_root
from rumpkernel.fs.ext2.inode import Inode
from rumpkernel.fs.ext2.mount import MountState
from rumpkernel.fs.ext2.txn import Txn
from rumpkernel.kern.errno import Errno, KernelError, corrupt
from rumpkernel.vfs.vattr import (
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFLNK,
    S_IFMT,
    DirEnt,
    SetAttr,
    StatFS,
    VAttr,
    dtype_of,
)
from rumpkernel.vfs.vnode_if import MODIFYING_OPS, FileSystem

_FT = {0o100000: L.FT_REG, 0o040000: L.FT_DIR, 0o020000: L.FT_CHR, 0o060000: L.FT_BLK,
       0o010000: L.FT_FIFO, 0o140000: L.FT_SOCK, 0o120000: L.FT_SYMLINK}


# ext4 i_flags -> BSD st_flags (immutable, append-only, nodump)
_BSD_FLAGS = ((0x10, 0x00020000), (0x20, 0x00040000), (0x40, 0x00000001))


def bsd_flags(ext_flags: int) -> int:
    return sum(bsd for ext, bsd in _BSD_FLAGS if ext_flags & ext)


def ftype_of(mode: int) -> int:
    return _FT.get(mode & S_IFMT, L.FT_UNKNOWN)


def _operation(fn: Any, modifying: bool) -> Any:
    """Wrap a vnode operation.  A modifying one runs inside an undo log (``txn.py``): if it
    fails, whatever it changed is put back (all or nothing).  Corruption found on a writable
    mount is then recorded in the superblock (error state, count, times), as Linux does.
    When journaling, a transaction is committed between operations once it grows large, and
    an operation that ran out of space while blocks wait for a commit to be freed is retried
    after one.  A ``build`` mount (a new image that is thrown away unless the whole build
    succeeds) keeps no undo log: an operation that fails leaves the file system as it is."""

    def op(self: ExtFileSystem, *args: Any) -> Any:
        vol = self.vol
        if not modifying or self.readonly or vol.txn is not None or self.build:
            try:
                return fn(self, *args)
            except KernelError as err:
                if err.errno == Errno.EUCLEAN and vol.txn is None:
                    self.note_error(str(err.detail or ""))
                raise
        for attempt in (0, 1):
            txn = vol.txn = Txn(self, tuple(a for a in args if isinstance(a, Inode)))
            try:
                result = fn(self, *args)
            except BaseException as err:
                vol.txn = None
                txn.rollback()
                if isinstance(err, KernelError):
                    if err.errno == Errno.ENOSPC and not attempt and (
                            vol.pending_frees or vol.pending_ifrees):
                        self.release_frees()
                        continue
                    if err.errno == Errno.EUCLEAN:
                        self.note_error(str(err.detail or ""))
                raise
            vol.txn = None
            txn.commit()
            if vol.journaled and len(vol.overlay) >= self.commit_at:
                self.commit()
            return result
        raise AssertionError("unreachable")

    op.__name__, op.__doc__, op.__qualname__ = fn.__name__, fn.__doc__, fn.__qualname__
    return op


class ExtFileSystem(MountState, FileSystem):
    """A mounted ext2/3/4 file system (state and mount logic in ``MountState``)."""

    # -- node cache ---------------------------------------------------------------------------
    def vget(self, ino: int) -> Inode:
        node = self.inodes.get(ino)
        if node is not None:
            return node
        if not 1 <= ino <= self.vol.geo.inodes_count or \
                (ino < self.vol.geo.first_ino and ino != L.ROOT_INO):
            raise KernelError(Errno.ENOENT, f"ext: inode {ino} out of range")
        node = Inode.decode(self.vol, ino, self.vol.read_inode_raw(ino))
        if node.links == 0:
            raise KernelError(Errno.ENOENT, f"ext: inode {ino} is not in use")
        node.check_live()
        self.inodes[ino] = node
        return node

    def reclaim(self, node: Inode) -> None:
        if self.unmounted:        # the VFS purges its vnodes after unmount: nothing to write
            return
        if node.links == 0 and not self.readonly:
            self._free_inode(node)
        self._write_inode(node)
        self.inodes.pop(node.ino, None)

    def inactive(self, node: Inode) -> None:
        if node.links == 0 and not self.readonly and not self.unmounted:
            self._free_inode(node)

    def bmap(self, node: Inode) -> Any:
        if node.emap is None:
            if not fileio.has_map(node):
                raise corrupt(f"ext: inode {node.ino} has no block map")
            node.emap = ExtentMap(self, node) if node.uses_extents else IndirectMap(self, node)
        return node.emap

    def goal_for(self, node: Inode) -> int:
        geo = self.vol.geo
        return geo.group_first_block((node.ino - 1) // geo.inodes_per_group)

    def inline_xattr(self, node: Inode) -> bytes:
        return xattr.inline_data(self, node)

    def uninline(self, node: Inode) -> None:
        self._check_rw()
        inline.uninline(self, node)

    def read_dir_block(self, dnode: Inode, lblk: int) -> bytes:
        (_, pblk, _), = self.bmap(dnode).runs(lblk, 1)
        if not pblk:
            raise corrupt(f"ext: directory {dnode.ino}: hole at block {lblk}")
        return self.vol.read(pblk)

    # -- attributes ---------------------------------------------------------------------------
    def getattr(self, node: Inode) -> VAttr:
        rdev = fileio.decode_rdev(node) if node.mode & S_IFMT in (S_IFCHR, S_IFBLK) else 0
        blocks, size = node.blocks, node.size
        if node.is_lnk and crypt.is_encrypted(node):   # the no-key target's length
            size = len(crypt.readlink(self, node))
        if node.inline and node.is_reg:   # as Linux: so tools do not take it for all holes
            blocks += (node.size + 511) >> 9
        return VAttr(
            ino=node.ino, mode=node.mode, nlink=node.links, uid=node.uid, gid=node.gid,
            size=size, atime_ns=node.atime, mtime_ns=node.mtime, ctime_ns=node.ctime,
            birthtime_ns=node.crtime, rdev=rdev, blocks=blocks,
            blksize=self.vol.block_size, gen=node.generation, flags=bsd_flags(node.flags))

    def setattr(self, node: Inode, changes: SetAttr) -> None:
        self._check_rw()
        if changes.size is not None:
            if not node.is_reg:
                raise KernelError(Errno.EINVAL, "ext: size change of a non-regular file")
            fileio.truncate(self, node, changes.size)
        if changes.mode is not None:
            node.mode = (node.mode & S_IFMT) | (changes.mode & 0o7777)
        if changes.uid is not None:
            node.uid = changes.uid
        if changes.gid is not None:
            node.gid = changes.gid
        if changes.atime_ns is not None:     # clamped to the format, as Linux does
            node.atime = node.fit_time(changes.atime_ns, "a")
        if changes.mtime_ns is not None:
            node.mtime = node.fit_time(changes.mtime_ns, "m")
        node.ctime = self.now()
        node.dirty = True

    # -- names --------------------------------------------------------------------------------
    def lookup(self, dnode: Inode, name: bytes) -> int:
        if not dnode.is_dir:
            raise KernelError(Errno.ENOTDIR, "ext: lookup in a non-directory")
        if name == b".":
            return dnode.ino
        if crypt.is_encrypted(dnode) and name != b"..":
            ino = crypt.lookup(self, dnode, name)
        else:
            ino = dirs.lookup(self, dnode, name)
        if ino is None:
            raise KernelError(Errno.ENOENT, name.decode("utf-8", "replace"))
        return ino

    def readdir(self, dnode: Inode, cookie: int) -> list[DirEnt]:
        if not dnode.is_dir:
            raise KernelError(Errno.ENOTDIR, "ext: readdir of a non-directory")
        ents = dirs.readdir(self, dnode, cookie)
        if crypt.is_encrypted(dnode):
            ents = crypt.listed(self, dnode, ents)
        if not self.filetype:
            return [DirEnt(e.name, e.ino, dtype_of(self.vget(e.ino).mode), e.cookie)
                    for e in ents]
        return ents

    def _new_node(self, dnode: Inode, mode: int, uid: int, gid: int) -> Inode:
        self._check_rw()
        group = (dnode.ino - 1) // self.vol.geo.inodes_per_group
        ino = self.vol.alloc_inode(group, mode & S_IFMT == S_IFDIR)
        self.generation = (self.generation + 1) & 0xFFFFFFFF
        node = Inode.new(self.vol, ino, mode, uid, gid, self.now(), self.generation)
        if self.vol.txn is not None:
            self.vol.txn.new_inode(node)
        if self.extents and mode & S_IFMT in (0o100000, S_IFDIR):
            node.flags |= L.INODE_EXTENTS_FL
            node.iblock[:] = empty_root()
        self.inodes[ino] = node
        return node

    def _link_into(self, dnode: Inode, name: bytes, node: Inode) -> None:
        dirs.add_entry(self, dnode, name, node.ino, ftype_of(node.mode))
        dnode.mtime = dnode.ctime = self.now()
        dnode.dirty = True

    def _check_new_name(self, dnode: Inode, name: bytes) -> None:
        self._check_rw()
        if dirs.lookup(self, dnode, name) is not None:
            raise KernelError(Errno.EEXIST, name.decode("utf-8", "replace"))

    def create(self, dnode: Inode, name: bytes, mode: int, uid: int, gid: int,
               rdev: int) -> int:
        self._check_new_name(dnode, name)
        node = self._new_node(dnode, mode, uid, gid)
        if mode & S_IFMT in (S_IFCHR, S_IFBLK):
            fileio.encode_rdev(node, rdev)
        elif mode & S_IFMT != 0o100000:
            node.iblock[:] = bytes(60)
            node.flags &= ~L.INODE_EXTENTS_FL
        self._link_into(dnode, name, node)
        return node.ino

    def mkdir(self, dnode: Inode, name: bytes, mode: int, uid: int, gid: int) -> int:
        self._check_new_name(dnode, name)
        if dnode.links >= self.link_max and not self.dir_nlink:
            raise KernelError(Errno.EMLINK, "ext: too many subdirectories")
        node = self._new_node(dnode, S_IFDIR | (mode & 0o7777), uid, gid)
        node.links = 2
        (_, pblk, _, _), = self.bmap(node).map_alloc(0, 1, self.goal_for(node))
        node.size = self.vol.block_size
        dirs.write_block(self, node, pblk, dirs.new_dir_block(self, node.ino, dnode.ino, node))
        self._link_into(dnode, name, node)
        self._inc_dir_links(dnode)
        return node.ino

    def _inc_dir_links(self, dnode: Inode) -> None:
        if dnode.links >= self.link_max - 1 or dnode.links == 1:
            dnode.links = 1 if self.dir_nlink else dnode.links + 1
        else:
            dnode.links += 1
        dnode.dirty = True

    def _dec_dir_links(self, dnode: Inode) -> None:
        if dnode.links > 2:
            dnode.links -= 1
        dnode.dirty = True

    def symlink(self, dnode: Inode, name: bytes, target: bytes, uid: int, gid: int) -> int:
        self._check_new_name(dnode, name)
        if not target or len(target) >= self.vol.block_size or len(target) > 4095:
            raise KernelError(Errno.ENAMETOOLONG, "ext: symlink target too long")
        node = self._new_node(dnode, S_IFLNK | 0o777, uid, gid)
        if len(target) < 60:
            node.flags &= ~L.INODE_EXTENTS_FL
            node.iblock[:] = target.ljust(60, b"\0")
            node.size = len(target)
        else:
            node.size = len(target)
            if self.extents:
                node.flags |= L.INODE_EXTENTS_FL
                node.iblock[:] = empty_root()
            (_, pblk, _, _), = self.bmap(node).map_alloc(0, 1, self.goal_for(node))
            self.vol.write(pblk, target.ljust(self.vol.block_size, b"\0"))
        self._link_into(dnode, name, node)
        return node.ino

    def link(self, dnode: Inode, name: bytes, node: Inode) -> None:
        self._check_new_name(dnode, name)
        if node.links >= self.link_max:
            raise KernelError(Errno.EMLINK, "ext: too many links")
        dirs.add_entry(self, dnode, name, node.ino, ftype_of(node.mode))
        node.links += 1
        node.ctime = dnode.mtime = dnode.ctime = self.now()
        node.dirty = dnode.dirty = True

    def unlink(self, dnode: Inode, name: bytes, node: Inode) -> None:
        self._check_rw()
        if node.links <= 1:
            self._prepare_free(node)
        dirs.remove_entry(self, dnode, name)
        node.links = max(0, node.links - 1)
        node.ctime = dnode.mtime = dnode.ctime = self.now()
        node.dirty = dnode.dirty = True
        self._orphan_add(node)

    def rmdir(self, dnode: Inode, name: bytes, node: Inode) -> None:
        self._check_rw()
        if not dirs.is_empty(self, node):
            raise KernelError(Errno.ENOTEMPTY, name.decode("utf-8", "replace"))
        self._prepare_free(node)
        dirs.remove_entry(self, dnode, name)
        node.links = 0
        self._dec_dir_links(dnode)
        node.ctime = dnode.mtime = dnode.ctime = self.now()
        node.dirty = True
        self._orphan_add(node)

    def rename(self, sdnode: Inode, sname: bytes, snode: Inode, tdnode: Inode, tname: bytes,
               tnode: Inode | None) -> None:
        self._check_rw()
        if tnode is snode:
            return
        ft = ftype_of(snode.mode)
        if tnode is not None:
            if tnode.is_dir and not dirs.is_empty(self, tnode):
                raise KernelError(Errno.ENOTEMPTY, tname.decode("utf-8", "replace"))
            if tnode.is_dir or tnode.links <= 1:
                self._prepare_free(tnode)
            dirs.set_entry(self, tdnode, tname, snode.ino, ft)
            if tnode.is_dir:
                tnode.links = 0
                self._dec_dir_links(tdnode)
            else:
                tnode.links = max(0, tnode.links - 1)
            tnode.ctime = self.now()
            tnode.dirty = True
            self._orphan_add(tnode)
        else:
            dirs.add_entry(self, tdnode, tname, snode.ino, ft)
        if sdnode is not tdnode:
            self.barrier()            # ext2: the new name is on the disk before the old goes
        dirs.remove_entry(self, sdnode, sname)
        if snode.is_dir and sdnode is not tdnode:
            dirs.set_entry(self, snode, b"..", tdnode.ino, L.FT_DIR)
            self._dec_dir_links(sdnode)
            self._inc_dir_links(tdnode)
        now = self.now()
        snode.ctime = sdnode.mtime = sdnode.ctime = tdnode.mtime = tdnode.ctime = now
        snode.dirty = sdnode.dirty = tdnode.dirty = True

    # -- contents -----------------------------------------------------------------------------
    def readlink(self, node: Inode) -> bytes:
        if crypt.is_encrypted(node) and node.is_lnk:
            return crypt.readlink(self, node)
        return fileio.readlink(self, node)

    def read(self, node: Inode, offset: int, size: int) -> bytes:
        if node.is_dir:
            raise KernelError(Errno.EISDIR, "ext: read of a directory")
        if crypt.is_encrypted(node):
            raise KernelError(Errno.ENOKEY, f"ext: inode {node.ino} is encrypted (no key)")
        return fileio.read(self, node, offset, size)

    def write(self, node: Inode, offset: int, data: bytes) -> int:
        self._check_rw()
        if not node.is_reg:
            raise KernelError(Errno.EINVAL, "ext: write to a non-regular file")
        return fileio.write(self, node, offset, data)

    def punch(self, node: Inode, offset: int, length: int) -> None:
        """Deallocate [offset, offset+length) keeping the size (fallocate PUNCH_HOLE with
        KEEP_SIZE; not yet a vnode operation).  EINVAL for a bad range or a non-file."""
        self._check_rw()
        fileio.punch(self, node, offset, length)

    def seek_data(self, node: Inode, offset: int) -> int:
        return fileio.seek(self, node, offset, True)

    def seek_hole(self, node: Inode, offset: int) -> int:
        return fileio.seek(self, node, offset, False)

    # -- extended attributes ------------------------------------------------------------------
    def getxattr(self, node: Inode, name: bytes) -> bytes:
        attrs = xattr.load(self, node)
        if name not in attrs or name == xattr.INLINE_NAME:
            raise KernelError(Errno.ENOATTR, name.decode("utf-8", "replace"))
        if name in (acl.ACCESS, acl.DEFAULT):
            return acl.from_disk(attrs[name])
        return attrs[name]

    def listxattr(self, node: Inode) -> list[bytes]:
        return [n for n in xattr.load(self, node) if n != xattr.INLINE_NAME]

    def setxattr(self, node: Inode, name: bytes, value: bytes, flags: int) -> None:
        self._check_rw()
        if node.inline:
            self.uninline(node)
        attrs = dict(xattr.load(self, node))
        if flags & 1 and name in attrs:
            raise KernelError(Errno.EEXIST, name.decode("utf-8", "replace"))
        if flags & 2 and name not in attrs:
            raise KernelError(Errno.ENOATTR, name.decode("utf-8", "replace"))
        xattr.split_name(name)
        if name in (acl.ACCESS, acl.DEFAULT):
            self._set_acl(node, attrs, name, bytes(value))
        else:
            attrs[name] = bytes(value)
        xattr.store(self, node, attrs)
        node.ctime = self.now()

    def _set_acl(self, node: Inode, attrs: dict[bytes, bytes], name: bytes,
                 value: bytes) -> None:
        """Linux's ext4_set_acl: the value arrives in xattr format and is stored in ext4's
        (EINVAL if malformed); an access ACL sets the mode's permission bits and is not
        stored when the mode alone says the same; a default ACL needs a directory."""
        ents = acl.parse(value)
        if name == acl.DEFAULT and not node.is_dir:
            raise KernelError(Errno.EACCES, "ext: default ACL on a non-directory")
        if name == acl.ACCESS:
            node.mode = acl.apply_to_mode(node.mode, ents)
            node.dirty = True
            if acl.equiv_mode(ents) is not None:
                attrs.pop(name, None)
                return
        attrs[name] = acl.to_disk(value)

    def removexattr(self, node: Inode, name: bytes) -> None:
        self._check_rw()
        attrs = dict(xattr.load(self, node))
        if name not in attrs or name == xattr.INLINE_NAME:
            raise KernelError(Errno.ENOATTR, name.decode("utf-8", "replace"))
        del attrs[name]
        xattr.store(self, node, attrs)
        node.ctime = self.now()

    # -- whole file system --------------------------------------------------------------------
    def statfs(self) -> StatFS:
        """As Linux reports it: block counts in blocks (bigalloc free counts are clusters),
        the metadata overhead left out of the total, and the root reserve plus the
        delayed-allocation reserve (2% of clusters, at most 4,096) out of what is available."""
        vol = self.vol
        free_clusters, fi = vol.total_free()
        sb = vol.sb
        ratio = self._cluster_ratio()
        free_clusters += sum(n for _, n in vol.pending_frees) // ratio  # free at the commit
        fi += len(vol.pending_ifrees)
        reserved = sb.s_r_blocks_count_lo | (sb.s_r_blocks_count_hi << 32 if self.is64 else 0)
        if self.extents:
            reserved += min(vol.geo.blocks_count // ratio // 50, 4096) * ratio
        bfree = free_clusters * ratio
        return StatFS(bsize=vol.block_size, frsize=vol.block_size,
                      blocks=vol.geo.blocks_count - self._overhead(), bfree=bfree,
                      bavail=max(0, bfree - reserved), files=vol.geo.inodes_count, ffree=fi,
                      favail=fi, namemax=255, fsid=int.from_bytes(sb.s_uuid[:8], "little"))

    def _cluster_ratio(self) -> int:
        sb = self.vol.sb
        if self.vol.geo.ro_compat & L.RO_COMPAT_BIGALLOC:
            return 1 << (sb.s_log_cluster_size - sb.s_log_block_size)
        return 1

    def _overhead(self) -> int:
        """Blocks of metadata (superblocks, descriptors, bitmaps, inode tables, journal), as
        the superblock records it or as Linux's ext4_calculate_overhead counts it."""
        if self._overhead_blocks is None:
            vol = self.vol
            geo = vol.geo
            if vol.sb.s_overhead_clusters:
                n = vol.sb.s_overhead_clusters * self._cluster_ratio()
            else:
                n = geo.first_data_block + geo.group_count * (2 + geo.itable_blocks)
                n += sum(len(geo.super_and_gdt(g)) for g in range(geo.group_count))
                if geo.compat & L.COMPAT_HAS_JOURNAL and vol.sb.s_journal_inum:
                    ino = vol.sb.s_journal_inum
                    try:
                        n += Inode.decode(vol, ino, vol.read_inode_raw(ino)).size // \
                            vol.block_size
                    except KernelError:
                        pass
            self._overhead_blocks = min(n, geo.blocks_count)
        return self._overhead_blocks

    def info(self) -> dict[str, object]:
        sb = self.vol.sb
        return {"type": self.fstype, "uuid": sb.s_uuid.hex(), "label": self.label,
                "block_size": self.vol.block_size, "blocks": self.vol.geo.blocks_count,
                "readonly": self.readonly, "ro_reason": self.ro_reason,
                "replayed_journal": self.replayed,
                "features": self.feature_names()}

    # -- freeing ------------------------------------------------------------------------------
    def _prepare_free(self, node: Inode) -> None:
        """Before the last name of ``node`` goes: read and check everything freeing it will
        need (block map, the bitmaps of every group it has blocks in, its xattr block, its
        inode bitmap), so a corrupt or unreadable one fails the removal, not the free after
        it (which would leave an unlinked inode holding its blocks)."""
        vol = self.vol
        geo = vol.geo
        ranges = self.bmap(node).all_blocks() if fileio.has_map(node) else []
        if node.file_acl:
            xattr.load(self, node)
            ranges.append((node.file_acl, 1))
        for start, n in ranges:
            vol.check_block(start, n, f"inode {node.ino} block")
            for group in range(geo.group_of_block(start), geo.group_of_block(start + n - 1) + 1):
                vol.block_bitmap(group)
        vol.inode_bitmap((node.ino - 1) // geo.inodes_per_group)

    def _orphan_add(self, node: Inode) -> None:
        """Journaling: an inode whose last name went is put on the orphan list (chained
        through i_dtime from s_last_orphan) until it is freed, so a crash in between cannot
        leak it -- mounting (ours, Linux's) or e2fsck frees it."""
        vol = self.vol
        if node.links or not vol.journaled or self._orphan_prev(node) is not None:
            return
        node.dtime = vol.sb.s_last_orphan
        vol.update_super(s_last_orphan=node.ino)
        node.dirty = True

    def _orphan_del(self, node: Inode) -> None:
        prev = self._orphan_prev(node)
        if prev is None:
            return
        if prev is self:
            self.vol.update_super(s_last_orphan=node.dtime)
        else:
            if self.vol.txn is not None:
                self.vol.txn.note_inode(prev)
            prev.dtime = node.dtime
            prev.dirty = True
        node.dtime = 0

    def _orphan_prev(self, node: Inode) -> Any:
        """What points at ``node`` in the orphan list: ``self`` (the superblock), the inode
        before it, or None when it is not on the list."""
        prev: Any = self
        ino, seen = self.vol.sb.s_last_orphan, set()
        while ino and ino not in seen:
            if ino == node.ino:
                return prev
            seen.add(ino)
            prev = self.inodes.get(ino)
            if prev is None:
                return None
            ino = prev.dtime
        return None

    def _free_inode(self, node: Inode) -> None:
        if node.mode == 0:
            return
        self._orphan_del(node)
        if fileio.has_map(node):
            bmap = self.bmap(node)
            bmap.truncate(0)
            bmap.store()          # frees the extent tree's own blocks too
            node.emap = None
        if node.file_acl:
            xattr.release_block(self, node)
        is_dir = node.is_dir
        node.size = 0
        node.dtime = self.now() // 1_000_000_000 & 0xFFFFFFFF
        node.links = 0
        node.iblock[:] = empty_root() if node.uses_extents else bytes(60)
        node.blocks = 0
        node.dirty = True
        self._write_inode(node)
        node.mode = 0
        self.vol.free_inode(node.ino, is_dir)
        node.dirty = False
        self.inodes.pop(node.ino, None)

    def _write_inode(self, node: Inode) -> None:
        if self.readonly:
            return
        if node.emap is not None and node.emap.dirty:
            node.emap.store()
        if node.dirty:
            self.vol.write_inode_raw(node.ino, node.encode(self.vol))
            node.dirty = False


_MODIFYING = MODIFYING_OPS | {"inactive", "reclaim", "punch"}
for _name in ("vget", "setattr", "lookup", "readdir", "create", "mkdir", "symlink", "link",
              "unlink", "rmdir", "rename", "readlink", "read", "write", "seek_data",
              "seek_hole", "getxattr", "setxattr", "listxattr", "removexattr", "inactive",
              "reclaim", "punch"):
    setattr(ExtFileSystem, _name, _operation(getattr(ExtFileSystem, _name),
                                             _name in _MODIFYING))
del _name
