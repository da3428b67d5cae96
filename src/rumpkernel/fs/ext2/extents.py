"""Extent-mapped files (ext4): the extent tree read into a flat, sorted list, and written back
as a freshly packed tree of any depth when it changed.

Interface (the same as ``blockmap.IndirectMap``):
    ExtentMap(fs, node)                 reads and validates the whole tree (EUCLEAN)
    m.runs(lblk, count) -> [(lblk, pblk, n)]       pblk 0 = hole (unwritten extents too)
    m.map_alloc(lblk, count, goal) -> [(lblk, pblk, n, new)]   allocates holes (ENOSPC)
    m.truncate(first_lblk)              frees every block at or after ``first_lblk``
    m.punch(first, end)                 frees the blocks of [first, end) (a hole)
    m.next_data(lblk) -> int | None     first mapped logical block >= lblk
    m.store()                           writes the tree (root in i_block, nodes in blocks)

Rules: a tree read from disk is checked node by node: magic, entry counts against the space in
the node, depth decreasing by one per level (so no cycles), keys sorted and inside the parent's
range, physical blocks inside the file system, no node block visited twice, checksum tails.
Writing reuses the tree's old node blocks, allocates more when it grows and frees the rest.
Unwritten extents are zero-filled and converted when written into.
"""

from __future__ import annotations

import bisect
import struct
from typing import Any

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.kern.errno import Errno, KernelError, corrupt

_HDR = struct.Struct("<HHHHI")
_ENT = struct.Struct("<IHHI")    # leaf: block, len, start_hi, start_lo
_IDX = struct.Struct("<IIHH")    # index: block, leaf_lo, leaf_hi, unused
MAX_DEPTH = 5
MAX_INIT_LEN = 32768
MAX_UNWRITTEN_LEN = 32767
MAX_LBLK = 1 << 32


