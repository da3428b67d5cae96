"""Block-mapped files (ext2/ext3): 12 direct pointers and single, double and triple indirect
blocks.

Interface (the same as ``extents.ExtentMap``):
    IndirectMap(fs, node)
    m.runs(lblk, count) -> [(lblk, pblk, n)]        pblk 0 = hole; contiguous blocks coalesced
    m.map_alloc(lblk, count, goal) -> [(lblk, pblk, n, new)]      ENOSPC, EFBIG
    m.truncate(first_lblk)
    m.punch(first, end)                             frees the blocks of [first, end)
    m.next_data(lblk) -> int | None
    m.store()                                       nothing to do: changes are written in place

Rules: every pointer read from disk is checked to lie inside the file system before it is
followed or returned; the tree has a fixed depth, so walks are bounded by the range asked for.
Indirect blocks count in i_blocks like data blocks.
"""

from __future__ import annotations

import struct
from typing import Any

from rumpkernel.kern.errno import Errno, KernelError, corrupt

NDIR = 12


class IndirectMap:
    def __init__(self, fs: Any, node: Any) -> None:
        self.vol = fs.vol
        self.node = node
        self.per = self.vol.block_size // 4
        self._unpack = struct.Struct(f"<{self.per}I").unpack
        p = self.per
        self.limits = (NDIR, NDIR + p, NDIR + p + p * p, NDIR + p + p * p + p * p * p)
        self.dirty = False

    # -- pointer paths ------------------------------------------------------------------------
    def _path(self, lblk: int) -> tuple[int, list[int]]:
        """(root slot in i_block, indexes at each indirect level) for ``lblk``."""
        p = self.per
        if lblk < NDIR:
            return lblk, []
        if lblk < self.limits[1]:
            return 12, [lblk - NDIR]
        if lblk < self.limits[2]:
            r = lblk - self.limits[1]
            return 13, [r // p, r % p]
        if lblk < self.limits[3]:
            r = lblk - self.limits[2]
            return 14, [r // (p * p), r // p % p, r % p]
        raise KernelError(Errno.EFBIG, "ext: offset beyond the indirect block map")

    def _root(self, slot: int) -> int:
        return int.from_bytes(self.node.iblock[slot * 4:slot * 4 + 4], "little")

    def _ptrs(self, blk: int) -> tuple[int, ...]:
        self.vol.check_block(blk, 1, f"inode {self.node.ino} indirect block")
        return self._unpack(self.vol.read(blk))

    def _leaf(self, lblk: int) -> tuple[tuple[int, ...] | None, int, int]:
        """(pointer array holding lblk's pointer or None for a hole, index, span of a hole)."""
        slot, path = self._path(lblk)
        if not path:
            ptrs = struct.unpack("<12I", bytes(self.node.iblock[:48]))
            return ptrs, lblk, 1
        blk = self._root(slot)
        span = self.per ** len(path)
        for depth, idx in enumerate(path):
            if blk == 0:
                rem = sum(i * self.per ** (len(path) - 1 - k) for k, i in
                          enumerate(path) if k >= depth)
                return None, 0, span - rem
            if depth == len(path) - 1:
                return self._ptrs(blk), idx, 1
            span //= self.per
            blk = self._ptrs(blk)[idx]
        return None, 0, 1  # unreachable

    # -- queries ------------------------------------------------------------------------------
    def runs(self, lblk: int, count: int) -> list[tuple[int, int, int]]:
        out: list[list[int]] = []
        end = lblk + count
        while lblk < end:
            ptrs, idx, span = self._leaf(lblk)
            if ptrs is None:
                n = min(span, end - lblk)
                _append(out, lblk, 0, n)
                lblk += n
                continue
            stop = min(len(ptrs), idx + end - lblk) if lblk >= NDIR else min(NDIR, end)
            for i in range(idx, stop):
                p = ptrs[i]
                if p:
                    self.vol.check_block(p, 1, f"inode {self.node.ino} data block")
                _append(out, lblk, p, 1)
                lblk += 1
        return [tuple(r) for r in out]  # type: ignore[misc]

    def next_data(self, lblk: int) -> int | None:
        total = self.limits[3]
        while lblk < total:
            ptrs, idx, span = self._leaf(lblk)
            if ptrs is None:
                lblk += span
                continue
            stop = len(ptrs) if lblk >= NDIR else NDIR
            for i in range(idx, stop):
                if ptrs[i]:
                    return lblk + i - idx
            lblk += stop - idx
        return None

    def all_blocks(self) -> list[tuple[int, int]]:
        """[(pblk, n)] of every block the map holds: data and indirect blocks (reads them)."""
        out = [(p, 1) for p in struct.unpack("<12I", bytes(self.node.iblock[:48])) if p]
        for level, slot in ((1, 12), (2, 13), (3, 14)):
            p = self._root(slot)
            if p:
                self._collect(p, level, out)
        return out

    def _collect(self, blk: int, level: int, out: list[tuple[int, int]]) -> None:
        out.append((blk, 1))
        for p in self._ptrs(blk):
            if not p:
                continue
            if level == 1:
                self.vol.check_block(p, 1, f"inode {self.node.ino} data block")
                last = out[-1]
                if last[0] + last[1] == p:
                    out[-1] = (last[0], last[1] + 1)
                else:
                    out.append((p, 1))
            else:
                self._collect(p, level - 1, out)

    # -- allocation ---------------------------------------------------------------------------
    def map_alloc(self, lblk: int, count: int, goal: int) -> list[tuple[int, int, int, bool]]:
        if lblk + count > self.limits[3]:
            raise KernelError(Errno.EFBIG, "ext: file too large for the block map")
        out: list[tuple[int, int, int, bool]] = []
        for start, pblk, n in self.runs(lblk, count):
            if pblk:
                out.append((start, pblk, n, False))
                goal = pblk + n
                continue
            while n:
                got_blk, got = self.vol.alloc_blocks(goal, n)
                self.node.blocks += got * (self.vol.block_size // 512)
                for k in range(got):
                    self._set(start + k, got_blk + k)
                out.append((start, got_blk, got, True))
                goal = got_blk + got
                start += got
                n -= got
        return out

    def _set(self, lblk: int, pblk: int) -> None:
        slot, path = self._path(lblk)
        if not path:
            self.node.iblock[lblk * 4:lblk * 4 + 4] = pblk.to_bytes(4, "little")
            self.node.dirty = True
            return
        blk = self._root(slot)
        if blk == 0:
            blk = self._new_indirect(pblk)
            self.node.iblock[slot * 4:slot * 4 + 4] = blk.to_bytes(4, "little")
            self.node.dirty = True
        for depth, idx in enumerate(path):
            data = self.vol.read(blk)
            if depth == len(path) - 1:
                self._put(blk, data, idx, pblk)
                return
            child = int.from_bytes(data[idx * 4:idx * 4 + 4], "little")
            if child == 0:
                child = self._new_indirect(pblk)
                self._put(blk, data, idx, child)
            blk = child

    def _new_indirect(self, near: int) -> int:
        blk, _ = self.vol.alloc_blocks(near, 1)
        self.node.blocks += self.vol.block_size // 512
        self.vol.write(blk, bytes(self.vol.block_size))
        return blk

    def _put(self, blk: int, data: bytes, idx: int, value: int) -> None:
        buf = bytearray(data)
        buf[idx * 4:idx * 4 + 4] = value.to_bytes(4, "little")
        self.vol.write(blk, buf)

    # -- truncation and holes -----------------------------------------------------------------
    def truncate(self, first: int) -> None:
        self.punch(first, self.limits[3])

    def punch(self, first: int, end: int) -> None:
        """Free every block in logical blocks [first, end), and indirect blocks left empty."""
        ib = self.node.iblock
        for i in range(min(first, NDIR), min(end, NDIR)):
            p = int.from_bytes(ib[i * 4:i * 4 + 4], "little")
            if p:
                self._free(p)
                ib[i * 4:i * 4 + 4] = b"\0\0\0\0"
        for level, slot in ((1, 12), (2, 13), (3, 14)):
            base, top = self.limits[level - 1], self.limits[level]
            p = self._root(slot)
            if p and first < top and end > base and \
                    self._punch_tree(p, level, max(0, first - base), min(end, top) - base):
                self._free(p)
                ib[slot * 4:slot * 4 + 4] = b"\0\0\0\0"
        self.node.dirty = True

    def _punch_tree(self, blk: int, level: int, first: int, end: int) -> bool:
        """Free everything in relative blocks [first, end) below ``blk``; True when the
        indirect block itself became empty (the caller frees it)."""
        ptrs = list(self._ptrs(blk))
        span = self.per ** (level - 1)
        changed = False
        for i, p in enumerate(ptrs):
            lo, hi = i * span, (i + 1) * span
            if not p or hi <= first or lo >= end:
                continue
            if level == 1 or self._punch_tree(p, level - 1, max(0, first - lo),
                                              min(end, hi) - lo):
                self._free(p)
                ptrs[i] = 0
                changed = True
        if not any(ptrs):
            return True
        if changed:
            self.vol.write(blk, struct.pack(f"<{self.per}I", *ptrs))
        return False

    def _free(self, pblk: int) -> None:
        self.vol.free_blocks(pblk, 1)
        self.node.blocks = max(0, self.node.blocks - self.vol.block_size // 512)

    def store(self) -> None:
        return None


def _append(out: list[list[int]], lblk: int, pblk: int, n: int) -> None:
    if out:
        last = out[-1]
        if last[0] + last[2] == lblk and ((pblk == 0 and last[1] == 0) or
                                          (pblk and last[1] and last[1] + last[2] == pblk)):
            last[2] += n
            return
    out.append([lblk, pblk, n])


def check_pointer(vol: Any, blk: int) -> None:
    if blk and not vol.geo.first_data_block <= blk < vol.geo.blocks_count:
        raise corrupt(f"ext: block pointer {blk} outside the file system")
