"""Make an empty FAT12/16/32 file system (what ``mkfs.fat`` does, written from its documented
behaviour and the FAT specification).

Interface:
    plan(size, **options) -> (BootSector, Geometry)   -- choose the layout, write nothing
    newfs(dev, **options)                              -- write boot sector(s), FSInfo, FATs,
                                                          root directory (and label entry)

Options: ``size`` (bytes, default the device), ``label`` (<= 11 characters), ``volume_id``
(32-bit; default derived from the other options so runs are reproducible), ``fat_type``
(12/16/32 or None: FAT32 from 512 MiB up, otherwise whichever of FAT12/16 gives more clusters at
the smallest cluster size that fits, as mkfs.fat does), ``cluster_size`` (bytes) or
``sectors_per_cluster``, ``sector_size`` (512..4096), ``num_fats`` (default 2),
``root_entries`` (FAT12/16, default 512; floppy sizes use the classic values), ``offset``
(bytes into the device), ``hidden_sectors``.  EINVAL when the options cannot make a valid FAT.

Rules: data structures are aligned to the cluster size above 8192 sectors (mkfs.fat's default);
unlike mkfs.fat 4.2 the total sector count is not rounded down to whole tracks (so the layout
matches mkfs.fat's in everything but ``total_sectors`` when the size is not a track multiple);
the FAT, the root directory and the FSInfo/backup sectors are written, file data is not.
"""

from __future__ import annotations

import zlib

from rumpkernel.fs.msdos.layout import (
    ATTR_VOLUME,
    DIRENT_SIZE,
    FAT12_MAX_CLUSTERS,
    FAT16_MAX_CLUSTERS,
    SECTOR_SIZES,
    BootSector,
    FsInfo,
    Geometry,
    ShortEntry,
)
from rumpkernel.kern.errno import Errno, KernelError

MIN_FAT32_CLUSTERS = 65525
MAX_FAT32_CLUSTERS = 0x0FFFFFF5
_FLOPPIES = {  # size in KiB: (sectors/track, heads, media, sectors/cluster, root entries)
    360: (9, 2, 0xFD, 2, 112), 720: (9, 2, 0xF9, 2, 112), 1200: (15, 2, 0xF9, 1, 224),
    1440: (18, 2, 0xF0, 1, 224), 2880: (36, 2, 0xF0, 2, 224)}
_BOOT_MSG = b"This volume is not bootable (rumpkernel msdos newfs).\r\n"
_BAD_LABEL = frozenset('*?.,;:/\\|+=<>[]"')
_ZERO_CHUNK = 1 << 20


def _label(label: str | None) -> bytes | None:
    if not label:
        return None
    try:
        raw = label.upper().encode("cp850")
    except UnicodeEncodeError as e:
        raise KernelError(Errno.EINVAL, f"msdos: label {label!r} not in code page 850") from e
    if len(raw) > 11 or raw[:1] == b" " or any(c < 0x20 or chr(c) in _BAD_LABEL for c in raw):
        raise KernelError(Errno.EINVAL, f"msdos: bad volume label {label!r}")
    return raw.ljust(11)


