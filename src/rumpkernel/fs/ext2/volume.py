"""The mounted volume: block access (with a read-only replay overlay), the superblock, group
descriptors, bitmaps, block and inode allocation, raw inode-table I/O and metadata checksums.

Interface:
    Volume(bio, sb_bytes, device_blocks, readonly, log)      (EINVAL / EUCLEAN)
    vol.read(blk) / vol.read_run(blk, n) / vol.write(blk, data) / vol.write_run(blk, data)
    vol.overlay                  -- {block: bytes} newer than the device: replayed journal
                                    blocks on a read-only mount; the running transaction's
                                    metadata when ``journaled`` (jwrite.py commits it)
    vol.journaled                -- metadata goes to ``overlay`` (the running transaction)
    vol.defer_frees              -- freed blocks and inodes wait in ``pending_frees`` /
                                    ``pending_ifrees`` until the commit or sync that makes
                                    the pointers to them go away durable (``apply_frees``):
                                    nothing freed is reused before then, so a crash can leak
                                    but never cross-link
    vol.gd(group) / vol.set_gd(group, gd)
    vol.alloc_blocks(goal, count) -> (start, n)      ENOSPC
    vol.free_blocks(start, n)
    vol.alloc_inode(near_group, is_dir) -> ino       ENOSPC
    vol.free_inode(ino, is_dir)
    vol.read_inode_raw(ino) -> bytes / vol.write_inode_raw(ino, raw)
    vol.csum(seed, data), vol.inode_seed(ino, gen), vol.flush(sync)

Rules: bitmaps and descriptors are cached and written back (with their checksums and the
superblock's free counts) by ``flush``.  A block number taken from disk is checked against the
file system before use (``check_block``).  Allocation never hands out metadata blocks: bitmaps
of BLOCK_UNINIT groups are computed from the layout before their first use.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.csum import crc16, ext_crc32c
from rumpkernel.fs.ext2.geometry import Geometry
from rumpkernel.fs.ext2.txn import subtract as _subtract
from rumpkernel.kern.errno import Errno, KernelError, corrupt
from rumpkernel.vfs.bio import BlockIO

_NOT_FF = re.compile(rb"[^\xff]")
_NOT_00 = re.compile(rb"[^\x00]")
_U32 = struct.Struct("<I")


def find_zero_bit(bm: bytearray, start: int, limit: int) -> int:
    """First clear bit in ``[start, limit)`` or -1."""
    i = start
    while i < limit and i & 7:
        if not (bm[i >> 3] >> (i & 7)) & 1:
            return i
        i += 1
    if i >= limit:
        return -1
    m = _NOT_FF.search(bm, i >> 3, (limit + 7) >> 3)
    if m is None:
        return -1
    v = bm[m.start()]
    i = m.start() * 8 + ((~v & (v + 1)).bit_length() - 1)
    return i if i < limit else -1


def zero_run(bm: bytearray, start: int, limit: int) -> int:
    """Length of the run of clear bits starting at ``start`` (bounded by ``limit``)."""
    i = start
    while i < limit and i & 7:
        if (bm[i >> 3] >> (i & 7)) & 1:
            return i - start
        i += 1
    if i >= limit:
        return limit - start
    m = _NOT_00.search(bm, i >> 3, (limit + 7) >> 3)
    if m is None:
        return limit - start
    v = bm[m.start()]
    end = m.start() * 8 + ((v & -v).bit_length() - 1)
    return min(end, limit) - start


def set_bits(bm: bytearray, start: int, count: int, value: bool) -> None:
    end = start + count
    i = start
    while i < end and i & 7:
        _set_bit(bm, i, value)
        i += 1
    full = (end - i) >> 3
    if full:
        bm[i >> 3:(i >> 3) + full] = (b"\xff" if value else b"\x00") * full
        i += full * 8
    while i < end:
        _set_bit(bm, i, value)
        i += 1


def _set_bit(bm: bytearray, i: int, value: bool) -> None:
    if value:
        bm[i >> 3] |= 1 << (i & 7)
    else:
        bm[i >> 3] &= ~(1 << (i & 7)) & 0xFF


def test_bit(bm: bytes | bytearray, i: int) -> bool:
    return bool((bm[i >> 3] >> (i & 7)) & 1)


def count_set_bits(bm: bytes | bytearray, nbits: int) -> int:
    full = nbits >> 3
    n = int.from_bytes(bm[:full], "little").bit_count()
    for i in range(full * 8, nbits):
        n += test_bit(bm, i)
    return n


class Volume:
    def __init__(self, bio: BlockIO, sb_bytes: bytes, device_blocks: int, readonly: bool,
                 log: Callable[[str], None]) -> None:
        self.bio = bio
        self.log = log
        self.readonly = readonly
        self.overlay: dict[int, bytes] = {}
        self.sb: Any = L.Superblock.parse(sb_bytes)
        self.geo = Geometry.from_superblock(self.sb, device_blocks)
        g = self.geo
        self.block_size = g.block_size
        self.metadata_csum = bool(g.ro_compat & L.RO_COMPAT_METADATA_CSUM)
        self.gdt_csum = bool(g.ro_compat & L.RO_COMPAT_GDT_CSUM) and not self.metadata_csum
        self.csum_seed = 0
        if self.metadata_csum:
            self._check_sb_csum(sb_bytes)
        self.sb_dirty = False
        self._gds: list[Any] = []       # records; their counters are stale, see _cnt
        self._cnt: list[list[int]] = []  # per group: free blocks, free inodes, dirs, flags, unused
        self._gd_dirty: set[int] = set()
        self._bbm: dict[int, bytearray] = {}
        self._ibm: dict[int, bytearray] = {}
        self._bbm_dirty: set[int] = set()
        self._ibm_dirty: set[int] = set()
        self._dir_rotor = 0
        self._meta_map: dict[int, list[tuple[int, int]]] | None = None
        self._bhint: dict[int, int] = {}   # per group: every bit below is known to be set
        self._ihint: dict[int, int] = {}
        self.txn: Any = None                # the running operation's undo log (txn.py)
        self.journaled = False
        self.defer_frees = False
        self.pending_frees: list[tuple[int, int]] = []
        self.pending_ifrees: list[tuple[int, bool]] = []
        self.journal_live: set[int] = set()  # blocks with a copy in the journal's live log
        self.revokes: set[int] = set()       # of those, rewritten in place since the commit
        self.home_sb_stale = False          # the device's superblock differs from ``sb``
        self.changed = False                # anything changed since mount?
        self.on_first_change: Callable[[], None] | None = None

    # -- checksums ----------------------------------------------------------------------------
    def _check_sb_csum(self, raw: bytes) -> None:
        sb = self.sb
        if sb.s_checksum_type != 1:
            raise corrupt(f"ext: unknown checksum type {sb.s_checksum_type}")
        if ext_crc32c(0xFFFFFFFF, raw[:L.SB_CHECKSUM_OFFSET]) != sb.s_checksum:
            raise corrupt("ext: superblock checksum mismatch")
        if self.geo.incompat & L.INCOMPAT_CSUM_SEED:
            self.csum_seed = sb.s_checksum_seed
        else:
            self.csum_seed = ext_crc32c(0xFFFFFFFF, sb.s_uuid)

    def csum(self, seed: int, data: bytes | bytearray | memoryview) -> int:
        return ext_crc32c(seed, data)

    def inode_seed(self, ino: int, gen: int) -> int:
        return ext_crc32c(self.csum_seed, struct.pack("<II", ino, gen))

    def gd_csum(self, group: int, raw: bytes) -> int:
        if self.metadata_csum:
            data = raw[:L.GD_CHECKSUM_OFFSET] + b"\0\0" + raw[L.GD_CHECKSUM_OFFSET + 2:]
            return ext_crc32c(self.csum_seed, _U32.pack(group) + data) & 0xFFFF
        crc = crc16(0xFFFF, self.sb.s_uuid)
        crc = crc16(crc, _U32.pack(group))
        crc = crc16(crc, raw[:L.GD_CHECKSUM_OFFSET])
        if len(raw) > L.GD_CHECKSUM_OFFSET + 2:
            crc = crc16(crc, raw[L.GD_CHECKSUM_OFFSET + 2:])
        return crc

    # -- block access -------------------------------------------------------------------------
    def check_block(self, blk: int, count: int = 1, what: str = "block") -> None:
        if blk < self.geo.first_data_block or count < 0 or blk + count > self.geo.blocks_count:
            raise corrupt(f"ext: {what} {blk}+{count} outside the file system")

    def read(self, blk: int) -> bytes:
        if self.overlay:
            data = self.overlay.get(blk)
            if data is not None:
                return data
        return self.bio.read(blk)

    def read_run(self, blk: int, count: int) -> bytes:
        if count == 1:
            return self.read(blk)
        data = self.bio.read_run(blk, count)
        if self.overlay:
            hits = [b for b in range(blk, blk + count) if b in self.overlay]
            if hits:
                buf = bytearray(data)
                bs = self.block_size
                for b in hits:
                    buf[(b - blk) * bs:(b - blk + 1) * bs] = self.overlay[b]
                data = bytes(buf)
        return data

    def write(self, blk: int, data: bytes | bytearray) -> None:
        self._writable()
        txn = self.txn
        if txn is not None and txn.wants_block(blk):
            txn.note_block(blk, self.read(blk))
        self.put(blk, data)

    def put(self, blk: int, data: bytes | bytearray) -> None:
        """A metadata block's new contents: into the running journal transaction, or the
        write-back cache when not journaling."""
        if self.journaled:
            if blk not in self.overlay and self.bio.kmem is not None:
                self.bio.kmem.alloc(self.block_size, "ext-journal")
            self.overlay[blk] = bytes(data)
        else:
            self.bio.write(blk, data)

    def forget_new(self, start: int, count: int) -> None:
        """Undo (txn.py): blocks an operation allocated and then gave back."""
        self.bio.forget(start, count)
        if self.journaled:
            for blk in range(start, start + count):
                self.take_pending(blk)

    def take_pending(self, blk: int) -> bytes | None:
        data = self.overlay.pop(blk, None)
        if data is not None and self.bio.kmem is not None:
            self.bio.kmem.free(self.block_size, "ext-journal")
        return data

    def write_run(self, blk: int, data: bytes | bytearray) -> None:
        """File data, straight to the device (not undone by a failing operation; in journaled
        mode never journaled: data=ordered, the commit's first barrier orders it first)."""
        self._writable()
        if self.journaled and (self.overlay or self.journal_live):
            for b in range(blk, blk + len(data) // self.block_size):
                self.take_pending(b)
                if b in self.journal_live:
                    self.revokes.add(b)
        self.bio.write_run(blk, data)

    def write_data(self, blk: int, data: bytes | bytearray) -> None:
        """One block of file data: like ``write_run`` when journaling, else cached."""
        if self.journaled:
            self.write_run(blk, bytes(data))
        else:
            self.write(blk, data)

    def _writable(self) -> None:
        if self.readonly:
            raise KernelError(Errno.EROFS, "ext: file system is mounted read-only")
        if not self.changed:
            self.changed = True
            if self.on_first_change is not None:
                self.on_first_change()

    # -- group descriptors --------------------------------------------------------------------
    def load_gds(self) -> None:
        g = self.geo
        gds = []
        cache: dict[int, bytes] = {}
        for group in range(g.group_count):
            blk, off = g.gdt_block(group)
            if blk not in cache:
                self.check_block(blk, 1, "descriptor block")
                cache[blk] = self.read(blk)
            gd = L.gd_parse(cache[blk], off, g.desc_size)
            self._check_gd(group, gd, cache[blk][off:off + g.desc_size])
            gds.append(gd)
        self._set_gds(gds)

    def install_gds(self, gds: list[Any]) -> None:
        """newfs: take freshly made descriptors (all written on the next flush)."""
        self._set_gds(gds)
        self._gd_dirty = set(range(len(gds)))

    def _set_gds(self, gds: list[Any]) -> None:
        self._gds = list(gds)
        self._cnt = [[self.gd_free_blocks(gd), self.gd_free_inodes(gd), self.gd_used_dirs(gd),
                      gd.bg_flags, self.gd_itable_unused(gd)] for gd in gds]

    def _check_gd(self, group: int, gd: Any, raw: bytes) -> None:
        g = self.geo
        if (self.metadata_csum or self.gdt_csum) and self.gd_csum(group, raw) != gd.bg_checksum:
            raise corrupt(f"ext: group {group} descriptor checksum mismatch")
        for name, blk, n in (("block bitmap", self.gd_block_bitmap(gd), 1),
                             ("inode bitmap", self.gd_inode_bitmap(gd), 1),
                             ("inode table", self.gd_inode_table(gd), g.itable_blocks)):
            self.check_block(blk, n, f"group {group} {name}")
        if self.gd_free_blocks(gd) > g.blocks_per_group or \
                self.gd_free_inodes(gd) > g.inodes_per_group:
            raise corrupt(f"ext: group {group} free counts out of range")

    def gd(self, group: int) -> Any:
        """The descriptor of ``group`` with its current counters."""
        fb, fi, ud, flags, unused = self._cnt[group]
        return self._gds[group].replace(
            bg_free_blocks_count_lo=fb & 0xFFFF, bg_free_blocks_count_hi=fb >> 16,
            bg_free_inodes_count_lo=fi & 0xFFFF, bg_free_inodes_count_hi=fi >> 16,
            bg_used_dirs_count_lo=ud & 0xFFFF, bg_used_dirs_count_hi=ud >> 16, bg_flags=flags,
            bg_itable_unused_lo=unused & 0xFFFF, bg_itable_unused_hi=unused >> 16)

    def set_gd(self, group: int, gd: Any) -> None:
        """Replace the static fields (locations, checksums) of a descriptor."""
        self._gds[group] = gd
        self._gd_dirty.add(group)

    @staticmethod
    def gd_block_bitmap(gd: Any) -> int:
        return gd.bg_block_bitmap_lo | gd.bg_block_bitmap_hi << 32

    @staticmethod
    def gd_inode_bitmap(gd: Any) -> int:
        return gd.bg_inode_bitmap_lo | gd.bg_inode_bitmap_hi << 32

    @staticmethod
    def gd_inode_table(gd: Any) -> int:
        return gd.bg_inode_table_lo | gd.bg_inode_table_hi << 32

    @staticmethod
    def gd_free_blocks(gd: Any) -> int:
        return gd.bg_free_blocks_count_lo | gd.bg_free_blocks_count_hi << 16

    @staticmethod
    def gd_free_inodes(gd: Any) -> int:
        return gd.bg_free_inodes_count_lo | gd.bg_free_inodes_count_hi << 16

    @staticmethod
    def gd_used_dirs(gd: Any) -> int:
        return gd.bg_used_dirs_count_lo | gd.bg_used_dirs_count_hi << 16

    @staticmethod
    def gd_itable_unused(gd: Any) -> int:
        return gd.bg_itable_unused_lo | gd.bg_itable_unused_hi << 16

    def _adjust_gd(self, group: int, blocks: int = 0, inodes: int = 0, dirs: int = 0,
                   clear_flags: int = 0, unused: int | None = None) -> None:
        c = self._cnt[group]
        c[0] += blocks
        c[1] += inodes
        c[2] += dirs
        if c[0] < 0 or c[1] < 0 or c[2] < 0:
            raise corrupt(f"ext: group {group} free counts went negative")
        c[3] &= ~clear_flags
        if unused is not None:
            c[4] = unused
        self._gd_dirty.add(group)

    def total_free(self) -> tuple[int, int]:
        return sum(c[0] for c in self._cnt), sum(c[1] for c in self._cnt)

    # -- bitmaps ------------------------------------------------------------------------------
    def _bitmap_csum_ok(self, gd: Any, data: bytes, nbits: int, lo: str, hi: str) -> bool:
        c = self.csum(self.csum_seed, data[:nbits // 8])
        want = getattr(gd, lo) | (getattr(gd, hi) << 16 if self.geo.desc_size >= 64 else 0)
        mask = 0xFFFFFFFF if self.geo.desc_size >= 64 else 0xFFFF
        return c & mask == want

    def block_bitmap(self, group: int) -> bytearray:
        bm = self._bbm.get(group)
        if bm is not None:
            return bm
        gd = self._gds[group]
        if self._cnt[group][3] & L.BG_BLOCK_UNINIT and (self.metadata_csum or self.gdt_csum):
            bm = self._init_block_bitmap(group)
        else:
            data = self.read(self.gd_block_bitmap(gd))
            if self.metadata_csum and not self._bitmap_csum_ok(
                    gd, data, self.geo.blocks_per_group, "bg_block_bitmap_csum_lo",
                    "bg_block_bitmap_csum_hi"):
                raise corrupt(f"ext: group {group} block bitmap checksum mismatch")
            bm = bytearray(data)
        self._bbm[group] = bm
        return bm

    def _init_block_bitmap(self, group: int) -> bytearray:
        g = self.geo
        bm = bytearray(g.block_size)
        first = g.group_first_block(group)
        for b in g.super_and_gdt(group):
            set_bits(bm, b - first, 1, True)
        for b, n in self._metadata_by_group().get(group, ()):
            lo, hi = max(b, first), min(b + n, first + g.group_nblocks(group))
            if lo < hi:
                set_bits(bm, lo - first, hi - lo, True)
        self._pad_block_bitmap(group, bm)
        return bm

    def _metadata_by_group(self) -> dict[int, list[tuple[int, int]]]:
        """Bitmap and inode-table block ranges of every group, keyed by the group(s) they
        lie in (flex_bg packs them anywhere).  Built once, in one pass."""
        if self._meta_map is None:
            g = self.geo
            out: dict[int, list[tuple[int, int]]] = {}
            for gd in self._gds:
                for b, n in ((self.gd_block_bitmap(gd), 1), (self.gd_inode_bitmap(gd), 1),
                             (self.gd_inode_table(gd), g.itable_blocks)):
                    for grp in range(g.group_of_block(b), g.group_of_block(b + n - 1) + 1):
                        out.setdefault(grp, []).append((b, n))
            self._meta_map = out
        return self._meta_map

    def _pad_block_bitmap(self, group: int, bm: bytearray) -> None:
        g = self.geo
        n = g.group_nblocks(group)
        set_bits(bm, n, g.block_size * 8 - n, True)

    def inode_bitmap(self, group: int) -> bytearray:
        bm = self._ibm.get(group)
        if bm is not None:
            return bm
        gd = self._gds[group]
        g = self.geo
        if self._cnt[group][3] & L.BG_INODE_UNINIT and (self.metadata_csum or self.gdt_csum):
            bm = bytearray(g.block_size)
        else:
            data = self.read(self.gd_inode_bitmap(gd))
            if self.metadata_csum and not self._bitmap_csum_ok(
                    gd, data, g.inodes_per_group, "bg_inode_bitmap_csum_lo",
                    "bg_inode_bitmap_csum_hi"):
                raise corrupt(f"ext: group {group} inode bitmap checksum mismatch")
            bm = bytearray(data)
        set_bits(bm, g.inodes_per_group, g.block_size * 8 - g.inodes_per_group, True)
        self._ibm[group] = bm
        return bm

    def inode_in_use(self, ino: int) -> bool:
        group, index = divmod(ino - 1, self.geo.inodes_per_group)
        if self._cnt[group][3] & L.BG_INODE_UNINIT and (self.metadata_csum or self.gdt_csum):
            return False
        return test_bit(self.inode_bitmap(group), index)

    # -- allocation ---------------------------------------------------------------------------
    def alloc_blocks(self, goal: int, count: int) -> tuple[int, int]:
        """Allocate up to ``count`` contiguous blocks, preferably at ``goal``."""
        self._writable()
        g = self.geo
        if not g.first_data_block <= goal < g.blocks_count:
            goal = g.first_data_block
        g0 = g.group_of_block(goal)
        for i in range(g.group_count + 1):
            group = (g0 + i) % g.group_count
            if self._cnt[group][0] == 0:
                continue
            start = goal - g.group_first_block(group) if i == 0 else 0
            got = self._alloc_in_group(group, start, count)
            if got is not None:
                return got
        raise KernelError(Errno.ENOSPC, "ext: no free blocks")

    def _alloc_in_group(self, group: int, start: int, count: int) -> tuple[int, int] | None:
        g = self.geo
        bm = self.block_bitmap(group)
        limit = g.group_nblocks(group)
        low = self._bhint.get(group, 0)          # no free bit below this one
        bit = find_zero_bit(bm, max(start, low), limit)
        from_low = start <= low                  # then every bit in [low, bit) is set
        if bit < 0 and start > low:
            bit = find_zero_bit(bm, low, limit)
            from_low = True
        if bit < 0:
            self._bhint[group] = limit
            return None
        n = zero_run(bm, bit, min(limit, bit + count))
        self._note_group("b", group, bm)
        set_bits(bm, bit, n, True)
        if from_low:
            self._bhint[group] = bit + n
        self._bbm_dirty.add(group)
        self._adjust_gd(group, blocks=-n, clear_flags=L.BG_BLOCK_UNINIT)
        start = g.group_first_block(group) + bit
        if self.txn is not None:
            self.txn.allocated(start, n)
        return start, n

    def _note_group(self, kind: str, group: int, bm: bytearray) -> None:
        txn = self.txn
        if txn is not None:
            txn.note_bitmap(kind, group, bm)
            txn.note_counts(group, self._cnt[group])

    def restore_bitmap(self, kind: str, group: int, data: bytes) -> None:
        """Undo (txn.py): put a cached bitmap back; forget what the hints knew."""
        (self._bbm if kind == "b" else self._ibm)[group][:] = data
        (self._bbm_dirty if kind == "b" else self._ibm_dirty).add(group)
        (self._bhint if kind == "b" else self._ihint).pop(group, None)

    def restore_counts(self, group: int, counts: list[int]) -> None:
        self._cnt[group][:] = counts
        self._gd_dirty.add(group)

    def free_blocks(self, start: int, count: int) -> None:
        g = self.geo
        self.check_block(start, count, "freed block")
        self._writable()
        groups = []
        pos, left = start, count
        while left > 0:             # every bitmap read (and checked) before any change
            group = g.group_of_block(pos)
            bit = pos - g.group_first_block(group)
            n = min(left, g.group_nblocks(group) - bit)
            bm = self.block_bitmap(group)
            self._check_set(bm, bit, n, f"block {pos}")
            groups.append((group, bit, n, bm))
            pos += n
            left -= n
        ranges = [(start, count)]
        if self.defer_frees:        # not reusable before what freed it is durable, except
            ranges = self.txn.new_parts(start, count) if self.txn is not None else []
            self.pending_frees.extend(_subtract([(start, count)], ranges))
            groups = self._split_groups(ranges)    # what this very operation allocated
        for s, n in ranges:
            if self.txn is not None:
                self.txn.defer_forget(s, n)
            else:
                self.bio.forget(s, n)
        self._clear_block_bits(groups)

    def _split_groups(self, ranges: list[tuple[int, int]],
                      ) -> list[tuple[int, int, int, bytearray]]:
        g = self.geo
        out = []
        for start, count in ranges:
            pos, left = start, count
            while left > 0:
                group = g.group_of_block(pos)
                bit = pos - g.group_first_block(group)
                n = min(left, g.group_nblocks(group) - bit)
                out.append((group, bit, n, self.block_bitmap(group)))
                pos += n
                left -= n
        return out

    def apply_frees(self) -> list[tuple[int, int]]:
        """Clear the bitmap bits of the blocks and inodes freed since the last commit or sync
        (which then carries them); returns the block ranges freed."""
        ifrees, self.pending_ifrees = self.pending_ifrees, []
        for ino, is_dir in ifrees:
            self._clear_inode_bit(ino, is_dir)
        frees, self.pending_frees = self.pending_frees, []
        g = self.geo
        for start, count in frees:
            self.bio.forget(start, count)
            groups = []
            pos, left = start, count
            while left > 0:
                group = g.group_of_block(pos)
                bit = pos - g.group_first_block(group)
                n = min(left, g.group_nblocks(group) - bit)
                bm = self.block_bitmap(group)
                if find_zero_bit(bm, bit, bit + n) >= 0:      # freed twice: keep counts right
                    self.log(f"ext: block {pos}+{n} freed twice; left as it is")
                else:
                    groups.append((group, bit, n, bm))
                pos += n
                left -= n
            self._clear_block_bits(groups)
        return frees

    def _clear_block_bits(self, groups: list[tuple[int, int, int, bytearray]]) -> None:
        for group, bit, n, bm in groups:
            self._note_group("b", group, bm)
            set_bits(bm, bit, n, False)
            self._bhint[group] = min(self._bhint.get(group, 0), bit)
            self._bbm_dirty.add(group)
            self._adjust_gd(group, blocks=n)

    @staticmethod
    def _check_set(bm: bytearray, bit: int, n: int, what: str) -> None:
        if find_zero_bit(bm, bit, bit + n) >= 0:
            raise corrupt(f"ext: freeing {what}: already free in the bitmap")

    def alloc_inode(self, near_group: int, is_dir: bool) -> int:
        self._writable()
        g = self.geo
        if is_dir:
            near_group = self._dir_rotor
            self._dir_rotor = (self._dir_rotor + 1) % g.group_count
        for i in range(g.group_count):
            group = (near_group + i) % g.group_count
            if self._cnt[group][1] == 0:
                continue
            bm = self.inode_bitmap(group)
            first = max(g.first_ino - 1 if group == 0 else 0, self._ihint.get(group, 0))
            bit = find_zero_bit(bm, first, g.inodes_per_group)
            if bit < 0:
                self._ihint[group] = g.inodes_per_group
                continue
            self._note_group("i", group, bm)
            set_bits(bm, bit, 1, True)
            self._ihint[group] = bit + 1
            self._ibm_dirty.add(group)
            self._after_inode_alloc(group, bit, is_dir)
            return group * g.inodes_per_group + bit + 1
        raise KernelError(Errno.ENOSPC, "ext: no free inodes")

    def _after_inode_alloc(self, group: int, bit: int, is_dir: bool) -> None:
        unused = None
        if self.metadata_csum or self.gdt_csum:
            ipg = self.geo.inodes_per_group
            if bit >= ipg - self._cnt[group][4]:
                unused = ipg - bit - 1
        self._adjust_gd(group, inodes=-1, dirs=1 if is_dir else 0,
                        clear_flags=L.BG_INODE_UNINIT, unused=unused)

    def free_inode(self, ino: int, is_dir: bool) -> None:
        group, bit = divmod(ino - 1, self.geo.inodes_per_group)
        bm = self.inode_bitmap(group)
        if not test_bit(bm, bit) or any(i == ino for i, _ in self.pending_ifrees):
            raise corrupt(f"ext: freeing inode {ino}: already free")
        self._writable()
        if self.defer_frees:
            self.pending_ifrees.append((ino, is_dir))
            return
        self._clear_inode_bit(ino, is_dir)

    def _clear_inode_bit(self, ino: int, is_dir: bool) -> None:
        group, bit = divmod(ino - 1, self.geo.inodes_per_group)
        bm = self.inode_bitmap(group)
        self._note_group("i", group, bm)
        set_bits(bm, bit, 1, False)
        self._ihint[group] = min(self._ihint.get(group, 0), bit)
        self._ibm_dirty.add(group)
        self._adjust_gd(group, inodes=1, dirs=-1 if is_dir else 0)

    # -- inode table --------------------------------------------------------------------------
    def inode_block(self, ino: int) -> tuple[int, int]:
        g = self.geo
        if not 1 <= ino <= g.inodes_count:
            raise KernelError(Errno.ENOENT, f"ext: inode {ino} out of range")
        gd = self._gds[(ino - 1) // g.inodes_per_group]
        return g.inode_location(ino, self.gd_inode_table(gd))

    def read_inode_raw(self, ino: int) -> bytes:
        blk, off = self.inode_block(ino)
        return self.read(blk)[off:off + self.geo.inode_size]

    def write_inode_raw(self, ino: int, raw: bytes | bytearray) -> None:
        blk, off = self.inode_block(ino)
        data = bytearray(self.read(blk))
        data[off:off + len(raw)] = raw
        self.write(blk, data)

    def write_inodes_raw(self, items: list[tuple[int, bytes]]) -> None:
        """Several inodes: each inode table block read and written once."""
        by_block: dict[int, list[tuple[int, bytes]]] = {}
        for ino, raw in items:
            blk, off = self.inode_block(ino)
            by_block.setdefault(blk, []).append((off, raw))
        for blk in sorted(by_block):
            data = bytearray(self.read(blk))
            for off, raw in by_block[blk]:
                data[off:off + len(raw)] = raw
            self.write(blk, data)

    # -- write-back ---------------------------------------------------------------------------
    def _flush_bitmaps(self) -> None:
        g = self.geo
        hi = g.desc_size >= 64
        for group in sorted(self._bbm_dirty):
            bm = self._bbm[group]
            gd = self._gds[group]
            self.write(self.gd_block_bitmap(gd), bm)
            if self.metadata_csum:
                c = self.csum(self.csum_seed, bm[:g.blocks_per_group // 8])
                self.set_gd(group, gd.replace(bg_block_bitmap_csum_lo=c & 0xFFFF,
                                              bg_block_bitmap_csum_hi=c >> 16 if hi else 0))
        for group in sorted(self._ibm_dirty):
            bm = self._ibm[group]
            gd = self._gds[group]
            self.write(self.gd_inode_bitmap(gd), bm)
            if self.metadata_csum:
                c = self.csum(self.csum_seed, bm[:g.inodes_per_group // 8])
                self.set_gd(group, gd.replace(bg_inode_bitmap_csum_lo=c & 0xFFFF,
                                              bg_inode_bitmap_csum_hi=c >> 16 if hi else 0))
        self._bbm_dirty.clear()
        self._ibm_dirty.clear()

    def _flush_gds(self) -> None:
        g = self.geo
        blocks: dict[int, bytearray] = {}
        for group in sorted(self._gd_dirty):
            gd = self.gd(group)
            raw = L.gd_emit(gd, g.desc_size)
            if self.metadata_csum or self.gdt_csum:
                gd = gd.replace(bg_checksum=self.gd_csum(group, raw))
                self._gds[group] = gd
                raw = L.gd_emit(gd, g.desc_size)
            blk, off = g.gdt_block(group)
            if blk not in blocks:
                blocks[blk] = bytearray(self.read(blk))
            blocks[blk][off:off + g.desc_size] = raw
        for blk, data in blocks.items():
            self.write(blk, data)
        self._gd_dirty.clear()

    def super_bytes(self) -> bytes:
        raw = self.sb.emit()
        if self.metadata_csum:
            c = ext_crc32c(0xFFFFFFFF, raw[:L.SB_CHECKSUM_OFFSET])
            self.sb = self.sb.replace(s_checksum=c)
            raw = self.sb.emit()
        return raw

    def update_super(self, **changes: int | bytes) -> None:
        self.sb = self.sb.replace(**changes)
        self.sb_dirty = True

    def _flush_super(self) -> None:
        fb, fi = self.total_free()
        sb = self.sb
        if (sb.s_free_blocks_count_lo | sb.s_free_blocks_count_hi << 32) != fb or \
                sb.s_free_inodes_count != fi:
            hi = fb >> 32 if self.geo.incompat & L.INCOMPAT_64BIT else 0
            self.update_super(s_free_blocks_count_lo=fb & 0xFFFFFFFF,
                              s_free_blocks_count_hi=hi, s_free_inodes_count=fi)
        if not self.sb_dirty:
            return
        self.write_super_now()

    def write_super_now(self) -> None:
        """Write the primary superblock (bytes 1024..2047 of the device) through the cache."""
        raw = self.super_bytes()
        bs = self.block_size
        blk, off = divmod(L.SUPERBLOCK_OFFSET, bs)
        old = self.read(blk)
        if self.txn is not None:
            self.txn.note_block(blk, old)
        data = bytearray(old)
        data[off:off + L.SUPERBLOCK_SIZE] = raw
        self.put(blk, data)
        self.sb_dirty = False

    def write_super_home(self) -> None:
        """The superblock straight to its place, durably (the not-clean and needs-recovery
        flags must be on the device before anything depends on them)."""
        self.write_super_now()
        bs = self.block_size
        blk = L.SUPERBLOCK_OFFSET // bs
        self.bio.write(blk, self.read(blk))
        self.bio.flush(sync=True)
        self.home_sb_stale = False

    def dirty(self) -> bool:
        return bool(self._bbm_dirty or self._ibm_dirty or self._gd_dirty or self.sb_dirty)

    def flush_metadata(self) -> None:
        """Bitmaps, descriptors and the superblock (with its free counts) into their blocks."""
        self._flush_bitmaps()
        self._flush_gds()
        self._flush_super()

    def flush(self, sync: bool = False) -> None:
        if self.readonly:
            return
        self.flush_metadata()
        self.bio.flush(sync)
