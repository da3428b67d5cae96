"""On-disk format of FAT12/16/32, declared once (shared by the driver and ``newfs``).

Interface (DESIGN rule 8: raw view with checked lengths, then a validated immutable record):
    BootSector.parse(sector) / .emit()      -- boot sector + BPB (FAT12/16 or FAT32 extended BPB)
    FsInfo.parse(sector) / .emit(size)      -- FAT32 FSInfo sector
    ShortEntry.parse(b32) / .emit()         -- 8.3 directory entry
    LfnEntry.parse(b32) / .emit()           -- VFAT long-name slot
    Geometry.from_boot(bs, device_bytes)    -- derived, checked layout numbers (FAT type, regions)
    lfn_checksum(name11)                    -- checksum tying LFN slots to their short entry

Rules: every parse checks the buffer length and raises ``KernelError(EUCLEAN/EINVAL)`` on
anything malformed; parse(emit(x)) == x for every record.  ``Geometry`` refuses absurd BPB values
(sector size, cluster size, region overlaps, regions past the device) so the rest of the driver
can trust its numbers.  All integers are little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from rumpkernel.kern.errno import Errno, KernelError, corrupt

DIRENT_SIZE = 32
ATTR_READONLY = 0x01
ATTR_HIDDEN = 0x02
ATTR_SYSTEM = 0x04
ATTR_VOLUME = 0x08
ATTR_DIR = 0x10
ATTR_ARCHIVE = 0x20
ATTR_LFN = 0x0F
ATTR_VALID = 0x3F
NT_LOWER_BASE = 0x08
NT_LOWER_EXT = 0x10
LFN_LAST = 0x40
LFN_CHARS = 13
FAT12_MAX_CLUSTERS = 4084     # a volume with more clusters is FAT16 (Linux/dosfstools rule)
FAT16_MAX_CLUSTERS = 65524
FAT32_MAX_CLUSTERS = 0x0FFFFFF5
SECTOR_SIZES = (512, 1024, 2048, 4096)
BOOT_SIGNATURE = b"\x55\xaa"
FSINFO_LEAD = 0x41615252
FSINFO_STRUCT = 0x61417272
FSINFO_TRAIL = 0xAA550000

_COMMON = struct.Struct("<3s8sHBHBHHBHHHII")          # bytes 0..35
_EXT16 = struct.Struct("<BBBI11s8s")                  # bytes 36..61
_EXT32 = struct.Struct("<IHHIHH12sBBBI11s8s")          # bytes 36..89
_SHORT = struct.Struct("<11sBBBHHHHHHHI")
_LFN = struct.Struct("<B10sBBB12sH4s")
_FSINFO_HEAD = struct.Struct("<I")
_FSINFO_TAIL = struct.Struct("<III12sI")               # bytes 484..511


def _need(buf: bytes, size: int, what: str) -> None:
    if len(buf) < size:
        raise corrupt(f"msdos: {what}: {len(buf)} bytes, need {size}")


@dataclass(frozen=True, slots=True)
class BootSector:
    """Boot sector with BIOS parameter block.  ``fat32`` selects the extended BPB layout
    (``fat_size16 == 0``).  ``boot_code`` keeps the bytes between the BPB and the signature so a
    boot sector round-trips exactly."""

    jump: bytes = b"\xeb\x3c\x90"
    oem: bytes = b"mkfs.fat"
    bytes_per_sector: int = 512
    sectors_per_cluster: int = 1
    reserved_sectors: int = 1
    num_fats: int = 2
    root_entries: int = 512
    total_sectors16: int = 0
    media: int = 0xF8
    fat_size16: int = 0
    sectors_per_track: int = 32
    heads: int = 64
    hidden_sectors: int = 0
    total_sectors32: int = 0
    # FAT32 only
    fat_size32: int = 0
    ext_flags: int = 0
    fs_version: int = 0
    root_cluster: int = 0
    fsinfo_sector: int = 0
    backup_boot_sector: int = 0
    reserved32: bytes = bytes(12)
    # extended BPB (both layouts)
    drive_number: int = 0x80
    state: int = 0
    ext_signature: int = 0x29
    volume_id: int = 0
    label: bytes = b"NO NAME    "
    fs_type: bytes = b"FAT16   "
    boot_code: bytes = b""
    signature: bool = True

    @property
    def fat32(self) -> bool:
        return self.fat_size16 == 0

    @property
    def total_sectors(self) -> int:
        return self.total_sectors16 or self.total_sectors32

    @property
    def fat_size(self) -> int:
        return self.fat_size16 or self.fat_size32

    @classmethod
    def parse(cls, sector: bytes) -> BootSector:
        _need(sector, 512, "boot sector")
        (jump, oem, bps, spc, res, nfats, rootent, tot16, media, fsz16, spt, heads, hidden,
         tot32) = _COMMON.unpack_from(sector, 0)
        kw: dict[str, object] = dict(
            jump=jump, oem=oem, bytes_per_sector=bps, sectors_per_cluster=spc,
            reserved_sectors=res, num_fats=nfats, root_entries=rootent, total_sectors16=tot16,
            media=media, fat_size16=fsz16, sectors_per_track=spt, heads=heads,
            hidden_sectors=hidden, total_sectors32=tot32,
            signature=sector[510:512] == BOOT_SIGNATURE)
        if fsz16 == 0:
            (fsz32, flags, ver, rootclus, fsinfo, backup, res32, drive, state, extsig, volid,
             label, fstype) = _EXT32.unpack_from(sector, 36)
            kw.update(fat_size32=fsz32, ext_flags=flags, fs_version=ver, root_cluster=rootclus,
                      fsinfo_sector=fsinfo, backup_boot_sector=backup, reserved32=res32)
            code_at = 90
        else:
            drive, state, extsig, volid, label, fstype = _EXT16.unpack_from(sector, 36)
            code_at = 62
        kw.update(drive_number=drive, state=state, ext_signature=extsig, volume_id=volid,
                  label=label, fs_type=fstype, boot_code=bytes(sector[code_at:510]))
        return cls(**kw)  # type: ignore[arg-type]

    def emit(self) -> bytes:
        """The first 512 bytes of the boot sector (pad to the sector size yourself)."""
        try:
            out = bytearray(512)
            _COMMON.pack_into(
                out, 0, self.jump, self.oem, self.bytes_per_sector, self.sectors_per_cluster,
                self.reserved_sectors, self.num_fats, self.root_entries, self.total_sectors16,
                self.media, self.fat_size16, self.sectors_per_track, self.heads,
                self.hidden_sectors, self.total_sectors32)
            if self.fat32:
                _EXT32.pack_into(
                    out, 36, self.fat_size32, self.ext_flags, self.fs_version, self.root_cluster,
                    self.fsinfo_sector, self.backup_boot_sector, self.reserved32,
                    self.drive_number, self.state, self.ext_signature, self.volume_id,
                    self.label, self.fs_type)
                code_at = 90
            else:
                _EXT16.pack_into(out, 36, self.drive_number, self.state, self.ext_signature,
                                 self.volume_id, self.label, self.fs_type)
                code_at = 62
        except struct.error as e:
            raise KernelError(Errno.EINVAL, f"msdos: boot sector field out of range: {e}") from e
        code = self.boot_code[: 510 - code_at]
        out[code_at : code_at + len(code)] = code
        if self.signature:
            out[510:512] = BOOT_SIGNATURE
        return bytes(out)


@dataclass(frozen=True, slots=True)
class FsInfo:
    """FAT32 FSInfo: free cluster count and next-free hint (0xFFFFFFFF = unknown)."""

    free_count: int = 0xFFFFFFFF
    next_free: int = 0xFFFFFFFF

    @classmethod
    def parse(cls, sector: bytes) -> FsInfo:
        _need(sector, 512, "FSInfo sector")
        (lead,) = _FSINFO_HEAD.unpack_from(sector, 0)
        struc, free, nxt, _res, trail = _FSINFO_TAIL.unpack_from(sector, 484)
        if lead != FSINFO_LEAD or struc != FSINFO_STRUCT or trail != FSINFO_TRAIL:
            raise corrupt("msdos: FSInfo signatures bad")
        return cls(free, nxt)

    def emit(self, size: int = 512) -> bytes:
        out = bytearray(max(size, 512))
        _FSINFO_HEAD.pack_into(out, 0, FSINFO_LEAD)
        _FSINFO_TAIL.pack_into(out, 484, FSINFO_STRUCT, self.free_count & 0xFFFFFFFF,
                               self.next_free & 0xFFFFFFFF, bytes(12), FSINFO_TRAIL)
        return bytes(out)


class ShortEntry(NamedTuple):
    """An 8.3 directory entry.  ``name`` is the raw 11-byte field (0x05 lead byte kept as is);
    times are the raw FAT date/time words (see ``fattime``).  An immutable named tuple:
    ``entry.replace(size=...)`` makes a changed copy (cheaper than a frozen dataclass on the
    per-file paths of a tree copy)."""

    name: bytes
    attr: int = 0
    ntres: int = 0
    ctime_cs: int = 0
    ctime: int = 0
    cdate: int = 0
    adate: int = 0
    cluster_hi: int = 0
    mtime: int = 0
    mdate: int = 0
    cluster_lo: int = 0
    size: int = 0

    @property
    def cluster(self) -> int:
        return (self.cluster_hi << 16) | self.cluster_lo

    def with_cluster(self, cluster: int) -> ShortEntry:
        return self._replace(cluster_hi=cluster >> 16, cluster_lo=cluster & 0xFFFF)

    def replace(self, **changes: int | bytes) -> ShortEntry:
        return self._replace(**changes)

    @classmethod
    def parse(cls, b: bytes) -> ShortEntry:
        if len(b) != DIRENT_SIZE:
            raise corrupt(f"msdos: directory entry of {len(b)} bytes")
        return cls._make(_SHORT.unpack(b))

    def emit(self) -> bytes:
        try:
            return _SHORT.pack(*self)
        except struct.error as e:
            raise KernelError(Errno.EINVAL, f"msdos: directory entry field: {e}") from e


@dataclass(frozen=True, slots=True)
class LfnEntry:
    """One VFAT long-name slot: ``seq`` (1..20, with LFN_LAST on the first slot stored),
    ``chars`` = 26 bytes of UCS-2LE (13 code units), ``checksum`` of the short name."""

    seq: int
    chars: bytes
    checksum: int
    kind: int = 0
    cluster: int = 0

    @classmethod
    def parse(cls, b: bytes) -> LfnEntry:
        if len(b) != DIRENT_SIZE:
            raise corrupt(f"msdos: LFN entry of {len(b)} bytes")
        seq, n1, attr, kind, csum, n2, clus, n3 = _LFN.unpack(b)
        if attr != ATTR_LFN:
            raise corrupt("msdos: LFN entry without LFN attribute")
        return cls(seq, n1 + n2 + n3, csum, kind, clus)

    def emit(self) -> bytes:
        c = self.chars
        if len(c) != 2 * LFN_CHARS:
            raise KernelError(Errno.EINVAL, "msdos: LFN slot needs 26 bytes of name")
        return _LFN.pack(self.seq, c[:10], ATTR_LFN, self.kind, self.checksum, c[10:22],
                         self.cluster, c[22:26])


def lfn_checksum(name11: bytes) -> int:
    """Checksum of an 11-byte short name (rotate right, add)."""
    s = 0
    for c in name11:
        s = (((s & 1) << 7) + (s >> 1) + c) & 0xFF
    return s


@dataclass(frozen=True, slots=True)
class Geometry:
    """Checked layout numbers derived from a boot sector.  Sector numbers are relative to the
    start of the file system; clusters are numbered from 2."""

    fat_bits: int
    sector_size: int
    cluster_sectors: int
    reserved: int
    num_fats: int
    fat_sectors: int
    root_entries: int
    root_start: int          # first sector of the fixed root directory (FAT12/16)
    root_sectors: int
    data_start: int          # first sector of cluster 2
    total_sectors: int
    clusters: int            # number of usable data clusters (max cluster = clusters + 1)
    root_cluster: int        # FAT32 only, else 0
    active_fat: int | None   # FAT32 with mirroring off: the one FAT in use

    @property
    def cluster_size(self) -> int:
        return self.cluster_sectors * self.sector_size

    @property
    def max_cluster(self) -> int:
        return self.clusters + 1

    def cluster_sector(self, cluster: int) -> int:
        return self.data_start + (cluster - 2) * self.cluster_sectors

    @classmethod
    def from_boot(cls, bs: BootSector, device_bytes: int) -> Geometry:
        bps, spc = bs.bytes_per_sector, bs.sectors_per_cluster
        if bps not in SECTOR_SIZES:
            raise KernelError(Errno.EINVAL, f"msdos: sector size {bps} unsupported")
        if spc == 0 or spc & (spc - 1) or spc > 128:
            raise KernelError(Errno.EINVAL, f"msdos: {spc} sectors per cluster")
        if bs.reserved_sectors == 0 or bs.num_fats == 0 or bs.num_fats > 4:
            raise corrupt(f"msdos: {bs.reserved_sectors} reserved sectors, {bs.num_fats} FATs")
        total, fatsz = bs.total_sectors, bs.fat_size
        if total == 0 or fatsz == 0:
            raise corrupt("msdos: zero total sectors or FAT size")
        root_sectors = -(-bs.root_entries * DIRENT_SIZE // bps)
        if bs.fat32 and bs.root_entries:
            raise corrupt("msdos: FAT32 boot sector with a fixed root directory")
        if not bs.fat32 and bs.root_entries == 0:
            raise corrupt("msdos: FAT12/16 boot sector without root directory entries")
        root_start = bs.reserved_sectors + bs.num_fats * fatsz
        data_start = root_start + root_sectors
        if data_start >= total:
            raise corrupt("msdos: metadata regions larger than the file system")
        if data_start * bps > device_bytes:
            raise corrupt("msdos: FAT or root directory beyond the end of the device")
        clusters = (total - data_start) // spc
        bits = 32 if bs.fat32 else 12 if clusters <= FAT12_MAX_CLUSTERS else 16
        fat_capacity = fatsz * bps * 8 // bits - 2
        limit = {12: FAT12_MAX_CLUSTERS, 16: FAT16_MAX_CLUSTERS, 32: FAT32_MAX_CLUSTERS}[bits]
        on_device = (device_bytes // bps - data_start) // spc
        clusters = min(clusters, fat_capacity, limit, on_device)
        if clusters < 1:
            raise corrupt("msdos: no data clusters")
        active = None
        root_cluster = 0
        if bits == 32:
            root_cluster = bs.root_cluster
            if not 2 <= root_cluster <= clusters + 1:
                raise corrupt(f"msdos: root cluster {root_cluster} out of range")
            if bs.ext_flags & 0x80:
                active = bs.ext_flags & 0x0F
                if active >= bs.num_fats:
                    raise corrupt(f"msdos: active FAT {active} of {bs.num_fats}")
        return cls(bits, bps, spc, bs.reserved_sectors, bs.num_fats, fatsz, bs.root_entries,
                   root_start, root_sectors, data_start, total, clusters, root_cluster, active)