def _align(n: int, k: int, on: bool) -> int:
    return (n + k - 1) & ~(k - 1) if on else n


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _fit(bits: int, sectors: int, reserved: int, root_secs: int, spc: int, bps: int,
         nfats: int, align: bool) -> tuple[int, int]:
    """(clusters, FAT sectors) for one FAT width at one cluster size; clusters 0 = no fit."""
    data = sectors - _align(reserved, spc, align)
    if bits != 32:
        data -= _align(root_secs, spc, align)
    if bits == 12:
        est = 2 * (data * bps + nfats * 3) // (2 * spc * bps + nfats * 3)
        fatlen = _align(_cdiv(((est + 2) * 3 + 1) >> 1, bps), spc, align)
        cap = min(fatlen * 2 * bps // 3, FAT12_MAX_CLUSTERS)
    else:
        w = bits // 8
        est = (data * bps + nfats * 2 * w) // (spc * bps + nfats * w)
        fatlen = _align(_cdiv((est + 2) * w, bps), spc, align)
        cap = min(fatlen * bps // w, FAT16_MAX_CLUSTERS if bits == 16 else MAX_FAT32_CLUSTERS)
    clusters = (data - nfats * fatlen) // spc
    if clusters <= 0 or clusters > cap - (2 if bits != 32 else 0):
        return 0, fatlen
    return clusters, fatlen


def _choose(sectors: int, bps: int, fat_type: int | None, spc: int, fixed: bool,
            root_entries: int, nfats: int, reserved: int, align: bool) -> tuple[int, int, int]:
    root_secs = _cdiv(root_entries * DIRENT_SIZE, bps)
    while True:
        c12, _ = _fit(12, sectors, reserved, root_secs, spc, bps, nfats, align)
        c16, _ = _fit(16, sectors, reserved, root_secs, spc, bps, nfats, align)
        if c16 and c16 <= FAT12_MAX_CLUSTERS and fat_type != 16:
            c16 = 0
        c32, _ = _fit(32, sectors, reserved, 0, spc, bps, nfats, align)
        if c32 and c32 < MIN_FAT32_CLUSTERS and fat_type != 32:
            c32 = 0
        if ((c12 and fat_type in (None, 12)) or (c16 and fat_type in (None, 16))
                or (c32 and fat_type == 32)):
            break
        if fixed or spc >= 128:
            raise KernelError(Errno.EINVAL, "msdos: no FAT layout fits these options")
        spc <<= 1
    bits = fat_type or (16 if c16 > c12 else 12)
    return bits, spc, {12: c12, 16: c16, 32: c32}[bits]


def plan(size: int, **opts: object) -> tuple[BootSector, Geometry]:
    bps = int(opts.get("sector_size") or 512)  # type: ignore[call-overload]
    if bps not in SECTOR_SIZES:
        raise KernelError(Errno.EINVAL, f"msdos: sector size {bps}")
    fat_type = opts.get("fat_type")
    if fat_type not in (None, 12, 16, 32):
        raise KernelError(Errno.EINVAL, f"msdos: fat_type {fat_type}")
    sectors = min(size // bps, 0xFFFFFFFF)
    nfats = int(opts.get("num_fats") or 2)  # type: ignore[call-overload]
    spt, heads, media, spc, root_entries = 32, 64, 0xF8, 4, 512
    if size >= 512 * 1024 * 1024:
        spt, heads = 63, 255
    if size // 1024 in _FLOPPIES and size % 1024 == 0:
        spt, heads, media, spc, root_entries = _FLOPPIES[size // 1024]
    if fat_type is None and size >= 512 * 1024 * 1024:
        fat_type = 32
    if fat_type == 32:
        # mkfs.fat's size table counts the volume in 512-byte units whatever the sector size
        mb = sectors * 512 // (1024 * 1024)
        spc = 64 if mb > 32768 else 32 if mb > 16384 else 16 if mb > 8192 else 8 if mb > 260 else 1
    spc, fixed = _cluster_option(opts, bps, spc)
    if opts.get("root_entries"):
        root_entries = int(opts["root_entries"])  # type: ignore[call-overload]
    reserved = 32 if fat_type == 32 else 1
    if opts.get("reserved_sectors"):
        reserved = int(opts["reserved_sectors"])  # type: ignore[call-overload]
    align = sectors > 8192
    bits, spc, _ = _choose(sectors, bps, fat_type, spc, fixed,
                           0 if fat_type == 32 else root_entries, nfats, reserved, align)
    if bits == 32:
        root_entries, reserved = 0, max(reserved, 32 if not opts.get("reserved_sectors") else 2)
    root_secs = _cdiv(root_entries * DIRENT_SIZE, bps)
    _, fatlen = _fit(bits, sectors, reserved, root_secs, spc, bps, nfats, align)
    reserved = _align(reserved, spc, align)
    if align and bits != 32:
        root_entries = _align(root_secs, spc, True) * (bps // DIRENT_SIZE)
    return _boot(opts, bits, bps, spc, reserved, nfats, root_entries, sectors, media, fatlen,
                 spt, heads, size)


def _cluster_option(opts: dict, bps: int, spc: int) -> tuple[int, bool]:
    if opts.get("sectors_per_cluster"):
        spc = int(opts["sectors_per_cluster"])
    elif opts.get("cluster_size"):
        cs = int(opts["cluster_size"])
        if cs % bps:
            raise KernelError(Errno.EINVAL, f"msdos: cluster size {cs} vs sector {bps}")
        spc = cs // bps
    else:
        return spc, False
    if spc < 1 or spc > 128 or spc & (spc - 1):
        raise KernelError(Errno.EINVAL, f"msdos: {spc} sectors per cluster")
    return spc, True


def _boot(opts: dict, bits: int, bps: int, spc: int, reserved: int, nfats: int,
          root_entries: int, sectors: int, media: int, fatlen: int, spt: int, heads: int,
          size: int) -> tuple[BootSector, Geometry]:
    label = _label(opts.get("label"))  # type: ignore[arg-type]
    volid = opts.get("volume_id")
    if volid is None:
        volid = zlib.crc32(repr((size, bits, bps, spc, label)).encode())
    f32 = bits == 32
    small = sectors < 65536 and not f32
    code_at = 90 if f32 else 62
    boot = BootSector(
        jump=bytes([0xEB, code_at - 2, 0x90]), oem=b"RUMPFAT ", bytes_per_sector=bps,
        sectors_per_cluster=spc, reserved_sectors=reserved, num_fats=nfats,
        root_entries=root_entries, total_sectors16=sectors if small else 0, media=media,
        fat_size16=0 if f32 else fatlen, sectors_per_track=spt, heads=heads,
        hidden_sectors=int(opts.get("hidden_sectors") or 0),
        total_sectors32=0 if small else sectors, fat_size32=fatlen if f32 else 0,
        root_cluster=2 if f32 else 0, fsinfo_sector=1 if f32 else 0,
        backup_boot_sector=6 if f32 else 0, drive_number=0x80 if media == 0xF8 else 0,
        ext_signature=0x29, volume_id=int(volid) & 0xFFFFFFFF,
        label=label or b"NO NAME    ", fs_type=f"FAT{bits}".ljust(8).encode(),
        boot_code=_boot_code(code_at))
    geo = Geometry.from_boot(boot, sectors * bps)
    if geo.fat_bits != bits:
        raise KernelError(Errno.EINVAL, f"msdos: options make a FAT{geo.fat_bits}, not FAT{bits}")
    return boot, geo


def _boot_code(code_at: int) -> bytes:
    # x86: cli; hlt; jmp back to hlt -- then the message for anyone reading the sector.
    return b"\xfa\xf4\xeb\xfd" + _BOOT_MSG


def newfs(dev, **opts: object) -> None:
    offset = int(opts.get("offset") or 0)  # type: ignore[call-overload]
    size = int(opts.get("size") or (dev.size - offset))  # type: ignore[call-overload]
    if size <= 0 or offset + size > dev.size:
        raise KernelError(Errno.EINVAL, f"msdos: size {size} does not fit the device")
    boot, geo = plan(size, **{k: v for k, v in opts.items() if k != "size"})
    bps = geo.sector_size
    if bps % dev.sector_size:
        raise KernelError(Errno.EINVAL, f"msdos: sector size {bps} vs device {dev.sector_size}")
    _zero(dev, offset, geo.data_start * bps)
    sector0 = boot.emit() + bytes(bps - 512)
    dev.pwrite(offset, sector0)
    if geo.fat_bits == 32:
        _fat32_extras(dev, offset, boot, geo, sector0)
    _write_fats(dev, offset, boot, geo)
    _write_root(dev, offset, boot, geo)
    dev.flush()


def _zero(dev, start: int, length: int) -> None:
    pos = 0
    while pos < length:
        n = min(_ZERO_CHUNK, length - pos)
        dev.pwrite(start + pos, bytes(n))
        pos += n


def _fat32_extras(dev, offset: int, boot: BootSector, geo: Geometry, sector0: bytes) -> None:
    bps = geo.sector_size
    info = FsInfo(free_count=geo.clusters - 1, next_free=2).emit(bps)
    for base in (0, boot.backup_boot_sector):
        if base:
            dev.pwrite(offset + base * bps, sector0)
        dev.pwrite(offset + (base + boot.fsinfo_sector) * bps, info)
        # mkfs.fat also signs the third boot sector of each copy
        third = bytearray(bps)
        third[510:512] = b"\x55\xaa"
        dev.pwrite(offset + (base + 2) * bps, bytes(third))


def _write_fats(dev, offset: int, boot: BootSector, geo: Geometry) -> None:
    bps = geo.sector_size
    if geo.fat_bits == 12:
        head = bytes([boot.media, 0xFF, 0xFF])
    elif geo.fat_bits == 16:
        head = bytes([boot.media, 0xFF, 0xFF, 0xFF])
    else:
        head = (0x0FFFFF00 | boot.media).to_bytes(4, "little") + (0x0FFFFFFF).to_bytes(
            4, "little") + (0x0FFFFFF8).to_bytes(4, "little")
    first = head + bytes(bps - len(head))
    for k in range(geo.num_fats):
        dev.pwrite(offset + (geo.reserved + k * geo.fat_sectors) * bps, first)


def _write_root(dev, offset: int, boot: BootSector, geo: Geometry) -> None:
    bps = geo.sector_size
    if geo.fat_bits == 32:
        start = geo.cluster_sector(geo.root_cluster)
        _zero(dev, offset + start * bps, geo.cluster_size)
    else:
        start = geo.root_start
    if boot.label != b"NO NAME    ":
        ent = ShortEntry(name=boot.label, attr=ATTR_VOLUME)
        first = ent.emit() + bytes(bps - DIRENT_SIZE)
        dev.pwrite(offset + start * bps, first)