class ExtentMap:
    def __init__(self, fs: Any, node: Any) -> None:
        self.fs = fs
        self.vol = fs.vol
        self.node = node
        self.exts: list[list[int]] = []      # [lblk, pblk, len, unwritten]
        self.starts: list[int] = []
        self.tree_blocks: list[int] = []
        self.dirty = False
        self._seen: set[int] = set()
        self._load_node(bytes(node.iblock), 0, MAX_LBLK, None, True)
        self.starts = [e[0] for e in self.exts]
        self._seen = set()

    # -- loading ------------------------------------------------------------------------------
    def _load_node(self, data: bytes, lo: int, hi: int, depth: int | None, root: bool) -> None:
        magic, entries, emax, d, _ = _HDR.unpack_from(data, 0)
        ino = self.node.ino
        space = (len(data) - 12) // 12
        if magic != L.EXTENT_MAGIC:
            raise corrupt(f"ext: inode {ino}: extent header magic {magic:#x}")
        if entries > emax or emax > space or (not root and emax == 0):
            raise corrupt(f"ext: inode {ino}: extent node with {entries}/{emax} entries")
        if d > MAX_DEPTH or (depth is not None and d != depth):
            raise corrupt(f"ext: inode {ino}: extent depth {d} where {depth} expected")
        prev = lo - 1
        for i in range(entries):
            off = 12 + 12 * i
            if d == 0:
                prev = self._load_leaf(data, off, prev, hi)
                continue
            blk, leaf_lo, leaf_hi, _ = _IDX.unpack_from(data, off)
            child = leaf_lo | leaf_hi << 32
            nxt = _IDX.unpack_from(data, off + 12)[0] if i + 1 < entries else hi
            if blk <= prev or blk < lo or nxt <= blk:
                raise corrupt(f"ext: inode {ino}: extent index keys out of order")
            prev = blk
            self._load_child(child, blk, min(nxt, hi), d - 1)

    def _load_leaf(self, data: bytes, off: int, prev: int, hi: int) -> int:
        blk, ln, start_hi, start_lo = _ENT.unpack_from(data, off)
        unwritten = ln > MAX_INIT_LEN
        if unwritten:
            ln -= MAX_INIT_LEN
        pblk = start_lo | start_hi << 32
        if ln == 0 or blk <= prev or blk + ln > hi:
            raise corrupt(f"ext: inode {self.node.ino}: extent {blk}+{ln} out of order")
        self.vol.check_block(pblk, ln, f"inode {self.node.ino} extent")
        self.exts.append([blk, pblk, ln, int(unwritten)])
        return blk + ln - 1

    def _load_child(self, blk: int, lo: int, hi: int, depth: int) -> None:
        vol = self.vol
        vol.check_block(blk, 1, f"inode {self.node.ino} extent node")
        if blk in self._seen:
            raise corrupt(f"ext: inode {self.node.ino}: extent node {blk} used twice")
        self._seen.add(blk)
        self.tree_blocks.append(blk)
        data = vol.read(blk)
        if vol.metadata_csum:
            emax = _HDR.unpack_from(data, 0)[2]
            tail = 12 + 12 * emax
            if tail + 4 > len(data):
                raise corrupt(f"ext: inode {self.node.ino}: extent node {blk} too full")
            want = int.from_bytes(data[tail:tail + 4], "little")
            if vol.csum(self.node.seed, data[:tail]) != want:
                raise corrupt(f"ext: inode {self.node.ino}: extent block {blk} checksum")
        self._load_node(data, lo, hi, depth, False)

    # -- queries ------------------------------------------------------------------------------
    def _index(self, lblk: int) -> int:
        """Index of the extent containing ``lblk`` or of the last one before it (-1)."""
        return bisect.bisect_right(self.starts, lblk) - 1

    def runs(self, lblk: int, count: int) -> list[tuple[int, int, int]]:
        out = []
        end = lblk + count
        exts = self.exts
        while lblk < end:
            i = self._index(lblk)
            if i >= 0 and lblk < exts[i][0] + exts[i][2]:
                e = exts[i]
                n = min(end, e[0] + e[2]) - lblk
                out.append((lblk, 0 if e[3] else e[1] + lblk - e[0], n))
            else:
                nxt = exts[i + 1][0] if i + 1 < len(exts) else end
                n = min(end, nxt) - lblk
                out.append((lblk, 0, n))
            lblk += n
        return out

    def next_data(self, lblk: int) -> int | None:
        i = max(self._index(lblk), 0)
        for e in self.exts[i:]:
            if e[0] + e[2] > lblk and not e[3]:
                return max(lblk, e[0])
        return None

    def all_blocks(self) -> list[tuple[int, int]]:
        """[(pblk, n)] of every block the map holds: extents and tree nodes."""
        return [(e[1], e[2]) for e in self.exts] + [(b, 1) for b in self.tree_blocks]

    def mapped_blocks(self) -> int:
        return sum(e[2] for e in self.exts)

    # -- allocation ---------------------------------------------------------------------------
    def map_alloc(self, lblk: int, count: int, goal: int) -> list[tuple[int, int, int, bool]]:
        if lblk + count > MAX_LBLK:
            raise KernelError(Errno.EFBIG, "ext: file too large for extents")
        out: list[tuple[int, int, int, bool]] = []
        end = lblk + count
        while lblk < end:
            i = self._index(lblk)
            if i >= 0 and lblk < self.exts[i][0] + self.exts[i][2]:
                e = self.exts[i]
                if e[3]:
                    self._convert_unwritten(e)
                n = min(end, e[0] + e[2]) - lblk
                out.append((lblk, e[1] + lblk - e[0], n, False))
            else:
                nxt = self.exts[i + 1][0] if i + 1 < len(self.exts) else end
                want = min(end, nxt) - lblk
                pblk, n = self._alloc(i, lblk, want, goal)
                out.append((lblk, pblk, n, True))
            lblk += n
        return out

    def _note(self) -> None:
        """Before a change: let the running operation's undo log keep the old list."""
        if self.vol.txn is not None:
            self.vol.txn.note_map(self)

    def _alloc(self, i: int, lblk: int, want: int, goal: int) -> tuple[int, int]:
        self._note()
        exts = self.exts
        if i >= 0:
            prev = exts[i]
            goal = prev[1] + prev[2] + (lblk - prev[0] - prev[2])
        pblk, n = self.vol.alloc_blocks(goal, min(want, MAX_INIT_LEN))
        self.node.blocks += n * (self.vol.block_size // 512)
        if i >= 0 and not exts[i][3] and exts[i][0] + exts[i][2] == lblk and \
                exts[i][1] + exts[i][2] == pblk and exts[i][2] + n <= MAX_INIT_LEN:
            exts[i][2] += n
        else:
            exts.insert(i + 1, [lblk, pblk, n, 0])
            self.starts.insert(i + 1, lblk)
        self.dirty = True
        return pblk, n

    def _convert_unwritten(self, e: list[int]) -> None:
        self._note()
        bs = self.vol.block_size
        done = 0
        while done < e[2]:
            n = min(e[2] - done, 256)
            self.vol.write_run(e[1] + done, bytes(n * bs))
            done += n
        e[3] = 0
        self.dirty = True

    def truncate(self, first: int) -> None:
        self.punch(first, MAX_LBLK)

    def punch(self, first: int, end: int) -> None:
        """Free every block in logical blocks [first, end); extents across an edge split."""
        if end <= first:
            return
        self._note()
        keep: list[list[int]] = []
        for e in self.exts:
            lo, hi = max(e[0], first), min(e[0] + e[2], end)
            if lo >= hi:
                keep.append(e)
                continue
            self._free(e[1] + lo - e[0], hi - lo)
            if e[0] < lo:
                keep.append([e[0], e[1], lo - e[0], e[3]])
            if hi < e[0] + e[2]:
                keep.append([hi, e[1] + hi - e[0], e[0] + e[2] - hi, e[3]])
        self.exts = keep
        self.starts = [e[0] for e in keep]
        self.dirty = True

    def _free(self, pblk: int, n: int) -> None:
        self.vol.free_blocks(pblk, n)
        self.node.blocks = max(0, self.node.blocks - n * (self.vol.block_size // 512))

    # -- writing the tree ---------------------------------------------------------------------
    def store(self) -> None:
        if not self.dirty:
            return
        self._note()
        bs = self.vol.block_size
        per_block = (bs - 12) // 12
        level = [(e[0], _ENT.pack(e[0], e[2] + (MAX_INIT_LEN if e[3] else 0), e[1] >> 32,
                                  e[1] & 0xFFFFFFFF)) for e in self.exts]
        depth = 0
        old = list(self.tree_blocks)
        used: list[int] = []
        while len(level) > 4:
            nxt = []
            for k in range(0, len(level), per_block):
                chunk = level[k:k + per_block]
                blk = old.pop(0) if old else self._alloc_node()
                used.append(blk)
                self._write_node(blk, chunk, depth, per_block)
                nxt.append((chunk[0][0], _IDX.pack(chunk[0][0], blk & 0xFFFFFFFF, blk >> 32, 0)))
            level = nxt
            depth += 1
        root = _HDR.pack(L.EXTENT_MAGIC, len(level), 4, depth, 0) + b"".join(r for _, r in level)
        self.node.iblock[:] = root.ljust(60, b"\0")
        for blk in old:
            self._free(blk, 1)
        self.tree_blocks = used
        self.node.dirty = True
        self.dirty = False

    def _alloc_node(self) -> int:
        goal = self.exts[-1][1] + self.exts[-1][2] if self.exts else 0
        blk, _ = self.vol.alloc_blocks(goal, 1)
        self.node.blocks += self.vol.block_size // 512
        return blk

    def _write_node(self, blk: int, chunk: list[tuple[int, bytes]], depth: int,
                    emax: int) -> None:
        bs = self.vol.block_size
        buf = bytearray(bs)
        body = _HDR.pack(L.EXTENT_MAGIC, len(chunk), emax, depth, 0) + b"".join(
            r for _, r in chunk)
        buf[:len(body)] = body
        if self.vol.metadata_csum:
            tail = 12 + 12 * emax
            buf[tail:tail + 4] = self.vol.csum(self.node.seed, buf[:tail]).to_bytes(4, "little")
        self.vol.write(blk, buf)


def empty_root() -> bytes:
    """i_block contents of an extent-mapped inode with no extents."""
    return _HDR.pack(L.EXTENT_MAGIC, 0, 4, 0, 0).ljust(60, b"\0")
