"""All-or-nothing vnode operations: an in-memory undo log.

Every operation that changes the file system runs inside one ``Txn``.  Whatever fails inside
it -- ENOSPC half way through a rename, EIO reading a bitmap, EUCLEAN from a corrupt block --
the operation either completes or leaves the file system exactly as it was: the log puts back
every cached metadata block, bitmap, group counter, the superblock record and every inode the
operation could touch.

Interface (used by ``fs.py``, ``volume.py`` and ``extents.py``):
    Txn(fs, nodes)            begins; snapshots ``nodes`` (the operation's inode arguments)
    txn.note_inode(node)      snapshot one more inode (a new inode: ``new_inode``)
    txn.new_inode(node)       an inode allocated by this operation (dropped on rollback)
    txn.note_block(blk, old)  the contents of a cached block before its first change
    txn.note_bitmap(kind, group, bitmap) / txn.note_counts(group, counts)
    txn.note_map(emap)        an extent map before its first change
    txn.allocated(start, n) / txn.is_new(blk)   blocks this operation allocated
    txn.defer_forget(start, n)                  freed blocks: drop their cached copies at commit
    txn.commit() / txn.rollback()

Rules: snapshots are taken before the first change of each object; rollback restores them in
reverse dependency order (blocks, then bitmaps and counters, then inodes).  Data written
straight to the device (file contents) is not undone: a failed write may leave part of its
data, as POSIX allows, but never a block that the metadata does not account for.  Directory
caches of restored inodes are dropped and reread.  Operations do not nest: an inner
operation (``write`` from ``uninline``) joins the outer one.
"""

from __future__ import annotations

from typing import Any

_INODE_FIELDS = ("atime", "blocks", "crtime", "ctime", "dirty", "dtime", "emap", "extra_isize",
                 "file_acl", "flags", "generation", "gid", "links", "mode", "mtime", "projid",
                 "seed", "size", "uid", "version", "xcache")


class Txn:
    __slots__ = ("bitmaps", "blocks", "counts", "forgets", "fs", "inodes", "maps", "new_blocks",
                 "new_inodes", "vol_state")

    def __init__(self, fs: Any, nodes: tuple[Any, ...]) -> None:
        self.fs = fs
        vol = fs.vol
        self.vol_state = (vol.sb, vol.sb_dirty, vol._dir_rotor, vol.changed,
                          len(vol.pending_frees), len(vol.pending_ifrees))
        self.blocks: dict[int, bytes] = {}
        self.bitmaps: dict[tuple[str, int], bytes] = {}
        self.counts: dict[int, list[int]] = {}
        self.inodes: dict[int, tuple[Any, dict[str, Any], bytes, bytes, bool]] = {}
        self.maps: dict[int, tuple[Any, list[list[int]], list[int], bool]] = {}
        self.new_inodes: list[Any] = []
        self.new_blocks: list[tuple[int, int]] = []
        self.forgets: list[tuple[int, int]] = []
        for node in nodes:
            self.note_inode(node)

    # -- recording ----------------------------------------------------------------------------
    def note_inode(self, node: Any) -> None:
        if id(node) in self.inodes or not hasattr(node, "raw"):
            return
        fields = {f: getattr(node, f) for f in _INODE_FIELDS}
        cached = self.fs.inodes.get(node.ino) is node
        self.inodes[id(node)] = (node, fields, bytes(node.raw), bytes(node.iblock), cached)
        emap = node.emap
        if emap is not None and hasattr(emap, "exts"):
            self.note_map(emap)

    def new_inode(self, node: Any) -> None:
        self.new_inodes.append(node)

    def note_block(self, blk: int, old: bytes) -> None:
        if blk not in self.blocks:
            self.blocks[blk] = old

    def wants_block(self, blk: int) -> bool:
        """Does a change of ``blk`` need its old contents saved?  Not for blocks this
        operation allocated (they were free: nothing to restore)."""
        return blk not in self.blocks and not self.is_new(blk)

    def note_bitmap(self, kind: str, group: int, bitmap: bytearray) -> None:
        if (kind, group) not in self.bitmaps:
            self.bitmaps[kind, group] = bytes(bitmap)

    def note_counts(self, group: int, counts: list[int]) -> None:
        if group not in self.counts:
            self.counts[group] = list(counts)

    def note_map(self, emap: Any) -> None:
        if id(emap) not in self.maps:
            self.maps[id(emap)] = (emap, [list(e) for e in emap.exts], list(emap.tree_blocks),
                                   emap.dirty)

    def allocated(self, start: int, n: int) -> None:
        """Blocks handed out by this operation; those it freed first were in use before it
        began and are not new (their old contents may still need saving)."""
        self.new_blocks.extend(subtract([(start, n)], self.forgets))

    def is_new(self, blk: int) -> bool:
        return any(s <= blk < s + n for s, n in self.new_blocks)

    def new_parts(self, start: int, n: int) -> list[tuple[int, int]]:
        """The parts of [start, start+n) this operation allocated."""
        end = start + n
        out = []
        for s, k in self.new_blocks:
            lo, hi = max(s, start), min(s + k, end)
            if lo < hi:
                out.append((lo, hi - lo))
        return out

    def defer_forget(self, start: int, n: int) -> None:
        self.forgets.append((start, n))

    # -- ending -------------------------------------------------------------------------------
    def commit(self) -> None:
        """Drop cached copies of the blocks freed (and not reallocated) by the operation."""
        vol = self.fs.vol
        for start, n in subtract(self.forgets, self.new_blocks):
            vol.bio.forget(start, n)

    def rollback(self) -> None:
        vol = self.fs.vol
        for start, n in self.new_blocks:          # their cached contents are garbage now
            vol.forget_new(start, n)
        for blk, old in self.blocks.items():
            vol.put(blk, old)
        for (kind, group), bitmap in self.bitmaps.items():
            vol.restore_bitmap(kind, group, bitmap)
        for group, counts in self.counts.items():
            vol.restore_counts(group, counts)
        marked = vol.changed
        vol.sb, vol.sb_dirty, vol._dir_rotor, vol.changed, nfrees, nifrees = self.vol_state
        del vol.pending_ifrees[nifrees:]
        if marked and not vol.changed:     # the not-clean mark went to the disk: undo it there
            vol.home_sb_stale = True
        del vol.pending_frees[nfrees:]
        for emap, exts, tree, dirty in self.maps.values():
            emap.exts = exts
            emap.starts = [e[0] for e in exts]
            emap.tree_blocks = tree
            emap.dirty = dirty
        inodes = self.fs.inodes
        for node in self.new_inodes:
            if inodes.get(node.ino) is node:
                del inodes[node.ino]
        for node, fields, raw, iblock, cached in self.inodes.values():
            for f, v in fields.items():
                setattr(node, f, v)
            node.raw[:] = raw
            node.iblock[:] = iblock
            node.dcache = None                   # reread from the restored blocks
            if cached:
                inodes[node.ino] = node


def subtract(ranges: list[tuple[int, int]],
              holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of ``ranges`` outside every range in ``holes``."""
    out = list(ranges)
    for hs, hn in holes:
        he = hs + hn
        nxt = []
        for s, n in out:
            e = s + n
            if e <= hs or s >= he:
                nxt.append((s, n))
                continue
            if s < hs:
                nxt.append((s, hs - s))
            if e > he:
                nxt.append((he, e - he))
        out = nxt
    return out
