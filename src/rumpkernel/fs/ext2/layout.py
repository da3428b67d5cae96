"""On-disk format of the ext2/ext3/ext4 family, declared once (DESIGN rule 8).

Interface:
    Record classes (immutable named tuples built from a field table -- cheap to create and to
    parse, which matters: a command-line tool builds them all at every start):
        Superblock, GroupDesc (32- or 64-byte), InodeRec (the first 160 bytes of an inode),
        ExtentHeader, ExtentIndex, ExtentLeaf, DirEntryHead, DxRootInfo, DxCountLimit, DxEntry,
        XattrHeader, XattrEntryHead, JournalSuper, JournalHeader, JournalCommit,
        JournalTag3, JournalTagLegacy, JournalRevokeHeader.
    ``Rec.parse(buf, offset=0)`` -- raw view: checks the length (``corrupt`` when short) and
                                    unpacks every field; gaps become ``pad_XXX`` bytes fields,
                                    so ``emit(parse(b)) == b`` byte for byte.
    ``rec.emit() -> bytes``       -- the exact on-disk bytes.
    ``rec.replace(**changes)``    -- a copy with some fields changed.
    ``Rec.patch(buf, **changes)`` -- the bytes of ``buf`` with some fields changed (no record).
    ``Rec.SIZE``, ``Rec.LAYOUT``  -- size in bytes and the field table.
    Feature, state, flag and magic constants used by the driver and by ``newfs``.

Rules: this module only describes bytes.  Meaning (is a count sane, is a block inside the
device) is checked by the driver before a field is used as an index, count or size.  ext
structures are little-endian; the JBD2 journal's are big-endian.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from typing import Any, ClassVar

from rumpkernel.kern.errno import corrupt

# -- magic numbers and constants --------------------------------------------------------------
EXT2_MAGIC = 0xEF53
SUPERBLOCK_OFFSET = 1024
SUPERBLOCK_SIZE = 1024
ROOT_INO = 2
RESIZE_INO = 7
JOURNAL_INO = 8
GOOD_OLD_FIRST_INO = 11
GOOD_OLD_INODE_SIZE = 128
EXTENT_MAGIC = 0xF30A
XATTR_MAGIC = 0xEA020000
JBD2_MAGIC = 0xC03B3998
DIR_TAIL_FT = 0xDE
INODE_EXTRA_END = 0xA0           # end of the extra fields this layout declares

# s_state
STATE_VALID = 0x0001
STATE_ERROR = 0x0002
STATE_ORPHAN = 0x0004
# s_flags
FLAGS_SIGNED_HASH = 0x1
FLAGS_UNSIGNED_HASH = 0x2

# feature_compat
COMPAT_DIR_PREALLOC = 0x1
COMPAT_IMAGIC_INODES = 0x2
COMPAT_HAS_JOURNAL = 0x4
COMPAT_EXT_ATTR = 0x8
COMPAT_RESIZE_INODE = 0x10
COMPAT_DIR_INDEX = 0x20
COMPAT_SPARSE_SUPER2 = 0x200
COMPAT_FAST_COMMIT = 0x400
COMPAT_STABLE_INODES = 0x800
COMPAT_ORPHAN_FILE = 0x1000
# feature_incompat
INCOMPAT_COMPRESSION = 0x1
INCOMPAT_FILETYPE = 0x2
INCOMPAT_RECOVER = 0x4
INCOMPAT_JOURNAL_DEV = 0x8
INCOMPAT_META_BG = 0x10
INCOMPAT_EXTENTS = 0x40
INCOMPAT_64BIT = 0x80
INCOMPAT_MMP = 0x100
INCOMPAT_FLEX_BG = 0x200
INCOMPAT_EA_INODE = 0x400
INCOMPAT_DIRDATA = 0x1000
INCOMPAT_CSUM_SEED = 0x2000
INCOMPAT_LARGEDIR = 0x4000
INCOMPAT_INLINE_DATA = 0x8000
INCOMPAT_ENCRYPT = 0x10000
INCOMPAT_CASEFOLD = 0x20000
# feature_ro_compat
RO_COMPAT_SPARSE_SUPER = 0x1
RO_COMPAT_LARGE_FILE = 0x2
RO_COMPAT_BTREE_DIR = 0x4
RO_COMPAT_HUGE_FILE = 0x8
RO_COMPAT_GDT_CSUM = 0x10
RO_COMPAT_DIR_NLINK = 0x20
RO_COMPAT_EXTRA_ISIZE = 0x40
RO_COMPAT_HAS_SNAPSHOT = 0x80
RO_COMPAT_QUOTA = 0x100
RO_COMPAT_BIGALLOC = 0x200
RO_COMPAT_METADATA_CSUM = 0x400
RO_COMPAT_REPLICA = 0x800
RO_COMPAT_READONLY = 0x1000
RO_COMPAT_PROJECT = 0x2000
RO_COMPAT_SHARED_BLOCKS = 0x4000
RO_COMPAT_VERITY = 0x8000
RO_COMPAT_ORPHAN_PRESENT = 0x10000

# group descriptor bg_flags
BG_INODE_UNINIT = 0x1
BG_BLOCK_UNINIT = 0x2
BG_INODE_ZEROED = 0x4

# inode i_flags
INODE_INDEX_FL = 0x1000
INODE_HUGE_FILE_FL = 0x40000
INODE_EXTENTS_FL = 0x80000
INODE_EA_INODE_FL = 0x200000
INODE_INLINE_DATA_FL = 0x10000000
INODE_ENCRYPT_FL = 0x800

# directory entry file types
FT_UNKNOWN, FT_REG, FT_DIR, FT_CHR, FT_BLK, FT_FIFO, FT_SOCK, FT_SYMLINK = range(8)

# JBD2 block types and features
JBD2_DESCRIPTOR = 1
JBD2_COMMIT = 2
JBD2_SUPER_V1 = 3
JBD2_SUPER_V2 = 4
JBD2_REVOKE = 5
JBD2_COMPAT_CHECKSUM = 0x1
JBD2_INCOMPAT_REVOKE = 0x1
JBD2_INCOMPAT_64BIT = 0x2
JBD2_INCOMPAT_ASYNC_COMMIT = 0x4
JBD2_INCOMPAT_CSUM_V2 = 0x8
JBD2_INCOMPAT_CSUM_V3 = 0x10
JBD2_INCOMPAT_FAST_COMMIT = 0x20
JBD2_TAG_ESCAPE = 0x1
JBD2_TAG_SAME_UUID = 0x2
JBD2_TAG_DELETED = 0x4
JBD2_TAG_LAST = 0x8
JBD2_CSUM_CRC32C = 4

_FMT_TYPES = {"B": int, "H": int, "I": int, "Q": int, "b": int, "h": int, "i": int, "q": int}


def _table(spec: str) -> list[tuple[str, int, str]]:
    """Parse 'OFFSET NAME FORMAT' lines into (name, offset, struct format) rows."""
    rows = []
    for line in spec.strip().splitlines():
        off, name, fmt = line.split()
        rows.append((name, int(off, 0), fmt))
    return rows


def _with_padding(rows: list[tuple[str, int, str]], size: int) -> list[tuple[str, int, str]]:
    """Fill every gap (and the tail up to ``size``) with a ``pad_0xNN`` bytes field."""
    out, pos = [], 0
    for name, off, fmt in rows:
        if off < pos:
            raise ValueError(f"overlapping field {name}")
        if off > pos:
            out.append((f"pad_{pos:#x}", pos, f"{off - pos}s"))
        out.append((name, off, fmt))
        pos = off + struct.calcsize("<" + fmt)
    if pos < size:
        out.append((f"pad_{pos:#x}", pos, f"{size - pos}s"))
    elif pos > size:
        raise ValueError("fields run past the record size")
    return out


class RecordBase:
    """Shared parse/emit for records built by :func:`record`."""

    SIZE: ClassVar[int]
    LAYOUT: ClassVar[tuple[tuple[str, int, str], ...]]
    _STRUCT: ClassVar[struct.Struct]
    _NAMES: ClassVar[tuple[str, ...]]
    __slots__ = ()

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> Any:
        if offset < 0 or len(buf) - offset < cls.SIZE:
            raise corrupt(f"{cls.__name__}: need {cls.SIZE} bytes at {offset}, "
                          f"have {max(0, len(buf) - offset)}")
        return cls._make(cls._STRUCT.unpack_from(buf, offset))  # type: ignore[attr-defined]

    def emit(self) -> bytes:
        return self._STRUCT.pack(*self)  # type: ignore[misc]

    def replace(self, **changes: object) -> Any:
        return self._replace(**changes)  # type: ignore[attr-defined]

    @classmethod
    def patch(cls, buf: bytes | bytearray, **changes: int | bytes) -> bytes:
        """``parse(buf).replace(**changes).emit()`` without building records (hot paths)."""
        if len(buf) < cls.SIZE:
            raise corrupt(f"{cls.__name__}: need {cls.SIZE} bytes, have {len(buf)}")
        values = list(cls._STRUCT.unpack_from(buf, 0))
        index = cls._INDEX
        for name, value in changes.items():
            values[index[name]] = value
        return cls._STRUCT.pack(*values)


def record(name: str, size: int, spec: str, *, endian: str = "<") -> type:
    """Build a frozen record class from a field table (``OFFSET NAME FORMAT`` per line)."""
    rows = _with_padding(_table(spec), size)
    for n, _, f in rows:
        if not (f.endswith("s") or f in _FMT_TYPES):
            raise ValueError(f"{name}.{n}: format {f}")
    fields = namedtuple(f"{name}Fields", [n for n, _, _ in rows])  # type: ignore[misc]
    cls: Any = type(name, (RecordBase, fields), {"__slots__": ()})
    cls.SIZE = size
    cls.LAYOUT = tuple(rows)
    cls._STRUCT = struct.Struct(endian + "".join(f for _, _, f in rows))
    cls._NAMES = tuple(n for n, _, _ in rows)
    cls._INDEX = {n: i for i, n in enumerate(cls._NAMES)}
    cls.__module__ = __name__
    assert cls._STRUCT.size == size, name
    return cls


Superblock: Any = record("Superblock", 1024, """
    0x00 s_inodes_count I
    0x04 s_blocks_count_lo I
    0x08 s_r_blocks_count_lo I
    0x0C s_free_blocks_count_lo I
    0x10 s_free_inodes_count I
    0x14 s_first_data_block I
    0x18 s_log_block_size I
    0x1C s_log_cluster_size I
    0x20 s_blocks_per_group I
    0x24 s_clusters_per_group I
    0x28 s_inodes_per_group I
    0x2C s_mtime I
    0x30 s_wtime I
    0x34 s_mnt_count H
    0x36 s_max_mnt_count h
    0x38 s_magic H
    0x3A s_state H
    0x3C s_errors H
    0x3E s_minor_rev_level H
    0x40 s_lastcheck I
    0x44 s_checkinterval I
    0x48 s_creator_os I
    0x4C s_rev_level I
    0x50 s_def_resuid H
    0x52 s_def_resgid H
    0x54 s_first_ino I
    0x58 s_inode_size H
    0x5A s_block_group_nr H
    0x5C s_feature_compat I
    0x60 s_feature_incompat I
    0x64 s_feature_ro_compat I
    0x68 s_uuid 16s
    0x78 s_volume_name 16s
    0x88 s_last_mounted 64s
    0xC8 s_algorithm_usage_bitmap I
    0xCC s_prealloc_blocks B
    0xCD s_prealloc_dir_blocks B
    0xCE s_reserved_gdt_blocks H
    0xD0 s_journal_uuid 16s
    0xE0 s_journal_inum I
    0xE4 s_journal_dev I
    0xE8 s_last_orphan I
    0xEC s_hash_seed 16s
    0xFC s_def_hash_version B
    0xFD s_jnl_backup_type B
    0xFE s_desc_size H
    0x100 s_default_mount_opts I
    0x104 s_first_meta_bg I
    0x108 s_mkfs_time I
    0x10C s_jnl_blocks 68s
    0x150 s_blocks_count_hi I
    0x154 s_r_blocks_count_hi I
    0x158 s_free_blocks_count_hi I
    0x15C s_min_extra_isize H
    0x15E s_want_extra_isize H
    0x160 s_flags I
    0x164 s_raid_stride H
    0x166 s_mmp_interval H
    0x168 s_mmp_block Q
    0x170 s_raid_stripe_width I
    0x174 s_log_groups_per_flex B
    0x175 s_checksum_type B
    0x176 s_encryption_level B
    0x178 s_kbytes_written Q
    0x180 s_snapshot_inum I
    0x184 s_snapshot_id I
    0x188 s_snapshot_r_blocks_count Q
    0x190 s_snapshot_list I
    0x194 s_error_count I
    0x198 s_first_error_time I
    0x19C s_first_error_ino I
    0x1A0 s_first_error_block Q
    0x1A8 s_first_error_func 32s
    0x1C8 s_first_error_line I
    0x1CC s_last_error_time I
    0x1D0 s_last_error_ino I
    0x1D4 s_last_error_line I
    0x1D8 s_last_error_block Q
    0x1E0 s_last_error_func 32s
    0x200 s_mount_opts 64s
    0x240 s_usr_quota_inum I
    0x244 s_grp_quota_inum I
    0x248 s_overhead_clusters I
    0x24C s_backup_bgs 8s
    0x254 s_encrypt_algos 4s
    0x258 s_encrypt_pw_salt 16s
    0x268 s_lpf_ino I
    0x26C s_prj_quota_inum I
    0x270 s_checksum_seed I
    0x274 s_wtime_hi B
    0x275 s_mtime_hi B
    0x276 s_mkfs_time_hi B
    0x277 s_lastcheck_hi B
    0x278 s_first_error_time_hi B
    0x279 s_last_error_time_hi B
    0x27A s_first_error_errcode B
    0x27B s_last_error_errcode B
    0x27C s_encoding H
    0x27E s_encoding_flags H
    0x280 s_orphan_file_inum I
    0x3FC s_checksum I
