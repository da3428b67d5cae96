"""In-memory inodes: decoding and encoding the on-disk inode (times with nanoseconds and the
epoch extension, 32-bit uids, 48-bit block counts, checksums).

Interface:
    Inode.decode(vol, ino, raw) -> Inode     checks the checksum and basic sanity (EUCLEAN)
    Inode.new(vol, ino, mode, uid, gid, now_ns, generation) -> Inode
    inode.encode(vol) -> bytes               full ``inode_size`` bytes with a fresh checksum
    inode.is_dir / is_reg / is_lnk, inode.attr_blocks(vol)
    inode.fit_time(ns, field) -> int         a time clamped to what the inode can store
    encode_time(ns) / decode_time(lo, extra, has_extra)

Rules: ``raw`` keeps every byte this module does not interpret (in-inode extended attributes,
fields past i_projid) so an encode after a decode changes only what the driver changed.
The caches hanging off an inode (extent list, directory index, xattrs) are owned by the
modules that fill them and dropped with the inode.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.kern.errno import corrupt
from rumpkernel.vfs.vattr import S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, VALID_TYPES

NS = 1_000_000_000
_MIN_SEC = -(1 << 31)
_MAX_SEC = (1 << 34) - (1 << 31) - 1
# extra_isize needed to hold each extra field (offset of its end minus 128)
_NEED_CTIME_EXTRA, _NEED_MTIME_EXTRA, _NEED_ATIME_EXTRA = 8, 12, 16
_NEED_CRTIME, _NEED_CRTIME_EXTRA, _NEED_VERSION_HI, _NEED_PROJID = 20, 24, 28, 32
_NEED_CSUM_HI = 4
_NEED_EXTRA = {"a": _NEED_ATIME_EXTRA, "m": _NEED_MTIME_EXTRA, "c": _NEED_CTIME_EXTRA,
               "cr": _NEED_CRTIME_EXTRA}


def decode_time(lo: int, extra: int, has_extra: bool) -> int:
    sec = lo - (1 << 32) if lo & 0x80000000 else lo
    ns = 0
    if has_extra:
        sec += (extra & 3) << 32
        ns = min(extra >> 2, NS - 1)
    return sec * NS + ns


def encode_time(ns: int) -> tuple[int, int]:
    sec, nsec = divmod(ns, NS)
    if sec < _MIN_SEC:
        sec, nsec = _MIN_SEC, 0
    elif sec > _MAX_SEC:
        sec, nsec = _MAX_SEC, NS - 1
    lo = sec & 0xFFFFFFFF
    signed_lo = lo - (1 << 32) if lo & 0x80000000 else lo
    epoch = ((sec - signed_lo) >> 32) & 3
    return lo, epoch | (nsec << 2)


class Inode:
    __slots__ = (
        "atime", "blocks", "crtime", "ctime", "dcache", "dirty", "dtime", "emap", "extra_isize",
        "file_acl", "flags", "generation", "gid", "iblock", "ino", "links", "mode", "mtime",
        "projid", "raw", "seed", "size", "uid", "version", "xcache",
    )

    def __init__(self, ino: int) -> None:
        self.ino = ino
        self.dirty = False
        self.emap: Any = None
        self.dcache: Any = None
        self.xcache: Any = None
        self.seed = 0

    # -- predicates ---------------------------------------------------------------------------
    @property
    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    @property
    def is_reg(self) -> bool:
        return self.mode & S_IFMT == S_IFREG

    @property
    def is_lnk(self) -> bool:
        return self.mode & S_IFMT == S_IFLNK

    @property
    def uses_extents(self) -> bool:
        return bool(self.flags & L.INODE_EXTENTS_FL)

    @property
    def inline(self) -> bool:
        return bool(self.flags & L.INODE_INLINE_DATA_FL)

    # -- decoding -----------------------------------------------------------------------------
    @classmethod
    def decode(cls, vol: Any, ino: int, raw: bytes) -> Inode:
        isz = vol.geo.inode_size
        rec = L.InodeRec.parse(raw[:L.INODE_EXTRA_END].ljust(L.INODE_EXTRA_END, b"\0"))
        extra = rec.i_extra_isize if isz > L.GOOD_OLD_INODE_SIZE else 0
        if extra & 3 or L.GOOD_OLD_INODE_SIZE + extra > isz:
            raise corrupt(f"ext: inode {ino}: bad extra_isize {extra}")
        node = cls(ino)
        node.raw = bytearray(raw)
        node.extra_isize = extra
        if vol.metadata_csum:
            node.seed = vol.inode_seed(ino, rec.i_generation)
            node._verify_csum(vol, rec)
        if extra < L.INODE_EXTRA_END - L.GOOD_OLD_INODE_SIZE:  # zero fields we may not read
            cut = L.GOOD_OLD_INODE_SIZE + extra
            padded = bytes(raw[:cut]).ljust(L.INODE_EXTRA_END, b"\0")
            rec = L.InodeRec.parse(padded)
        node._load(vol, rec)
        return node

    def _verify_csum(self, vol: Any, rec: Any) -> None:
        raw = bytearray(self.raw)
        raw[L.INODE_CSUM_LO:L.INODE_CSUM_LO + 2] = b"\0\0"
        want = rec.i_checksum_lo
        mask = 0xFFFF
        if self.extra_isize >= _NEED_CSUM_HI:
            raw[L.INODE_CSUM_HI:L.INODE_CSUM_HI + 2] = b"\0\0"
            want |= rec.i_checksum_hi << 16
            mask = 0xFFFFFFFF
        if vol.csum(self.seed, raw) & mask != want and any(raw):
            raise corrupt(f"ext: inode {self.ino}: checksum mismatch")

    def _load(self, vol: Any, rec: Any) -> None:
        e = self.extra_isize
        self.mode = rec.i_mode
        self.uid = rec.i_uid | rec.i_uid_high << 16
        self.gid = rec.i_gid | rec.i_gid_high << 16
        self.size = rec.i_size_lo | rec.i_size_high << 32
        self.links = rec.i_links_count
        self.flags = rec.i_flags
        blocks = rec.i_blocks_lo
        if vol.geo.ro_compat & L.RO_COMPAT_HUGE_FILE:
            blocks |= rec.i_blocks_high << 32
            if self.flags & L.INODE_HUGE_FILE_FL:
                blocks *= vol.block_size // 512
        self.blocks = blocks
        self.iblock = bytearray(rec.i_block)
        self.generation = rec.i_generation
        self.file_acl = rec.i_file_acl_lo | rec.i_file_acl_high << 32
        self.dtime = rec.i_dtime
        self.atime = decode_time(rec.i_atime, rec.i_atime_extra, e >= _NEED_ATIME_EXTRA)
        self.mtime = decode_time(rec.i_mtime, rec.i_mtime_extra, e >= _NEED_MTIME_EXTRA)
        self.ctime = decode_time(rec.i_ctime, rec.i_ctime_extra, e >= _NEED_CTIME_EXTRA)
        self.crtime = decode_time(rec.i_crtime, rec.i_crtime_extra, e >= _NEED_CRTIME_EXTRA) \
            if e >= _NEED_CRTIME else 0
        self.version = rec.i_version | (rec.i_version_hi << 32 if e >= _NEED_VERSION_HI else 0)
        self.projid = rec.i_projid if e >= _NEED_PROJID else 0

    def check_live(self) -> None:
        """Refuse an inode that a directory points at but that is not a live file."""
        if self.links == 0 or self.mode & S_IFMT not in VALID_TYPES:
            raise corrupt(f"ext: inode {self.ino}: not in use (mode {self.mode:o}, "
                          f"links {self.links})")
        if self.size < 0 or self.size >= 1 << 63:
            raise corrupt(f"ext: inode {self.ino}: bad size")

    def fit_time(self, ns: int, field: str) -> int:
        """``ns`` as this inode can hold it in its ``field`` ("a", "m", "c", "cr") time, as
        Linux's timestamp_truncate: 1901..2446 in ns with the extra field, else whole seconds
        in 1901..2038."""
        if self.extra_isize >= _NEED_EXTRA[field]:
            return min(max(ns, _MIN_SEC * NS), _MAX_SEC * NS + NS - 1)
        return min(max(ns // NS, _MIN_SEC), (1 << 31) - 1) * NS

    # -- creating -----------------------------------------------------------------------------
    @classmethod
    def new(cls, vol: Any, ino: int, mode: int, uid: int, gid: int, now_ns: int,
            generation: int) -> Inode:
        node = cls(ino)
        isz = vol.geo.inode_size
        node.raw = bytearray(isz)
        node.extra_isize = min(32, isz - L.GOOD_OLD_INODE_SIZE) if isz > 128 else 0
        if isz > 128 and vol.sb.s_want_extra_isize:
            node.extra_isize = min(max(vol.sb.s_want_extra_isize, 32), isz - 128) & ~3
        node.mode, node.uid, node.gid = mode, uid, gid
        node.size = node.blocks = node.file_acl = node.dtime = node.version = node.projid = 0
        node.links = 1
        node.flags = 0
        node.iblock = bytearray(60)
        node.generation = generation
        node.atime = node.mtime = node.ctime = node.crtime = now_ns
        node.seed = vol.inode_seed(ino, generation) if vol.metadata_csum else 0
        node.dirty = True
        return node

    # -- encoding -----------------------------------------------------------------------------
    def _blocks_fields(self, vol: Any) -> tuple[int, int, int]:
        """(blocks_lo, blocks_high, flags) for the 512-byte count in ``self.blocks``."""
        b, flags = self.blocks, self.flags & ~L.INODE_HUGE_FILE_FL
        if b < 1 << 32:
            return b, 0, flags
        if vol.geo.ro_compat & L.RO_COMPAT_HUGE_FILE:
            if b < 1 << 48:
                return b & 0xFFFFFFFF, b >> 32, flags
            fb = b // (vol.block_size // 512)
            return fb & 0xFFFFFFFF, (fb >> 32) & 0xFFFF, flags | L.INODE_HUGE_FILE_FL
        return 0xFFFFFFFF, 0, flags

    def encode(self, vol: Any) -> bytes:
        blo, bhi, flags = self._blocks_fields(vol)
        a, ae = encode_time(self.fit_time(self.atime, "a"))
        m, me = encode_time(self.fit_time(self.mtime, "m"))
        c, ce = encode_time(self.fit_time(self.ctime, "c"))
        cr, cre = encode_time(self.fit_time(self.crtime, "cr"))
        base = bytes(self.raw[:L.INODE_EXTRA_END]).ljust(L.INODE_EXTRA_END, b"\0")
        head = L.InodeRec.patch(
            base,
            i_mode=self.mode, i_uid=self.uid & 0xFFFF, i_uid_high=self.uid >> 16 & 0xFFFF,
            i_gid=self.gid & 0xFFFF, i_gid_high=self.gid >> 16 & 0xFFFF,
            i_size_lo=self.size & 0xFFFFFFFF, i_size_high=self.size >> 32 & 0xFFFFFFFF,
            i_links_count=self.links, i_blocks_lo=blo, i_blocks_high=bhi, i_flags=flags,
            i_block=bytes(self.iblock), i_generation=self.generation,
            i_file_acl_lo=self.file_acl & 0xFFFFFFFF, i_file_acl_high=self.file_acl >> 32,
            i_dtime=self.dtime, i_atime=a, i_mtime=m, i_ctime=c,
            i_version=self.version & 0xFFFFFFFF, i_extra_isize=self.extra_isize,
            i_atime_extra=ae, i_mtime_extra=me, i_ctime_extra=ce, i_crtime=cr,
            i_crtime_extra=cre, i_version_hi=self.version >> 32, i_projid=self.projid,
            i_checksum_lo=0, i_checksum_hi=0)
        cut = L.GOOD_OLD_INODE_SIZE + self.extra_isize
        raw = self.raw
        if cut >= L.INODE_EXTRA_END or vol.geo.inode_size <= L.GOOD_OLD_INODE_SIZE:
            raw[:min(L.INODE_EXTRA_END, len(raw))] = head[:len(raw)]
        else:
            raw[:cut] = head[:cut]
        if vol.metadata_csum:
            c32 = vol.csum(self.seed, raw)
            raw[L.INODE_CSUM_LO:L.INODE_CSUM_LO + 2] = (c32 & 0xFFFF).to_bytes(2, "little")
            if self.extra_isize >= _NEED_CSUM_HI:
                raw[L.INODE_CSUM_HI:L.INODE_CSUM_HI + 2] = (c32 >> 16).to_bytes(2, "little")
        return bytes(raw)
