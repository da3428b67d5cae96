"""Packet captures to host files: the classic pcap format (what tcpdump -w writes and tshark -r
reads) and the host side of an interface's capture tap.  The format is declared here once;
``shmif_dumpbus`` writes it too.

Interface (``host.companion("pcap", 1)``):
    open(path, linktype) -> Writer      create or truncate ``path``; Writer.write(frame, ts_ns),
                                        Writer.close(); EACCES/ENOENT/... as HostError
Format:
    file_header(linktype, snaplen=65535) -> 24 bytes      little-endian, microsecond stamps
    record(ts_ns, frame, snaplen=65535) -> bytes          one packet record (truncated to snaplen)
    PcapHeader(linktype, snaplen, nanoseconds, big_endian)
    parse_header(buf) -> PcapHeader                       FormatError for an unknown magic
    iter_records(buf, header) -> (ts_ns, orig_len, data)  from offset 24; FormatError for a
                                                          record that runs past the end
    FormatError                                           a ValueError
    LINKTYPE_NULL (BSD loopback), LINKTYPE_ETHERNET, LINKTYPE_RAW
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rumpkernel.hypercall.interface import HostError

VERSION = 1
HOSTS = ("posix", "sim")
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW = 0, 1, 101
MAGIC_US, MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
HEADER_LEN = 24
RECORD_HEADER_LEN = 16
_FILE = struct.Struct("<IHHiIII")
_REC = struct.Struct("<IIII")


class FormatError(ValueError):
    def __init__(self, what: str, reason: str = "field") -> None:
        super().__init__(what)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PcapHeader:
    linktype: int
    snaplen: int
    nanoseconds: bool = False
    big_endian: bool = False


def file_header(linktype: int, snaplen: int = 65535) -> bytes:
    return _FILE.pack(MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def record(ts_ns: int, frame: bytes, snaplen: int = 65535) -> bytes:
    sec, ns = divmod(ts_ns, 1_000_000_000)
    data = frame[:snaplen]
    return _REC.pack(sec & 0xFFFFFFFF, ns // 1000, len(data), len(frame)) + data


def parse_header(buf: bytes) -> PcapHeader:
    if len(buf) < HEADER_LEN:
        raise FormatError("pcap file header", "short")
    for endian in ("<", ">"):
        magic, _maj, _min, _tz, _sig, snaplen, linktype = struct.unpack_from(endian + "IHHiIII",
                                                                               buf)
        if magic in (MAGIC_US, MAGIC_NS):
            return PcapHeader(linktype, snaplen, magic == MAGIC_NS, endian == ">")
    raise FormatError("not a pcap file (bad magic)", "field")


def iter_records(buf: bytes, header: PcapHeader) -> Iterator[tuple[int, int, bytes]]:
    rec = struct.Struct((">" if header.big_endian else "<") + "IIII")
    scale = 1 if header.nanoseconds else 1000
    pos = HEADER_LEN
    while pos < len(buf):
        if pos + RECORD_HEADER_LEN > len(buf):
            raise FormatError("pcap record header truncated", "short")
        sec, frac, incl, orig = rec.unpack_from(buf, pos)
        pos += RECORD_HEADER_LEN
        if pos + incl > len(buf):
            raise FormatError("pcap record truncated", "short")
        yield sec * 1_000_000_000 + frac * scale, orig, bytes(buf[pos : pos + incl])
        pos += incl


class Writer:
    """A capture file being written through the host's file calls (so the sim host keeps it
    in memory)."""

    def __init__(self, host: Any, path: str, linktype: int) -> None:
        self.host = host
        self.path = path
        self.handle = host.file_open(path, True, True)
        host.file_truncate(self.handle, 0)
        hdr = file_header(linktype)
        host.file_pwrite(self.handle, 0, hdr)
        self.pos = len(hdr)

    def write(self, frame: bytes, ts_ns: int) -> None:
        rec = record(ts_ns, frame)
        self.host.file_pwrite(self.handle, self.pos, rec)
        self.pos += len(rec)

    def close(self) -> None:
        self.host.file_close(self.handle)


class PcapCompanion:
    def __init__(self, host: Any) -> None:
        self.host = host

    def open(self, path: str, linktype: int) -> Writer:
        if not path:
            raise HostError("EINVAL", "pcap: empty path")
        return Writer(self.host, path, linktype)


def companion(host: Any) -> PcapCompanion:
    return PcapCompanion(host)