""")
SB_CHECKSUM_OFFSET = 0x3FC

GroupDesc64: Any = record("GroupDesc64", 64, """
    0x00 bg_block_bitmap_lo I
    0x04 bg_inode_bitmap_lo I
    0x08 bg_inode_table_lo I
    0x0C bg_free_blocks_count_lo H
    0x0E bg_free_inodes_count_lo H
    0x10 bg_used_dirs_count_lo H
    0x12 bg_flags H
    0x14 bg_exclude_bitmap_lo I
    0x18 bg_block_bitmap_csum_lo H
    0x1A bg_inode_bitmap_csum_lo H
    0x1C bg_itable_unused_lo H
    0x1E bg_checksum H
    0x20 bg_block_bitmap_hi I
    0x24 bg_inode_bitmap_hi I
    0x28 bg_inode_table_hi I
    0x2C bg_free_blocks_count_hi H
    0x2E bg_free_inodes_count_hi H
    0x30 bg_used_dirs_count_hi H
    0x32 bg_itable_unused_hi H
    0x34 bg_exclude_bitmap_hi I
    0x38 bg_block_bitmap_csum_hi H
    0x3A bg_inode_bitmap_csum_hi H
    0x3C bg_reserved I
""")
GD_CHECKSUM_OFFSET = 0x1E

# The first 160 bytes of an inode: the 128-byte base and the extra fields up to i_projid.
InodeRec: Any = record("InodeRec", INODE_EXTRA_END, """
    0x00 i_mode H
    0x02 i_uid H
    0x04 i_size_lo I
    0x08 i_atime I
    0x0C i_ctime I
    0x10 i_mtime I
    0x14 i_dtime I
    0x18 i_gid H
    0x1A i_links_count H
    0x1C i_blocks_lo I
    0x20 i_flags I
    0x24 i_version I
    0x28 i_block 60s
    0x64 i_generation I
    0x68 i_file_acl_lo I
    0x6C i_size_high I
    0x70 i_obso_faddr I
    0x74 i_blocks_high H
    0x76 i_file_acl_high H
    0x78 i_uid_high H
    0x7A i_gid_high H
    0x7C i_checksum_lo H
    0x7E i_reserved H
    0x80 i_extra_isize H
    0x82 i_checksum_hi H
    0x84 i_ctime_extra I
    0x88 i_mtime_extra I
    0x8C i_atime_extra I
    0x90 i_crtime I
    0x94 i_crtime_extra I
    0x98 i_version_hi I
    0x9C i_projid I
