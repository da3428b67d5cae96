"""Namespace and attribute vnode operations of ``MsdosFS`` (a mixin over ``vfsops``).

Interface: lookup, readdir, create, mkdir, unlink, rmdir, rename, setattr, symlink, link.

Rules:
* Names are UTF-8 from the VFS, stored as VFAT long names (see ``names``); lookups are
  case-insensitive and match long or short names.  A rename whose source and target are the
  same node with different spelling is a case-only rename and is carried out.
* FAT stores no owner: chown to anyone but the mount's ``uid``/``gid`` is EPERM (ignored with
  ``quiet``).  chmod can only toggle the write bits of a file (the read-only attribute); any
  other change is EPERM (ignored with ``quiet``), as Linux vfat does.
* Symlinks, hard links and special files do not exist on FAT: EPERM with a detail message.
* Unlinked files keep their clusters until ``inactive``; removed directories free theirs at once.
"""

from __future__ import annotations

from rumpkernel.fs.msdos import fileio
from rumpkernel.fs.msdos.directory import AddPlan, Directory, DirSlot
from rumpkernel.fs.msdos.fattime import to_fat
from rumpkernel.fs.msdos.layout import (
    ATTR_ARCHIVE,
    ATTR_DIR,
    ATTR_READONLY,
    DIRENT_SIZE,
    ShortEntry,
)
from rumpkernel.fs.msdos.names import DOT, DOTDOT, check_long
from rumpkernel.fs.msdos.node import ROOT_INO, Node
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.vfs.vattr import DT_DIR, DT_REG, S_IFMT, S_IFREG, DirEnt, SetAttr

_READDIR_BATCH = 256


def _text(name: bytes) -> str:
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KernelError(Errno.ENOENT, "msdos: name is not valid UTF-8") from e


