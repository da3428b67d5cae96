"""Partition tables: MBR (primary and logical partitions) and GPT, read from a device.

Interface:  read_table(read, size) -> ("gpt" | "dos" | "", [Partition]);
            partitions(read, size) -> list[Partition];  find(read, size, n) -> Partition
            ``read(offset, length) -> bytes`` reads the whole disk.
Pure bytes in, records out: the kernel's block devices use it (``IMAGE%N``, ``partition=``),
and so do tools that read a table on the host (``fsu parts``), like NetBSD's subr_disk_mbr.
Partitions are numbered from 1 as Linux does (sda1..): GPT in table order; MBR primaries 1-4,
logical partitions from 5.  Hostile tables (overlapping, beyond the disk, loops in extended
chains, absurd entry counts) are refused with EINVAL or skipped, with bounded work.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from rumpkernel.kern.errno import Errno, KernelError

SECTOR = 512
Reader = Callable[[int, int], bytes]


@dataclass(frozen=True)
class Partition:
    number: int
    offset: int
    size: int
    kind: str  # hex MBR type ("83") or GPT type GUID


def _mbr_entries(sector: bytes) -> list[tuple[int, int, int]]:
    out = []
    for i in range(4):
        e = sector[446 + 16 * i : 462 + 16 * i]
        ptype = e[4]
        lba, count = struct.unpack_from("<II", e, 8)
        out.append((ptype, lba, count))
    return out


def _gpt(read: Reader, disk_size: int) -> list[Partition]:
    hdr = read(SECTOR, SECTOR)
    if hdr[:8] != b"EFI PART":
        raise KernelError(Errno.EINVAL, "protective MBR without a GPT header")
    entries_lba, n, esize = struct.unpack_from("<QII", hdr, 72)
    if not 0 < n <= 1024 or esize < 128 or esize > 4096 or esize % 8:
        raise KernelError(Errno.EINVAL, f"GPT: implausible entry table ({n} x {esize})")
    table = read(entries_lba * SECTOR, -(-(n * esize) // SECTOR) * SECTOR)
    out = []
    for i in range(n):
        e = table[i * esize : (i + 1) * esize]
        type_guid = e[:16]
        if type_guid == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        if last < first or (last + 1) * SECTOR > disk_size:
            continue
        import uuid  # only GPT disks pay for it

        out.append(Partition(i + 1, first * SECTOR, (last - first + 1) * SECTOR,
                             str(uuid.UUID(bytes_le=type_guid))))
    return out


def partitions(read: Reader, disk_size: int) -> list[Partition]:
    return read_table(read, disk_size)[1]


def read_table(read: Reader, disk_size: int) -> tuple[str, list[Partition]]:
    """The table's kind ("gpt", "dos", or "" for none) and its partitions.  A sector with the
    0x55AA signature whose boot flags are not 0x00/0x80 is a boot sector (a FAT file system),
    not a table."""
    if disk_size < SECTOR:
        return "", []
    mbr = read(0, SECTOR)
    if mbr[510:512] != b"\x55\xaa":
        return "", []
    entries = _mbr_entries(mbr)
    if any(t == 0xEE for t, _, _ in entries):
        return "gpt", _gpt(read, disk_size)
    if any(mbr[446 + 16 * i] not in (0, 0x80) for i in range(4)):
        return "", []
    out = _dos(read, disk_size, entries)
    return ("dos" if out else ""), out


def _dos(read: Reader, disk_size: int, entries: list[tuple[int, int, int]]) -> list[Partition]:
    out: list[Partition] = []
    for i, (ptype, lba, count) in enumerate(entries):
        if ptype == 0 or count == 0:
            continue
        if (lba + count) * SECTOR > disk_size:
            continue
        out.append(Partition(i + 1, lba * SECTOR, count * SECTOR, f"{ptype:02x}"))
        if ptype in (0x05, 0x0F, 0x85):
            out.extend(_logical(read, lba, disk_size))
    return out


def _logical(read: Reader, ext_lba: int, disk_size: int) -> list[Partition]:
    out = []
    ebr_lba = ext_lba
    seen = set()
    for n in range(5, 133):
        if ebr_lba in seen or (ebr_lba + 1) * SECTOR > disk_size:
            break
        seen.add(ebr_lba)
        ebr = read(ebr_lba * SECTOR, SECTOR)
        if ebr[510:512] != b"\x55\xaa":
            break
        (t1, l1, c1), (t2, l2, _c2) = _mbr_entries(ebr)[:2]
        if t1 and c1 and (ebr_lba + l1 + c1) * SECTOR <= disk_size:
            out.append(Partition(n, (ebr_lba + l1) * SECTOR, c1 * SECTOR, f"{t1:02x}"))
        if not t2:
            break
        ebr_lba = ext_lba + l2
    return out


def find(read: Reader, disk_size: int, number: int) -> Partition:
    parts = partitions(read, disk_size)
    for p in parts:
        if p.number == number:
            return p
    have = ", ".join(str(p.number) for p in parts) or "none"
    raise KernelError(Errno.ENXIO, f"no partition {number} (partitions: {have})")
