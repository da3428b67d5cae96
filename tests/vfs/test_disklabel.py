"""Partition tables from hostile bytes: bounded work, KernelError or a sane answer."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.kern.disklabel import partitions
from rumpkernel.kern.errno import KernelError


def _reader(disk: bytes):
    def read(off: int, n: int) -> bytes:
        if off < 0 or off + n > len(disk):
            raise KernelError(5, "read past end")
        return disk[off : off + n]
    return read


def mbr(parts: list[tuple[int, int, int]]) -> bytes:
    sector = bytearray(512)
    for i, (ptype, lba, count) in enumerate(parts):
        struct.pack_into("<B3xB3xII", sector, 446 + 16 * i, 0, ptype, lba, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def test_primary_and_logical_partitions() -> None:
    size = 64 << 20
    disk = bytearray(size)
    disk[:512] = mbr([(0x83, 2048, 4096), (0x05, 8192, 40000)])
    # extended chain: two logical partitions, the second EBR links on
    disk[8192 * 512 : 8193 * 512] = mbr([(0x83, 63, 1000), (0x05, 2000, 1100)])
    disk[10192 * 512 : 10193 * 512] = mbr([(0x0C, 63, 500)])
    got = [(p.number, p.offset // 512, p.size // 512, p.kind)
           for p in partitions(_reader(bytes(disk)), size)]
    assert got == [(1, 2048, 4096, "83"), (2, 8192, 40000, "05"),
                   (5, 8255, 1000, "83"), (6, 10255, 500, "0c")]


def test_ebr_loop_terminates() -> None:
    size = 8 << 20
    disk = bytearray(size)
    disk[:512] = mbr([(0x05, 100, 1000)])
    disk[100 * 512 : 101 * 512] = mbr([(0x83, 10, 10), (0x05, 0, 10)])   # links to itself
    parts = partitions(_reader(bytes(disk)), size)
    assert [p.number for p in parts] == [1, 5]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=512, max_size=4096), st.integers(1024, 1 << 30))
def test_garbage_tables(head: bytes, size: int) -> None:
    disk = head.ljust(4096, b"\0")
    if len(disk) >= 512:
        disk = disk[:510] + b"\x55\xaa" + disk[512:]
    try:
        for p in partitions(_reader(disk), min(size, len(disk))):
            assert p.offset >= 0 and p.offset + p.size <= min(size, len(disk))
    except KernelError:
        pass