class DirOps:
    # -- lookup / readdir -------------------------------------------------------------------
    def _slot(self, d: Directory, name: bytes) -> DirSlot:
        slot = d.lookup(_text(name))
        if slot is None:
            raise KernelError(Errno.ENOENT)
        return slot

    def _ino_at(self, dnode: Node, d: Directory, slot: DirSlot) -> int:
        ino = self.inos.ino_for(d.epos(slot.index))
        if len(self._parent_hint) > 4096:
            self._parent_hint.clear()
        self._parent_hint[ino] = dnode.ino
        return ino

    def lookup(self, dnode: Node, name: bytes) -> int:
        if name == b".":
            return dnode.ino
        if name == b"..":
            return self.parent_ino(dnode)
        d = self.dir_of(dnode)
        return self._ino_at(dnode, d, self._slot(d, name))

    def readdir(self, dnode: Node, cookie: int) -> list[DirEnt]:
        d = self.dir_of(dnode)
        out: list[DirEnt] = []
        if cookie == 0:
            out.append(DirEnt(b".", dnode.ino, DT_DIR, 1))
        if cookie <= 1:
            out.append(DirEnt(b"..", self.parent_ino(dnode), DT_DIR, 2))
        if d.dead:
            return out
        for s in d.entries_from(max(cookie - 2, 0), _READDIR_BATCH):
            out.append(DirEnt(s.name.encode("utf-8"), self._ino_at(dnode, d, s),
                              DT_DIR if s.is_dir else DT_REG, s.index + 3))
        return out

    def parent_ino(self, node: Node) -> int:
        if node is self.root or node.ino == ROOT_INO:
            return ROOT_INO
        if node.parent is not None:
            return node.parent
        pc = self.dir_of(node).dotdot
        if pc is None:
            self.log(f"msdos: directory {node.ino} has no '..'; using root")
            pc = 0
        node.parent = self._dir_ino(pc)
        return node.parent

    def _dir_ino(self, cluster: int) -> int:
        """Inode number of the directory starting at ``cluster`` (found via its ``..``)."""
        geo = self.geo
        if cluster == 0 or (geo.fat_bits == 32 and cluster == geo.root_cluster):
            return ROOT_INO
        chain = self.fat.chain(cluster)
        child = Directory(self, chain, self.cluster_sectors(chain), False)
        gp = child.dotdot or 0
        if gp == 0 or (geo.fat_bits == 32 and gp == geo.root_cluster):
            grand = self.dir_of(self.root)
        else:
            gchain = self.fat.chain(gp)
            grand = Directory(self, gchain, self.cluster_sectors(gchain), False)
        for s in grand.entries_from(0, 1 << 20):
            if s.is_dir and ShortEntry.parse(grand.read_slot(s.index)).cluster == cluster:
                return self.inos.ino_for(grand.epos(s.index))
        self.log(f"msdos: parent of cluster {cluster} not found; using root")
        return ROOT_INO

    # -- creation ---------------------------------------------------------------------------
    def _new_entry(self, attr: int, cluster: int = 0) -> ShortEntry:
        date, time, cs = self.now_fat()
        return ShortEntry(b" " * 11, attr, 0, cs, time, date, date, 0, time, date,
                          0, 0).with_cluster(cluster)

    def _check_new(self, d: Directory, name: bytes) -> str:
        text = check_long(name)
        if d.lookup(text) is not None:
            raise KernelError(Errno.EEXIST)
        return text

    def create(self, dnode: Node, name: bytes, mode: int, uid: int, gid: int, rdev: int) -> int:
        if mode & S_IFMT != S_IFREG:
            raise KernelError(Errno.EPERM, "msdos: FAT cannot store special files")
        self.check_writable()
        d = self.dir_of(dnode)
        text = self._check_new(d, name)
        plan = d.plan_add(text)
        attr = ATTR_ARCHIVE | (0 if mode & 0o222 else ATTR_READONLY)
        slot, _ = d.add(text, self._new_entry(attr), plan)
        self.touch_dir(dnode)
        return self._ino_at(dnode, d, slot)

    def mkdir(self, dnode: Node, name: bytes, mode: int, uid: int, gid: int) -> int:
        self.check_writable()
        d = self.dir_of(dnode)
        text = self._check_new(d, name)
        parent_c = 0 if dnode is self.root else dnode.entry.cluster
        plan = d.grow(d.plan_add(text, reserve=1))
        d.prefetch(plan)
        near = self.chain_of(dnode)[-1] if dnode.chain else 0
        new = self.fat.allocate(1, near=near)[0]
        ent = self._new_entry(ATTR_DIR, new)
        try:
            self._init_dir(new, ent, parent_c)
        except KernelError:
            self.fat.unallocate([new])
            raise
        slot, _ = d.add(text, ent, plan)
        self.touch_dir(dnode)
        return self._ino_at(dnode, d, slot)

    def _init_dir(self, cluster: int, ent: ShortEntry, parent_c: int) -> None:
        geo = self.geo
        first = geo.cluster_sector(cluster)
        dot = ent.replace(name=DOT).emit()
        dotdot = ent.replace(name=DOTDOT).with_cluster(parent_c).emit()
        head = dot + dotdot + bytes(geo.cluster_size - 2 * DIRENT_SIZE)
        self.bio.write_run(first, head)     # on the device before the FAT makes it used

    def symlink(self, dnode: Node, name: bytes, target: bytes, uid: int, gid: int) -> int:
        raise KernelError(Errno.EPERM, "msdos: FAT has no symbolic links")

    def link(self, dnode: Node, name: bytes, node: Node) -> None:
        raise KernelError(Errno.EPERM, "msdos: FAT has no hard links")

    # -- removal ----------------------------------------------------------------------------
    def unlink(self, dnode: Node, name: bytes, node: Node) -> None:
        self.check_writable(node)
        d = self.dir_of(dnode)
        slot = self._slot(d, name)
        d.remove(slot)
        node.unlinked = True
        self.inos.moved(node, None)
        self.touch_dir(dnode)

    def rmdir(self, dnode: Node, name: bytes, node: Node) -> None:
        self.check_writable()
        d = self.dir_of(dnode)
        slot = self._slot(d, name)
        if not self.dir_of(node).empty:
            raise KernelError(Errno.ENOTEMPTY)
        d.remove(slot)
        self._kill_dir(node)
        self.touch_dir(dnode)

    def _kill_dir(self, node: Node) -> None:
        node.unlinked = True
        self.dir_of(node).dead = True
        self.inos.moved(node, None)
        if node.chain:
            self.release(node, list(node.chain))
            node.chain.clear()

    # -- rename -----------------------------------------------------------------------------
    def rename(self, sdnode: Node, sname: bytes, snode: Node, tdnode: Node, tname: bytes,
               tnode: Node | None) -> None:
        self.check_writable()
        sd, td = self.dir_of(sdnode), self.dir_of(tdnode)
        sslot = self._slot(sd, sname)
        sd.check_sound()
        if snode.is_dir and sd is not td:
            self.dir_of(snode).check_sound()
            self.dir_of(snode).read_slot(1)       # '..' is rewritten: read it before changes
        if tnode is snode:
            if sd is td and sname == tname:
                return
            tnode = None
        ttext = check_long(tname)
        tslot = td.lookup(ttext)
        if tslot is sslot:
            tslot = None
        if tnode is not None:
            if tslot is None:
                raise KernelError(Errno.ENOENT, "msdos: rename target vanished")
            if tnode.is_dir and not self.dir_of(tnode).empty:
                raise KernelError(Errno.ENOTEMPTY)
        elif tslot is not None:
            raise KernelError(Errno.EEXIST)
        if tnode is not None:
            self.check_writable(tnode)
        if sd is td and self._rename_in_sector(sd, sslot, snode, ttext, tslot, tnode):
            self.touch_dir(sdnode)
            return
        plan = td.grow(td.plan_add(ttext))
        td.prefetch(plan, tslot)
        sd.prefetch(None, sslot)
        if tnode is not None and tslot is not None and td.lookup(ttext) is tslot:
            self._drop_target(td, tslot, tnode)
        self._move(sd, sslot, snode, td, plan, tdnode)
        if sd is not td:
            self.touch_dir(tdnode)
        self.touch_dir(sdnode)

    def _rename_in_sector(self, d: Directory, sslot: DirSlot, snode: Node, ttext: str,
                          tslot: DirSlot | None, tnode: Node | None) -> bool:
        """A rename inside one directory by one atomic sector write (``Directory.replace``):
        no crash can leave both names.  A replaced target in another sector is removed first
        (a crash between leaves the source under its old name and the target gone; its
        clusters are freed at the next sync, after the entry).  False: nothing changed (the
        new name does not fit in the source's sector)."""
        drop = tslot if tnode is not None else None
        if drop is not None and not d.in_sector(sslot, drop):
            if not d.fits(sslot, ttext):
                return False
            self._drop_target(d, drop, tnode)
            drop = None
        done = d.replace(sslot, ttext, snode.entry, drop)
        if done is None:
            return False
        if drop is not None:
            self._forget_target(tnode)
        slot, written = done
        snode.entry = written
        self.inos.moved(snode, d.epos(slot.index))
        return True

    def _move(self, sd: Directory, sslot: DirSlot, snode: Node, td: Directory, plan: AddPlan,
              tdnode: Node) -> None:
        """A rename ``replace`` could not do in one sector write (another directory, or no
        room in the old entry's sector): new entry first, made durable, then the old one
        removed and made durable at once -- a crash in between leaves two names for one chain
        (fsck.fat keeps the data under one of them), never none; the second barrier keeps that
        window to the two writes instead of until the next sync.  An old entry that was never
        flushed needs no barriers (a cut loses it either way).  A case-only rename that did
        not fit goes the same way (the new entry gets another short name)."""
        slot, written = td.add(plan.name, snode.entry, plan)
        durable = sslot.gen < self.sync_gen     # the old entry may be on disk: new one first
        failed: KernelError | None = None
        if durable:
            try:
                self.barrier()
            except KernelError as e:            # finish in memory; the write is retried later
                failed = e
        sd.remove(sslot)
        self._moved(snode, written, td, slot, tdnode, sd)
        if durable and failed is None:
            try:
                self.barrier()                  # the old entry's removal: window closed
            except KernelError as e:
                failed = e
        if failed is not None:
            raise failed

    def _moved(self, snode: Node, written: ShortEntry, td: Directory, slot: DirSlot,
               tdnode: Node, sd: Directory) -> None:
        snode.entry = written
        self.inos.moved(snode, td.epos(slot.index))
        if snode.is_dir and sd is not td:
            cluster = 0 if tdnode is self.root else tdnode.entry.cluster
            self.dir_of(snode).set_dotdot(cluster)
        snode.parent = tdnode.ino

    def _drop_target(self, td: Directory, tslot: DirSlot, tnode: Node) -> None:
        td.remove(tslot)
        self._forget_target(tnode)

    def _forget_target(self, tnode: Node) -> None:
        """The replaced target's entry is gone: its node is unlinked (clusters freed later)."""
        if tnode.is_dir:
            self._kill_dir(tnode)
        else:
            tnode.unlinked = True
            self.inos.moved(tnode, None)

    # -- setattr ----------------------------------------------------------------------------
    def setattr(self, node: Node, changes: SetAttr) -> None:
        self.check_writable(node if changes.size is not None else None)
        opts = self.opts
        if ((changes.uid is not None and changes.uid != opts.uid)
                or (changes.gid is not None and changes.gid != opts.gid)) and not opts.quiet:
            raise KernelError(Errno.EPERM, "msdos: FAT cannot store file owners")
        if changes.mode is not None:
            self._chmod(node, changes.mode)
        if changes.size is not None:
            if node.is_dir:
                raise KernelError(Errno.EISDIR)
            fileio.truncate(self, node, changes.size)
        if changes.mtime_ns is not None or changes.atime_ns is not None:
            self._utimes(node, changes.atime_ns, changes.mtime_ns)
        self.write_entry(node)

    def _chmod(self, node: Node, mode: int) -> None:
        mask = self.opts.dmask if node.is_dir else self.opts.fmask
        cur = self.getattr(node).mode
        perm = mode & 0o7777 & ~mask
        wbits = 0o222 & ~mask
        bad = bool(mode & 0o7000) or (perm & 0o555) != (cur & 0o555)
        if node.is_dir:
            bad = bad or (perm & 0o222) != wbits
        else:
            bad = bad or bool(perm & 0o222 and (perm & 0o222) != wbits)
        if bad:
            if self.opts.quiet:
                return
            raise KernelError(Errno.EPERM, "msdos: FAT can only toggle the write bits")
        if not node.is_dir and node is not self.root:
            attr = node.entry.attr & ~ATTR_READONLY
            if not perm & 0o222:
                attr |= ATTR_READONLY
            node.entry = node.entry.replace(attr=attr)

    def _utimes(self, node: Node, atime: int | None, mtime: int | None) -> None:
        if node is self.root:
            return
        off = self.opts.time_offset_s
        e = node.entry
        if mtime is not None:
            d, t, _ = to_fat(mtime, off)
            e = e.replace(mdate=d, mtime=t)
        if atime is not None:
            e = e.replace(adate=to_fat(atime, off)[0])
        node.entry = e
