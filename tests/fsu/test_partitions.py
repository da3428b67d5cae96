"""Partitioned disks (``IMAGE%N``, MBR and GPT, hand-written and made by sfdisk/sgdisk) and
file systems at an offset (``IMAGE@OFFSET``)."""

from __future__ import annotations

import struct
import uuid
import zlib
from pathlib import Path

import pytest

from tests.fsu.conftest import e2fsck_clean, fsu, need, ok, run

SECTOR = 512
START = 2048  # first partition at 1 MiB, as partitioning tools align
LINUX_GUID = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")


def _place(disk: Path, images: list[Path], total_sectors: int) -> list[tuple[int, int]]:
    spans = []
    lba = START
    with open(disk, "wb") as out:
        out.truncate(total_sectors * SECTOR)
        for img in images:
            data = img.read_bytes()
            count = -(-len(data) // SECTOR)
            out.seek(lba * SECTOR)
            out.write(data)
            spans.append((lba, count))
            lba += -(-count // START) * START
    return spans


def mbr_disk(disk: Path, images: list[Path], ptype: int = 0x83) -> Path:
    """A disk with an MBR whose primary partitions hold ``images`` in order."""
    total = START + sum(-(-p.stat().st_size // SECTOR // START) * START + START for p in images)
    spans = _place(disk, images, total)
    mbr = bytearray(SECTOR)
    for i, (lba, count) in enumerate(spans):
        mbr[446 + 16 * i: 462 + 16 * i] = struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", ptype,
                                                      b"\xfe\xff\xff", lba, count)
    mbr[510:512] = b"\x55\xaa"
    with open(disk, "r+b") as f:
        f.write(mbr)
    return disk


def gpt_disk(disk: Path, images: list[Path]) -> Path:
    """A disk with a protective MBR, primary and backup GPT headers (CRCs computed)."""
    total = START + sum(-(-p.stat().st_size // SECTOR // START) * START + START
                        for p in images) + 64
    spans = _place(disk, images, total)
    entries = bytearray(128 * 128)
    for i, (lba, count) in enumerate(spans):
        entries[i * 128:(i + 1) * 128] = struct.pack(
            "<16s16sQQQ72s", LINUX_GUID.bytes_le, uuid.UUID(int=i + 1).bytes_le, lba,
            lba + count - 1, 0, f"part{i + 1}".encode("utf-16-le"))
    ecrc = zlib.crc32(entries)
    last = total - 1

    def header(current: int, backup: int, entries_lba: int) -> bytes:
        h = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0,
                                  current, backup, 34, last - 33,
                                  uuid.UUID(int=99).bytes_le, entries_lba, 128, 128, ecrc))
        struct.pack_into("<I", h, 16, zlib.crc32(h))
        return bytes(h).ljust(SECTOR, b"\0")

    pmbr = bytearray(SECTOR)
    pmbr[446:462] = struct.pack("<B3sB3sII", 0, b"\0\2\0", 0xEE, b"\xff\xff\xff", 1,
                                min(total - 1, 0xFFFFFFFF))
    pmbr[510:512] = b"\x55\xaa"
    with open(disk, "r+b") as f:
        f.write(pmbr + header(1, last, 2) + entries)
        f.seek((last - 32) * SECTOR)
        f.write(entries)
        f.seek(last * SECTOR)
        f.write(header(last, 1, last - 32))
    return disk


@pytest.fixture
def two_part(tmp_path: Path, ext4_master: Path, fat_master: Path) -> tuple[Path, Path]:
    return (mbr_disk(tmp_path / "mbr.img", [ext4_master, fat_master]),
            gpt_disk(tmp_path / "gpt.img", [fat_master, ext4_master]))


def test_mbr_partitions(two_part: tuple[Path, Path]) -> None:
    mbr, _gpt = two_part
    assert ok(fsu("cat", f"{mbr}%1", "/etc/hostname")) == "imagehost\n"
    assert ok(fsu("cat", f"{mbr}%2", "/etc/hostname")) == "imagehost\n"
    assert "ext4" in ok(fsu("info", f"{mbr}%1"))
    assert "fat16" in ok(fsu("info", f"{mbr}%2")) or "fat12" in ok(fsu("info", f"{mbr}%2"))


def test_gpt_partitions(two_part: tuple[Path, Path]) -> None:
    _mbr, gpt = two_part
    assert ok(fsu("cat", f"{gpt}%2", "/etc/motd")) == "welcome\n" * 50
    assert "FATVOL" in ok(fsu("info", f"{gpt}%1"))


def test_offset(two_part: tuple[Path, Path]) -> None:
    mbr, _gpt = two_part
    assert ok(fsu("cat", f"{mbr}@1048576", "/etc/hostname")) == "imagehost\n"
    assert ok(fsu("cat", f"{mbr}@1m", "/etc/hostname")) == "imagehost\n"
    assert ok(fsu("cat", f"{mbr}@2048s", "/etc/hostname")) == "imagehost\n"


def test_write_into_a_partition_stays_inside_it(two_part: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    mbr, _gpt = two_part
    before = mbr.read_bytes()
    ok(fsu("mkdir", f"{mbr}%1", "/made"))
    ok(fsu("write", f"{mbr}%1", "/made/x", input="in partition one\n"))
    after = mbr.read_bytes()
    assert after[:START * SECTOR] == before[:START * SECTOR]
    part2 = struct.unpack_from("<I", before, 446 + 16 + 8)[0] * SECTOR
    assert after[part2:] == before[part2:]
    ok(fsu("get", f"{mbr}%1", "/made/x", tmp_path / "x"))
    assert (tmp_path / "x").read_text() == "in partition one\n"
    size = struct.unpack_from("<I", before, 446 + 12)[0] * SECTOR
    (tmp_path / "p1.img").write_bytes(after[START * SECTOR: START * SECTOR + size])
    e2fsck_clean(tmp_path / "p1.img")


def test_bad_partition_and_offset(two_part: tuple[Path, Path]) -> None:
    mbr, _gpt = two_part
    res = fsu("ls", f"{mbr}%7", "/")
    assert res.returncode == 2 and "no partition 7" in res.stderr and "1, 2" in res.stderr
    res = fsu("ls", f"{mbr}%x", "/")
    assert res.returncode == 2 and "invalid partition number" in res.stderr
    res = fsu("ls", f"{mbr}@12q", "/")
    assert res.returncode == 2 and "invalid offset" in res.stderr
    res = fsu("ls", f"{mbr}@999g", "/")
    assert res.returncode == 2 and "beyond the end" in res.stderr
    res = fsu("ls", str(mbr), "/")
    assert res.returncode == 2
    assert "partition table" in res.stderr and f"{mbr}%N" in res.stderr


def test_tables_made_by_sfdisk_and_sgdisk(tmp_path: Path, ext4_master: Path) -> None:
    need("sfdisk")
    need("sgdisk")
    size = ext4_master.stat().st_size
    disk = tmp_path / "sf.img"
    with open(disk, "wb") as f:
        f.truncate(size + 4 * 1024 * 1024)
    run("sfdisk", "-q", disk, input=f"start=2048, size={size // SECTOR}, type=83\n")
    with open(disk, "r+b") as f:
        f.seek(START * SECTOR)
        f.write(ext4_master.read_bytes())
    assert ok(fsu("cat", f"{disk}%1", "/etc/hostname")) == "imagehost\n"
    gdisk = tmp_path / "sg.img"
    with open(gdisk, "wb") as f:
        f.truncate(size + 4 * 1024 * 1024)
    run("sgdisk", "-n", f"1:2048:+{size // 1024}K", "-t", "1:8300", gdisk)
    with open(gdisk, "r+b") as f:
        f.seek(START * SECTOR)
        f.write(ext4_master.read_bytes())
    assert ok(fsu("cat", f"{gdisk}%1", "/etc/hostname")) == "imagehost\n"
    run("sgdisk", "-v", gdisk)  # our hand-written layout agrees with what sgdisk checks
    hand = gpt_disk(tmp_path / "hand.img", [ext4_master])
    res = run("sgdisk", "-v", hand, check=False)
    assert "No problems found" in res.stdout, res.stdout
