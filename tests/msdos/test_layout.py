"""On-disk records: hand-checked vectors from a real mkfs.fat image, hypothesis round trips,
time conversion and name rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.fs.msdos.fattime import from_fat, to_fat
from rumpkernel.fs.msdos.layout import (
    BootSector,
    FsInfo,
    Geometry,
    LfnEntry,
    ShortEntry,
    lfn_checksum,
)
from rumpkernel.fs.msdos.names import ShortNamer, check_long, decode_lfn, lfn_slots
from rumpkernel.kern.errno import Errno, KernelError

# First 96 bytes of `mkfs.fat -C -F 32 -n TESTVOL --invariant img 65536` (mkfs.fat 4.2).
FAT32_BOOT = bytes.fromhex(
    "eb58906d6b66732e66617400020120000200000000f800002000080000000000"
    "00000200f1030000000000000200000001000600000000000000000000000000"
    "800029cdab341254455354564f4c2020202046415433322020200e1fbe777cac")
# First 64 bytes of `mkfs.fat -C -F 12 --invariant img 1440`.
FAT12_BOOT = bytes.fromhex(
    "eb3c906d6b66732e666174000201010002e000400bf009001200020000000000"
    "00000000000029cdab34124e4f204e414d452020202046415431322020200e1f")


def _sector(head: bytes) -> bytes:
    s = bytearray(512)
    s[: len(head)] = head
    s[510:512] = b"\x55\xaa"
    return bytes(s)


def test_fat32_boot_sector_vector():
    bs = BootSector.parse(_sector(FAT32_BOOT))
    assert (bs.bytes_per_sector, bs.sectors_per_cluster, bs.reserved_sectors) == (512, 1, 32)
    assert (bs.num_fats, bs.root_entries, bs.total_sectors16, bs.media) == (2, 0, 0, 0xF8)
    assert (bs.fat_size16, bs.sectors_per_track, bs.heads, bs.hidden_sectors) == (0, 32, 8, 0)
    assert (bs.total_sectors32, bs.fat_size32, bs.root_cluster) == (131072, 1009, 2)
    assert (bs.fsinfo_sector, bs.backup_boot_sector, bs.drive_number) == (1, 6, 0x80)
    assert (bs.ext_signature, bs.volume_id) == (0x29, 0x1234ABCD)
    assert (bs.label, bs.fs_type, bs.oem) == (b"TESTVOL    ", b"FAT32   ", b"mkfs.fat")
    assert bs.fat32 and bs.signature
    assert bs.emit()[:96] == FAT32_BOOT
    geo = Geometry.from_boot(bs, 64 << 20)
    assert geo.fat_bits == 32
    assert geo.data_start == 32 + 2 * 1009
    assert geo.clusters == 131072 - 2050


def test_fat12_boot_sector_vector():
    bs = BootSector.parse(_sector(FAT12_BOOT))
    assert (bs.bytes_per_sector, bs.sectors_per_cluster, bs.reserved_sectors) == (512, 1, 1)
    assert (bs.root_entries, bs.total_sectors16, bs.media, bs.fat_size16) == (224, 2880, 0xF0, 9)
    assert (bs.sectors_per_track, bs.heads, bs.volume_id) == (18, 2, 0x1234ABCD)
    assert bs.label == b"NO NAME    " and not bs.fat32
    geo = Geometry.from_boot(bs, 1440 * 1024)
    assert (geo.fat_bits, geo.root_start, geo.root_sectors, geo.data_start) == (12, 19, 14, 33)
    assert geo.clusters == 2847
    assert bs.emit()[:64] == FAT12_BOOT


def test_fsinfo_vector():
    raw = bytearray(512)
    raw[0:4] = b"RRaA"
    raw[484:496] = bytes.fromhex("72724161fdf7010002000000")
    raw[508:512] = bytes.fromhex("000055aa")
    info = FsInfo.parse(bytes(raw))
    assert (info.free_count, info.next_free) == (0x1F7FD, 2)
    assert info.emit() == bytes(raw)
    raw[0] = 0
    with pytest.raises(KernelError) as ei:
        FsInfo.parse(bytes(raw))
    assert ei.value.errno == Errno.EUCLEAN


def test_short_entry_vector():
    raw = bytes.fromhex("524541444d45202054585420" "18" "00" "5589" "2f51" "2f51" "0000"
                        "5589" "2f51" "0300" "06000000")
    e = ShortEntry.parse(raw)
    assert e.name == b"README  TXT" and e.attr == 0x20 and e.ntres == 0x18
    assert e.cluster == 3 and e.size == 6
    assert e.mdate == (40 << 9) | (9 << 5) | 15 and e.mtime == (17 << 11) | (10 << 5) | 21
    assert e.emit() == raw
    assert e.with_cluster(0x12345).emit()[20:22] == b"\x01\x00"


def _checksum_reference(name: bytes) -> int:
    s = 0
    for c in name:
        s = ((s >> 1) | ((s & 1) << 7)) + c
        s %= 256
    return s


def test_lfn_checksum_and_slots():
    for n in (b"README  TXT", b"PROGRA~1   ", b"\x05ABC    TXT"):
        assert lfn_checksum(n) == _checksum_reference(n)
    chunks = lfn_slots("Mixed Case.Name")
    assert len(chunks) == 2
    assert chunks[1][4:6] == b"\x00\x00" and chunks[1][6:] == b"\xff" * 20
    assert decode_lfn(b"".join(chunks)) == "Mixed Case.Name"
    assert len(lfn_slots("a" * 13)) == 1      # exactly full: no terminator


def test_bad_lengths_refused():
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(KernelError):
            ShortEntry.parse(bad)
        with pytest.raises(KernelError):
            LfnEntry.parse(bad)
    with pytest.raises(KernelError):
        BootSector.parse(bytes(100))


ints = st.integers
boot16 = st.builds(
    BootSector, jump=st.binary(min_size=3, max_size=3), oem=st.binary(min_size=8, max_size=8),
    bytes_per_sector=ints(0, 0xFFFF), sectors_per_cluster=ints(0, 255),
    reserved_sectors=ints(0, 0xFFFF), num_fats=ints(0, 255), root_entries=ints(0, 0xFFFF),
    total_sectors16=ints(0, 0xFFFF), media=ints(0, 255), fat_size16=ints(1, 0xFFFF),
    sectors_per_track=ints(0, 0xFFFF), heads=ints(0, 0xFFFF), hidden_sectors=ints(0, 2**32 - 1),
    total_sectors32=ints(0, 2**32 - 1), drive_number=ints(0, 255), state=ints(0, 255),
    ext_signature=ints(0, 255), volume_id=ints(0, 2**32 - 1),
    label=st.binary(min_size=11, max_size=11), fs_type=st.binary(min_size=8, max_size=8),
    boot_code=st.binary(min_size=448, max_size=448), signature=st.booleans())
boot32 = st.builds(
    BootSector, fat_size16=st.just(0), fat_size32=ints(0, 2**32 - 1), ext_flags=ints(0, 0xFFFF),
    fs_version=ints(0, 0xFFFF), root_cluster=ints(0, 2**32 - 1), fsinfo_sector=ints(0, 0xFFFF),
    backup_boot_sector=ints(0, 0xFFFF), reserved32=st.binary(min_size=12, max_size=12),
    volume_id=ints(0, 2**32 - 1), boot_code=st.binary(min_size=420, max_size=420),
    total_sectors32=ints(0, 2**32 - 1), signature=st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.one_of(boot16, boot32))
def test_boot_sector_round_trip(bs):
    assert BootSector.parse(bs.emit()) == bs


@settings(max_examples=200, deadline=None)
@given(st.builds(ShortEntry, name=st.binary(min_size=11, max_size=11), attr=ints(0, 255),
                 ntres=ints(0, 255), ctime_cs=ints(0, 255), ctime=ints(0, 0xFFFF),
                 cdate=ints(0, 0xFFFF), adate=ints(0, 0xFFFF), cluster_hi=ints(0, 0xFFFF),
                 mtime=ints(0, 0xFFFF), mdate=ints(0, 0xFFFF), cluster_lo=ints(0, 0xFFFF),
                 size=ints(0, 2**32 - 1)))
def test_short_entry_round_trip(e):
    assert ShortEntry.parse(e.emit()) == e


@settings(max_examples=200, deadline=None)
@given(st.builds(LfnEntry, seq=ints(0, 255), chars=st.binary(min_size=26, max_size=26),
                 checksum=ints(0, 255), kind=ints(0, 255), cluster=ints(0, 0xFFFF)))
def test_lfn_entry_round_trip(e):
    assert LfnEntry.parse(e.emit()) == e


@settings(max_examples=100, deadline=None)
@given(ints(0, 2**32 - 1), ints(0, 2**32 - 1))
def test_fsinfo_round_trip(free, nxt):
    info = FsInfo(free, nxt)
    assert FsInfo.parse(info.emit()) == info


@given(st.binary(min_size=512, max_size=512))
def test_boot_sector_parse_never_crashes(raw):
    bs = BootSector.parse(raw)
    try:
        Geometry.from_boot(bs, 1 << 30)
    except KernelError as e:
        assert e.errno in (Errno.EINVAL, Errno.EUCLEAN)


def test_time_vectors():
    ns = 1_700_000_000 * 10**9            # 2023-11-14 22:13:20 UTC
    date, time, cs = to_fat(ns)
    assert date == (43 << 9) | (11 << 5) | 14
    assert time == (22 << 11) | (13 << 5) | 10
    assert cs == 0
    assert from_fat(date, time, cs) == ns
    assert to_fat(ns + 1_230_000_000)[2] == 123          # 1.23 s -> 123 centiseconds
    assert to_fat(ns, 3600)[1] == (23 << 11) | (13 << 5) | 10
    assert from_fat(date, time, 0, 3600) == ns - 3600 * 10**9
    assert to_fat(0)[0] == (0 << 9) | (1 << 5) | 1       # before 1980: clamped
    assert from_fat(0, 0xFFFF, 255) > 0                  # garbage decodes, never raises


@given(ints(315532800, 4354819199).map(lambda s: s * 10**9))
def test_time_round_trip_to_two_seconds(ns):
    d, t, _ = to_fat(ns)
    assert 0 <= ns - from_fat(d, t) < 2 * 10**9


@given(ints(0, 0xFFFF), ints(0, 0xFFFF), ints(0, 255))
def test_from_fat_total(date, time, cs):
    """Any 16+16+8 bits decode (garbage included) to a time inside FAT's range, 1980..2108,
    and valid fields decode to exactly what they say."""
    ns = from_fat(date, time, cs)
    assert isinstance(ns, int)
    assert 315532800 * 10**9 <= ns < 4354819200 * 10**9 + 2 * 10**9
    day, month = date & 0x1F, (date >> 5) & 0xF
    sec2, minute, hour = time & 0x1F, (time >> 5) & 0x3F, time >> 11
    if 1 <= day <= 28 and 1 <= month <= 12 and sec2 < 30 and minute < 60 and hour < 24 \
            and cs < 200:
        back = to_fat(ns)
        assert (back[0], back[1]) == (date, time)


@pytest.mark.parametrize("mode,name,want", [
    ("mixed", "README.TXT", (b"README  TXT", 0, False)),
    ("mixed", "readme.txt", (b"README  TXT", 0, True)),
    ("winnt", "readme.txt", (b"README  TXT", 0x18, False)),
    ("winnt", "README.txt", (b"README  TXT", 0x10, False)),
    ("winnt", "ReadMe.txt", (b"README  TXT", 0, True)),
    ("mixed", "Program Files", (b"PROGRA~1   ", 0, True)),
    ("mixed", ".bashrc", (b"BASHRC~1   ", 0, True)),
    ("mixed", "a.b.c", (b"AB~1    C  ", 0, True)),
    ("mixed", "file+plus;x.txt", (b"FILE_P~1TXT", 0, True)),
    ("mixed", "café.txt", (b"CAF_~1  TXT", 0, True)),
    ("mixed", "x.jpeg", (b"X~1     JPE", 0, True)),
])
def test_short_name_plans(mode, name, want):
    assert ShortNamer(mode).plan(name, lambda n: False, {}) == want


def test_short_name_tails_skip_taken():
    taken = {b"PROGRA~1   ", b"PROGRA~2   "}
    hints: dict[str, int] = {}
    namer = ShortNamer("mixed")
    assert namer.plan("Program Files", taken.__contains__, hints)[0] == b"PROGRA~3   "
    taken.update(b"PROGRA~%d   " % i for i in range(3, 10))
    assert namer.plan("Program Files", taken.__contains__, hints)[0] == b"PROGR~10   "


@pytest.mark.parametrize("bad,errno", [
    (b"a:b", Errno.EINVAL), (b"a*", Errno.EINVAL), (b"tab\there", Errno.EINVAL),
    (b"...", Errno.EINVAL), (b"trailing ", Errno.EINVAL), (b"\xff\xfe", Errno.EILSEQ),
    ("é".encode() * 256, Errno.ENAMETOOLONG), (b"..", Errno.EINVAL),
])
def test_check_long_refuses(bad, errno):
    with pytest.raises(KernelError) as ei:
        check_long(bad)
    assert ei.value.errno == errno


def test_check_long_accepts():
    assert check_long("日本語 ファイル.txt".encode()) == "日本語 ファイル.txt"
    assert check_long(b"x" * 255) == "x" * 255


def test_check_long_drops_trailing_dots():
    from rumpkernel.fs.msdos.names import check_long, fold

    assert check_long(b"trailing.") == "trailing" == check_long(b"trailing...")
    assert fold("Name..") == fold("name")