""")
INODE_CSUM_LO = 0x7C
INODE_CSUM_HI = 0x82

ExtentHeader: Any = record("ExtentHeader", 12, """
    0x0 eh_magic H
    0x2 eh_entries H
    0x4 eh_max H
    0x6 eh_depth H
    0x8 eh_generation I
""")
ExtentIndex: Any = record("ExtentIndex", 12, """
    0x0 ei_block I
    0x4 ei_leaf_lo I
    0x8 ei_leaf_hi H
    0xA ei_unused H
""")
ExtentLeaf: Any = record("ExtentLeaf", 12, """
    0x0 ee_block I
    0x4 ee_len H
    0x6 ee_start_hi H
    0x8 ee_start_lo I
""")
EXT_INIT_MAX_LEN = 32768        # ee_len above this marks an unwritten (preallocated) extent

DirEntryHead: Any = record("DirEntryHead", 8, """
    0x0 inode I
    0x4 rec_len H
    0x6 name_len B
    0x7 file_type B
""")
DIR_TAIL_SIZE = 12

DxRootInfo: Any = record("DxRootInfo", 8, """
    0x0 reserved_zero I
    0x4 hash_version B
    0x5 info_length B
    0x6 indirect_levels B
    0x7 unused_flags B
""")
DxCountLimit: Any = record("DxCountLimit", 8, """
    0x0 limit H
    0x2 count H
    0x4 block I
