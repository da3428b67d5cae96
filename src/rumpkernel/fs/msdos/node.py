"""In-memory nodes and the inode-number scheme.

Interface:
    ROOT_INO                 -- inode number of the root directory (1)
    Node                     -- a live file or directory: its short entry, where it lives, its
                                cluster chain and (directories) its parsed ``Directory``
    InodeTable               -- live nodes by inode number and the position <-> number remap

Inode numbers: FAT has none.  An entry's *natural* number is its position: the index of its
32-byte short entry counted from the start of the file system (always > 1, since the boot
sector comes first).  A live node keeps its number when ``rename`` moves its entry (the new
position is remapped to the old number, as Linux's vfat keeps i_ino and changes i_pos); an
unlinked node keeps its number until reclaimed.  When a position's natural number is still held
by a live node that lives elsewhere, the position gets a synthetic number (>= 2**40) instead,
so two live nodes never share a number.  Remaps are dropped when the node is reclaimed or the
entry removed; numbers are therefore stable while the VFS holds a node, not across reclaim.
"""

from __future__ import annotations

from rumpkernel.fs.msdos.directory import Directory
from rumpkernel.fs.msdos.layout import ShortEntry

ROOT_INO = 1
SYNTHETIC_BASE = 1 << 40


class Node:
    __slots__ = ("chain", "damaged", "dir", "entry", "epos", "ino", "is_dir", "parent",
                 "serial", "unlinked")

    def __init__(self, ino: int, serial: int, entry: ShortEntry, epos: int | None,
                 is_dir: bool) -> None:
        self.ino = ino
        self.serial = serial
        self.entry = entry
        self.epos = epos
        self.is_dir = is_dir
        self.chain: list[int] | None = None
        self.dir: Directory | None = None
        self.parent: int | None = None
        self.unlinked = False
        self.damaged: str | None = None

    def __repr__(self) -> str:
        return f"<msdos.Node ino={self.ino} epos={self.epos} dir={self.is_dir}>"


class InodeTable:
    __slots__ = ("_ino2pos", "_next", "_pos2ino", "live")

    def __init__(self) -> None:
        self.live: dict[int, Node] = {}
        self._pos2ino: dict[int, int] = {}
        self._ino2pos: dict[int, int] = {}
        self._next = SYNTHETIC_BASE

    def ino_for(self, epos: int) -> int:
        """The inode number of the entry at ``epos``."""
        ino = self._pos2ino.get(epos)
        if ino is not None:
            return ino
        holder = self.live.get(epos)
        if holder is None or holder.epos == epos:
            return epos
        ino = self._next
        self._next += 1
        self._map(epos, ino)
        return ino

    def pos_of(self, ino: int) -> int | None:
        """Where ``ino`` lives now, or None if the number is stale."""
        pos = self._ino2pos.get(ino)
        if pos is not None:
            return pos
        if ino >= SYNTHETIC_BASE or ino <= ROOT_INO:
            return None
        other = self._pos2ino.get(ino)
        return None if other is not None and other != ino else ino

    def _map(self, epos: int, ino: int) -> None:
        self._unmap(epos)
        self._pos2ino[epos] = ino
        self._ino2pos[ino] = epos

    def _unmap(self, epos: int) -> None:
        ino = self._pos2ino.pop(epos, None)
        if ino is not None:
            self._ino2pos.pop(ino, None)

    def moved(self, node: Node, epos: int | None) -> None:
        """``node``'s entry now lives at ``epos`` (None: removed)."""
        if node.epos is not None:
            self._unmap(node.epos)
        node.epos = epos
        if epos is not None:
            if epos == node.ino:
                self._unmap(epos)
            else:
                self._map(epos, node.ino)

    def removed(self, epos: int) -> None:
        """The entry at ``epos`` is gone (no live node for it)."""
        self._unmap(epos)

    def forget(self, node: Node) -> None:
        if self.live.get(node.ino) is node:
            del self.live[node.ino]
        if node.epos is not None and self._pos2ino.get(node.epos) == node.ino:
            self._unmap(node.epos)
