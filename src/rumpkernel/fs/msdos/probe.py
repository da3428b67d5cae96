"""Finding a FAT volume on a device: bare boot sector, explicit byte offset, or MBR partition.

Interface:
    looks_like_fat(sector) -> bool                -- cheap plausibility check (never raises)
    find_volume(dev, offset, partition) -> (offset, BootSector)
                                                  -- EINVAL when no FAT volume is there

Rules: reads at most two sectors; MBR partitions are used when ``partition`` is given or when
sector 0 is not itself a FAT boot sector but carries a partition table with a FAT type
(0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E).
"""

from __future__ import annotations

import struct

from rumpkernel.fs.msdos.layout import SECTOR_SIZES, BootSector
from rumpkernel.kern.errno import Errno, KernelError

FAT_PARTITION_TYPES = frozenset({0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E})
_PART = struct.Struct("<B3sB3sII")


def _read(dev, offset: int) -> bytes:
    n = max(512, dev.sector_size)
    if offset < 0 or offset + n > dev.size:
        raise KernelError(Errno.EINVAL, "msdos: device too small for a FAT boot sector")
    if offset % dev.sector_size:
        raise KernelError(Errno.EINVAL, "msdos: offset is not sector aligned")
    return dev.pread(offset, n)


def looks_like_fat(sector: bytes) -> bool:
    if len(sector) < 512 or sector[0] not in (0xEB, 0xE9):
        return False
    bps = int.from_bytes(sector[11:13], "little")
    spc = sector[13]
    reserved = int.from_bytes(sector[14:16], "little")
    nfats = sector[16]
    media = sector[21]
    return (bps in SECTOR_SIZES and spc != 0 and spc & (spc - 1) == 0 and reserved > 0
            and 1 <= nfats <= 4 and (media >= 0xF8 or media == 0xF0))


def _partitions(sector: bytes) -> list[tuple[int, int, int]]:
    if sector[510:512] != b"\x55\xaa":
        return []
    out = []
    for i in range(4):
        _status, _chs, ptype, _chs2, lba, count = _PART.unpack_from(sector, 446 + 16 * i)
        out.append((ptype, lba, count))
    return out


def find_volume(dev, offset: int = 0, partition: int | None = None) -> tuple[int, BootSector]:
    first = _read(dev, offset)
    if partition is None and looks_like_fat(first):
        return offset, BootSector.parse(first)
    parts = _partitions(first)
    if partition is not None:
        if not parts:
            raise KernelError(Errno.EINVAL, "msdos: no partition table")
        chosen = [parts[partition - 1]]
    else:
        chosen = [p for p in parts if p[0] in FAT_PARTITION_TYPES]
    for _ptype, lba, count in chosen:
        if lba == 0 or count == 0:
            continue
        start = offset + lba * 512
        sector = _read(dev, start)
        if looks_like_fat(sector):
            return start, BootSector.parse(sector)
    raise KernelError(Errno.EINVAL, "msdos: no FAT file system found")