""")
DxEntry: Any = record("DxEntry", 8, """
    0x0 hash I
    0x4 block I
""")
DX_ROOT_INFO_OFFSET = 0x18
DX_ROOT_ENTRIES_OFFSET = 0x20
DX_NODE_ENTRIES_OFFSET = 0x8
DX_TAIL_SIZE = 8

XattrHeader: Any = record("XattrHeader", 32, """
    0x00 h_magic I
    0x04 h_refcount I
    0x08 h_blocks I
    0x0C h_hash I
    0x10 h_checksum I
""")
XattrEntryHead: Any = record("XattrEntryHead", 16, """
    0x0 e_name_len B
    0x1 e_name_index B
    0x2 e_value_offs H
    0x4 e_value_inum I
    0x8 e_value_size I
    0xC e_hash I
""")

JournalHeader: Any = record("JournalHeader", 12, """
    0x0 h_magic I
    0x4 h_blocktype I
    0x8 h_sequence I
""", endian=">")
JournalSuper: Any = record("JournalSuper", 1024, """
    0x00 h_magic I
    0x04 h_blocktype I
    0x08 h_sequence I
    0x0C s_blocksize I
    0x10 s_maxlen I
    0x14 s_first I
    0x18 s_sequence I
    0x1C s_start I
    0x20 s_errno i
    0x24 s_feature_compat I
    0x28 s_feature_incompat I
    0x2C s_feature_ro_compat I
    0x30 s_uuid 16s
    0x40 s_nr_users I
    0x44 s_dynsuper I
    0x48 s_max_transaction I
    0x4C s_max_trans_data I
    0x50 s_checksum_type B
    0x54 s_num_fc_blks I
    0x58 s_head I
    0xFC s_checksum I
    0x100 s_users 768s
