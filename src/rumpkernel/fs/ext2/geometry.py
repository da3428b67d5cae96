"""Geometry of a mounted (or to-be-made) ext file system: validated superblock numbers and the
placement of superblock backups and group descriptor blocks.

Interface:
    Geometry.from_superblock(sb, device_blocks_or_None) -> Geometry   (EUCLEAN / EINVAL)
    geo.has_super(group), geo.group_first_block(group), geo.group_nblocks(group)
    geo.super_and_gdt(group) -> list[int]     blocks holding the superblock copy, descriptor
                                              blocks and reserved descriptor blocks of ``group``
    geo.gdt_block(group) -> (block, offset)   where ``group``'s primary descriptor lives
    geo.inode_location(ino, itable_block) -> (block, offset)

Rules: every number that later serves as a count, index or size is range-checked here once,
so the rest of the driver can rely on it.  Shared by the driver and ``newfs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.kern.errno import Errno, KernelError, corrupt


@dataclass(frozen=True, slots=True)
class Geometry:
    block_size: int
    blocks_count: int
    first_data_block: int
    blocks_per_group: int
    inodes_per_group: int
    inodes_count: int
    inode_size: int
    group_count: int
    desc_size: int
    first_ino: int
    reserved_gdt: int
    compat: int
    incompat: int
    ro_compat: int
    first_meta_bg: int
    backup_bgs: tuple[int, int]

    @classmethod
    def from_superblock(cls, sb: object, device_blocks: int | None = None) -> Geometry:
        s: Any = sb
        if s.s_magic != L.EXT2_MAGIC:
            raise KernelError(Errno.EINVAL, "not an ext2/3/4 file system (bad magic)")
        if s.s_rev_level > 1:
            raise KernelError(Errno.EINVAL, f"ext: unknown revision {s.s_rev_level}")
        if s.s_log_block_size > 6:
            raise corrupt(f"ext: bad block size log {s.s_log_block_size}")
        bs = 1024 << s.s_log_block_size
        incompat = s.s_feature_incompat if s.s_rev_level else 0
        blocks, fdb, groups = _check_counts(s, bs, incompat, device_blocks)
        isz = s.s_inode_size if s.s_rev_level else L.GOOD_OLD_INODE_SIZE
        if isz < 128 or isz > bs or isz & (isz - 1):
            raise corrupt(f"ext: bad inode size {isz}")
        desc = 32
        if incompat & L.INCOMPAT_64BIT:
            desc = s.s_desc_size
            if desc < 64 or desc > 1024 or desc & (desc - 1):
                raise corrupt(f"ext: bad descriptor size {desc}")
        first_ino = s.s_first_ino if s.s_rev_level else L.GOOD_OLD_FIRST_INO
        if not L.GOOD_OLD_FIRST_INO <= first_ino < s.s_inodes_count:
            raise corrupt(f"ext: bad first inode {first_ino}")
        compat = s.s_feature_compat if s.s_rev_level else 0
        rgdt = s.s_reserved_gdt_blocks if compat & L.COMPAT_RESIZE_INODE else 0
        if rgdt > bs // 4:
            raise corrupt(f"ext: {rgdt} reserved descriptor blocks")
        backups = tuple(int.from_bytes(s.s_backup_bgs[i:i + 4], "little") for i in (0, 4))
        geo = cls(bs, blocks, fdb, s.s_blocks_per_group, s.s_inodes_per_group,
                  s.s_inodes_count, isz, groups, desc, first_ino, rgdt, compat, incompat,
                  s.s_feature_ro_compat if s.s_rev_level else 0, s.s_first_meta_bg,
                  backups)  # type: ignore[arg-type]
        if geo.gdt_blocks_total() + rgdt >= blocks:
            raise corrupt("ext: group descriptor table larger than the file system")
        if incompat & L.INCOMPAT_META_BG and s.s_first_meta_bg > geo.gdt_blocks_total():
            raise corrupt(f"ext: first meta_bg {s.s_first_meta_bg} out of range")
        return geo

    # -- derived numbers ----------------------------------------------------------------------
    @property
    def descs_per_block(self) -> int:
        return self.block_size // self.desc_size

    @property
    def inodes_per_block(self) -> int:
        return self.block_size // self.inode_size

    @property
    def itable_blocks(self) -> int:
        return -(-self.inodes_per_group * self.inode_size // self.block_size)

    def gdt_blocks_total(self) -> int:
        return -(-self.group_count // self.descs_per_block)

    def group_first_block(self, group: int) -> int:
        return self.first_data_block + group * self.blocks_per_group

    def group_nblocks(self, group: int) -> int:
        start = self.group_first_block(group)
        return min(self.blocks_per_group, self.blocks_count - start)

    def group_of_block(self, block: int) -> int:
        return (block - self.first_data_block) // self.blocks_per_group

    def has_super(self, group: int) -> bool:
        if group == 0:
            return True
        if self.compat & L.COMPAT_SPARSE_SUPER2:
            return group in self.backup_bgs
        if group <= 1 or not self.ro_compat & L.RO_COMPAT_SPARSE_SUPER:
            return True
        if not group & 1:
            return False
        return any(_is_power(group, base) for base in (3, 5, 7))

    def _meta_bg_start(self) -> int:
        if self.incompat & L.INCOMPAT_META_BG:
            return self.first_meta_bg * self.descs_per_block
        return self.group_count

    def super_and_gdt(self, group: int) -> list[int]:
        """Blocks of ``group`` used by its superblock copy and descriptor blocks."""
        start = self.group_first_block(group)
        if start == 0 and self.block_size == 1024:
            start = 1
        out: list[int] = []
        sup = self.has_super(group)
        if sup:
            out.append(start)
        dpb = self.descs_per_block
        if group < self._meta_bg_start():
            if sup:
                if self.incompat & L.INCOMPAT_META_BG:
                    old = self.first_meta_bg
                else:
                    old = self.gdt_blocks_total() + self.reserved_gdt
                out.extend(range(start + 1, start + 1 + old))
        elif group % dpb in (0, 1, dpb - 1):
            out.append(start + (1 if sup else 0))
        return out

    def gdt_block(self, group: int) -> tuple[int, int]:
        """(block, byte offset) of the primary descriptor of ``group``."""
        dpb = self.descs_per_block
        index, slot = divmod(group, dpb)
        if group < self._meta_bg_start():
            return L.SUPERBLOCK_OFFSET // self.block_size + 1 + index, slot * self.desc_size
        first = index * dpb
        block = self.group_first_block(first) + (1 if self.has_super(first) else 0)
        return block, slot * self.desc_size

    def inode_location(self, ino: int, itable: int) -> tuple[int, int]:
        index = (ino - 1) % self.inodes_per_group
        byte = index * self.inode_size
        return itable + byte // self.block_size, byte % self.block_size


def _check_counts(s: Any, bs: int, incompat: int,
                  device_blocks: int | None) -> tuple[int, int, int]:
    """(blocks, first data block, groups) after checking the size numbers."""
    blocks = s.s_blocks_count_lo
    if incompat & L.INCOMPAT_64BIT:
        blocks |= s.s_blocks_count_hi << 32
    bpg, ipg = s.s_blocks_per_group, s.s_inodes_per_group
    ratio = 1
    if s.s_rev_level and s.s_feature_ro_compat & L.RO_COMPAT_BIGALLOC:
        if not s.s_log_block_size <= s.s_log_cluster_size <= s.s_log_block_size + 16:
            raise corrupt(f"ext: bad cluster size log {s.s_log_cluster_size}")
        ratio = 1 << (s.s_log_cluster_size - s.s_log_block_size)
    if not 8 <= bpg <= 8 * bs * ratio or bpg % 8:
        raise corrupt(f"ext: bad blocks per group {bpg}")
    if not 1 <= ipg <= 8 * bs:
        raise corrupt(f"ext: bad inodes per group {ipg}")
    fdb = s.s_first_data_block
    if fdb != (1 if bs == 1024 else 0) and not (bs == 1024 and fdb == 0):
        raise corrupt(f"ext: bad first data block {fdb}")
    if blocks <= fdb + 1:
        raise corrupt(f"ext: bad block count {blocks}")
    if device_blocks is not None and blocks > device_blocks:
        raise KernelError(Errno.EINVAL, f"ext: file system ({blocks} blocks) is larger "
                          f"than the device ({device_blocks} blocks)")
    groups = -(-(blocks - fdb) // bpg)
    if groups * ipg != s.s_inodes_count or groups >= 1 << 32:
        raise corrupt(f"ext: inode count {s.s_inodes_count} != {groups} groups * {ipg}")
    return blocks, fdb, groups


def _is_power(n: int, base: int) -> bool:
    while n % base == 0 and n > 1:
        n //= base
    return n == 1
