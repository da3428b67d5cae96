"""Host side of shmif: an Ethernet bus shared by kernels in any number of processes through one
host file (the dissertation's shared-memory bus, shmif(4)).

The bus file is a ring of frames behind a header; the file name is the bus's name.  Writers
take an exclusive ``flock`` on the file, append the frame, advance the header's pointers and
bump its generation; readers take a shared lock to read what is new.  A reader waits for a
change with inotify (a pwrite is a modification), falling back to polling with a bounded
back-off where inotify is missing.  The file always holds the last ring's worth of traffic, for
``shmif_dumpbus``.

Bus layout (little-endian; declared here once, ``shmif_dumpbus`` reads it too):
    header  HEADER = "<IIQQQI28x" (64 bytes): magic "SHMF", version, generation, first, last,
            ringsize -- ``first``/``last`` are absolute byte positions of the oldest record and
            of the end of the newest; a record at position p lives at HEADER_LEN + p % ringsize
            and may wrap around the ring's end
    record  RECORD = "<IIII" (16 bytes): frame length, seconds, microseconds, sender id; then
            the frame

Interface (``host.companion("shmif", 1)``):
    attach(path, ringsize=RING_SIZE) -> Port    open or create the bus; EINVAL / EPROTO for a
                                                file that is not a bus
    Port.send(frame) / Port.recv() -> bytes | None (None once closed) / Port.close() /
    Port.info()                                 frames of the port itself are not received
    read_bus(raw) -> (header dict, [(sec, usec, sender, frame)])   parse a whole bus file
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import errno as _errno
import fcntl
import os
import select
import struct
import time
from typing import Any

from rumpkernel.hypercall.interface import HostError

VERSION = 1
HOSTS = ("posix",)
MAGIC = 0x464D4853            # b"SHMF" little-endian
BUS_VERSION = 1
HEADER = struct.Struct("<IIQQQI28x")
HEADER_LEN = HEADER.size
RECORD = struct.Struct("<IIII")
RECORD_LEN = RECORD.size
RING_SIZE = 1 << 20
MAX_FRAME = 65535
READ_CHUNK = 256 * 1024
IN_MODIFY, IN_NONBLOCK, IN_CLOEXEC = 0x2, 0o4000, 0o2000000
POLL_MIN_S, POLL_MAX_S = 0.0002, 0.01


def _err(e: OSError, what: str) -> HostError:
    return HostError(_errno.errorcode.get(e.errno or 0, "EIO"), f"shmif {what}: {e.strerror}")


class _Inotify:
    """A file-change doorbell (None where the host has no inotify)."""

    _libc: Any = None

    @classmethod
    def make(cls, path: str) -> _Inotify | None:
        if cls._libc is None:
            name = ctypes.util.find_library("c")
            try:
                cls._libc = ctypes.CDLL(name, use_errno=True)
                _ = cls._libc.inotify_init1     # AttributeError where there is none
            except (OSError, AttributeError):
                cls._libc = False
        if not cls._libc:
            return None
        fd = cls._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            return None
        if cls._libc.inotify_add_watch(fd, os.fsencode(path), IN_MODIFY) < 0:
            os.close(fd)
            return None
        return cls(fd)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)


def _ring_read(fd: int, ringsize: int, pos: int, n: int) -> bytes:
    off = pos % ringsize
    first = min(n, ringsize - off)
    data = os.pread(fd, first, HEADER_LEN + off)
    if first < n:
        data += os.pread(fd, n - first, HEADER_LEN)
    return data


def _ring_write(fd: int, ringsize: int, pos: int, data: bytes) -> None:
    off = pos % ringsize
    first = min(len(data), ringsize - off)
    os.pwrite(fd, data[:first], HEADER_LEN + off)
    if first < len(data):
        os.pwrite(fd, data[first:], HEADER_LEN)


class Port:
    def __init__(self, path: str, ringsize: int) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise _err(e, f"open {path}") from None
        try:
            self.ringsize = self._init(ringsize)
            self.sender = struct.unpack("<I", os.urandom(4))[0]
            self.next = self._header()[4]       # start at the end: no old traffic
            self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        except BaseException:
            os.close(self.fd)
            raise
        self.notify = _Inotify.make(path)
        self.pending: collections.deque[bytes] = collections.deque()
        self.closed = False
        self.sent = self.received = self.lost = self.errors = 0

    # ---- the bus file --------------------------------------------------------------------------
    def _header(self) -> tuple[int, ...]:
        raw = os.pread(self.fd, HEADER_LEN, 0)
        if len(raw) < HEADER_LEN:
            raise HostError("EINVAL", f"shmif: {self.path} is not a bus (short header)")
        return HEADER.unpack(raw)

    def _init(self, ringsize: int) -> int:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self.fd).st_size == 0:
                os.pwrite(self.fd, HEADER.pack(MAGIC, BUS_VERSION, 0, 0, 0, ringsize), 0)
                os.ftruncate(self.fd, HEADER_LEN + ringsize)
            magic, version, _gen, first, last, size = self._header()
            if magic != MAGIC:
                raise HostError("EINVAL", f"shmif: {self.path} is not a bus (bad magic)")
            if version != BUS_VERSION:
                raise HostError("EPROTO", f"shmif: {self.path}: bus version {version}")
            if not RECORD_LEN + MAX_FRAME < size <= 1 << 30 or not 0 <= last - first <= size:
                raise HostError("EINVAL", f"shmif: {self.path}: damaged bus header")
            return size
        except OSError as e:
            raise _err(e, f"init {self.path}") from None
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def send(self, frame: bytes) -> None:
        if len(frame) > MAX_FRAME:
            raise HostError("EMSGSIZE", f"shmif: frame of {len(frame)} bytes")
        now = time.time()
        rec = RECORD.pack(len(frame), int(now), int(now % 1 * 1e6), self.sender) + frame
        fd, size = self.fd, self.ringsize
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                _m, _v, gen, first, last, _s = self._header()
                _ring_write(fd, size, last, rec)
                last += len(rec)
                while last - first > size:           # the oldest records are overwritten
                    (n,) = struct.unpack_from("<I", _ring_read(fd, size, first, 4))
                    if n > MAX_FRAME:                # damaged: start the ring over
                        first = last - len(rec)
                        break
                    first += RECORD_LEN + n
                os.pwrite(fd, HEADER.pack(MAGIC, BUS_VERSION, gen + 1, first, last, size), 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as e:
            raise _err(e, "send") from None
        self.sent += 1

    def _poll_bus(self) -> None:
        """Read every record that arrived since the last call into ``pending``."""
        fd, size = self.fd, self.ringsize
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            _m, _v, _gen, first, last, _s = self._header()
            if self.next < first or self.next > last:
                self.lost += max(0, first - self.next)
                self.next = first if self.next < first else last
            if self.next == last:
                return
            n = min(last - self.next, READ_CHUNK)
            chunk = _ring_read(fd, size, self.next, n)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        pos = 0
        while pos + RECORD_LEN <= len(chunk):
            length, _sec, _usec, sender = RECORD.unpack_from(chunk, pos)
            if length > MAX_FRAME:
                self.errors += 1                     # damaged record: skip what we read
                pos = len(chunk)
                break
            if pos + RECORD_LEN + length > len(chunk):
                if pos == 0:                          # one record bigger than the chunk
                    self.next += RECORD_LEN + length
                break
            if sender != self.sender:
                self.pending.append(chunk[pos + RECORD_LEN : pos + RECORD_LEN + length])
            pos += RECORD_LEN + length
        self.next += pos

    def recv(self) -> bytes | None:
        delay = POLL_MIN_S
        while True:
            if self.closed:
                return None
            if self.pending:
                self.received += 1
                return self.pending.popleft()
            try:
                if self.notify is not None:
                    self.notify.drain()
                self._poll_bus()
            except OSError as e:
                if self.closed:
                    return None
                raise _err(e, "recv") from None
            if self.pending:
                continue
            if self.notify is not None:
                select.select([self.notify.fd, self.wake_r], [], [], 1.0)
            else:
                select.select([self.wake_r], [], [], delay)
                delay = min(delay * 2, POLL_MAX_S)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def release(self) -> None:
        """Free the host descriptors (after the receive thread has finished)."""
        for fd in (self.fd, self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    def info(self) -> dict[str, Any]:
        return {"bus": self.path, "sent": self.sent, "received": self.received,
                "lost": self.lost, "errors": self.errors, "inotify": self.notify is not None}


class ShmifCompanion:
    def attach(self, path: str, ringsize: int = RING_SIZE) -> Port:
        return Port(path, ringsize)


def companion(host: Any) -> ShmifCompanion:
    return ShmifCompanion()


def read_bus(raw: bytes) -> tuple[dict[str, int], list[tuple[int, int, int, bytes]]]:
    """Every record still in a bus file's ring, oldest first (no lock taken).  ValueError for
    a file that is not a bus; a damaged record ends the list."""
    if len(raw) < HEADER_LEN:
        raise ValueError("not a shmif bus: file shorter than the header")
    magic, version, gen, first, last, size = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise ValueError("not a shmif bus: bad magic")
    hdr = {"version": version, "generation": gen, "first": first, "last": last,
           "ringsize": size}
    if version != BUS_VERSION or len(raw) < HEADER_LEN + size or last - first > size:
        raise ValueError(f"unsupported or damaged bus (version {version})")
    ring = memoryview(raw)[HEADER_LEN : HEADER_LEN + size]

    def rd(pos: int, n: int) -> bytes:
        off = pos % size
        if off + n <= size:
            return bytes(ring[off : off + n])
        return bytes(ring[off:]) + bytes(ring[: n - (size - off)])

    out = []
    pos = first
    while pos + RECORD_LEN <= last:
        length, sec, usec, sender = RECORD.unpack(rd(pos, RECORD_LEN))
        if length > MAX_FRAME or pos + RECORD_LEN + length > last:
            break
        out.append((sec, usec, sender, rd(pos + RECORD_LEN, length)))
        pos += RECORD_LEN + length
    return hdr, out