""", endian=">")
JSB_CHECKSUM_OFFSET = 0xFC
JournalCommit: Any = record("JournalCommit", 60, """
    0x00 h_magic I
    0x04 h_blocktype I
    0x08 h_sequence I
    0x0C h_chksum_type B
    0x0D h_chksum_size B
    0x10 h_chksum0 I
    0x30 h_commit_sec Q
    0x38 h_commit_nsec I
""", endian=">")
JournalTag3: Any = record("JournalTag3", 16, """
    0x0 t_blocknr I
    0x4 t_flags I
    0x8 t_blocknr_high I
    0xC t_checksum I
""", endian=">")
JournalTagLegacy: Any = record("JournalTagLegacy", 12, """
    0x0 t_blocknr I
    0x4 t_checksum H
    0x6 t_flags H
    0x8 t_blocknr_high I
""", endian=">")
JournalRevokeHeader: Any = record("JournalRevokeHeader", 16, """
    0x0 h_magic I
    0x4 h_blocktype I
    0x8 h_sequence I
    0xC r_count I
""", endian=">")

ALL_RECORDS: tuple[type, ...] = (
    Superblock, GroupDesc64, InodeRec, ExtentHeader, ExtentIndex, ExtentLeaf, DirEntryHead,
    DxRootInfo, DxCountLimit, DxEntry, XattrHeader, XattrEntryHead, JournalHeader,
    JournalSuper, JournalCommit, JournalTag3, JournalTagLegacy, JournalRevokeHeader,
)


# -- helpers that combine split fields ----------------------------------------------------------
def gd_parse(buf: bytes, offset: int, desc_size: int) -> Any:
    """A group descriptor of ``desc_size`` (32 or 64+) bytes as a GroupDesc64 (hi halves 0)."""
    if desc_size < 64:
        raw = bytes(buf[offset:offset + 32])
        if len(raw) < 32:
            raise corrupt("group descriptor truncated")
        return GroupDesc64.parse(raw + bytes(32))
    return GroupDesc64.parse(buf, offset)


def gd_emit(gd: Any, desc_size: int) -> bytes:
    """The on-disk bytes of a descriptor: 32 bytes, or 64 followed by zero padding."""
    raw = gd.emit()
    if desc_size < 64:
        return raw[:32]
    return raw + bytes(desc_size - 64)


def dir_rec_len(name_len: int) -> int:
    """Minimum record length of a directory entry with a ``name_len``-byte name."""
    return (8 + name_len + 3) & ~3


def decode_rec_len(value: int, block_size: int) -> int:
    """rec_len as stored -> bytes (64 KiB blocks encode 65536 as 65535 or 0)."""
    if block_size < 65536:
        return value
    if value in (65535, 0):
        return block_size
    return (value & 65532) | ((value & 3) << 16)


def encode_rec_len(length: int, block_size: int) -> int:
    if block_size < 65536:
        return length
    if length == block_size:
        return 65535 if block_size == 65536 else 0
    return (length & 65532) | ((length >> 16) & 3)
