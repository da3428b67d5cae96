"""The crash-point test bed: record a workload's block I/O, then rebuild the image as a power cut
at any point would have left it (dm-log-writes + CrashMonkey, in Python).

Recording
    rec = Recorder(dev)               a BlockDevice wrapper (any ``vfs.bio.BlockDevice``): every
                                      ``pwrite``, ``flush`` and ``pwrite_fua`` goes to the device
                                      *and* into ``rec.log`` in issue order; ``rec.base`` is the
                                      device's bytes when recording started
    rec.mark(label)                   a named point in the log (e.g. "fsync a done")
    rec.expect(path, data)            from here on, a crash must leave ``path`` reading ``data``
                                      (call it right after the fsync that made it durable);
                                      ``rec.expect(path, None)`` ends the promise (the workload
                                      is about to change the file again)
    install(k, rec_factory)           hook a kernel: every block device the VFS makes over a host
                                      file (``mount_image``, etfs "blk") is wrapped by
                                      ``rec_factory(dev)``; drivers are untouched

Crash states
    crash_points(log) -> [int]        every point a power cut can fall on: after each write
                                      (a cut inside a flush is a cut before it)
    CrashState                        ``point``, ``persisted`` (log indices of the unflushed
                                      writes that reached the disk, in the order they did),
                                      ``image(base, log)`` -> bytearray, ``label``
    crash_states(log, rng, per_point=4, torn=False)
                                      for each point: everything before the last flush is on
                                      disk; of the writes after it, the states are "none",
                                      "all in order" and up to ``per_point`` seeded random
                                      subsets in random order (overlapping writes may land in
                                      either order).  ``torn=True`` also splits multi-sector
                                      writes, each sector landing on its own.
    sample(states, n, rng)            a seeded sample of at most ``n`` states (always keeping
                                      every in-order state)
    expectations_at(rec, point)       {path: data} promised at ``point``

Checking
    fsck_fat(image) -> [problems]     ``fsck.fat -n`` lines beyond what a crash may leave on FAT
                                      (leaked clusters, a wrong or unknown free count, the
                                      dirty bit); [] means acceptable
    e2fsck(image) -> [problems]       ``e2fsck -fn`` after replaying the journal on a copy
                                      (``e2fsck -E journal_only -y``); [] when clean
    read_back(image, paths, fstype=None) -> {path: bytes | OSError}
                                      mount the image read-only in a fresh kernel (journal
                                      replay is the driver's) and read each path

Rules: the log holds copies of the data written (memory grows with the workload: keep
workloads small); the base image is read once.  Rebuilding a state copies ``base`` and applies
writes, so cost is O(image + log) per state.  Everything here is test-only (``testing/`` may use
the host freely).
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

WRITE, FLUSH, FUA = "write", "flush", "fua"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One device request: ``kind`` is write, flush or fua; writes carry offset and data."""

    kind: str
    offset: int = 0
    data: bytes = b""


@dataclass(slots=True)
class Promise:
    start: int                 # log length when made
    end: int | None            # log length when withdrawn (None: still in force)
    path: str
    data: bytes


class Recorder:
    """A BlockDevice that logs writes, flushes and FUA writes on their way to ``dev``."""

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.name = dev.name
        self.size = dev.size
        self.sector_size = dev.sector_size
        self.readonly = dev.readonly
        self.base = bytes(dev.pread(0, dev.size))
        self.log: list[LogEntry] = []
        self.marks: list[tuple[int, str]] = []
        self.promises: list[Promise] = []

    def __getattr__(self, name: str) -> Any:      # e.g. ``file`` of a host block device
        if name == "dev":
            raise AttributeError(name)
        return getattr(self.dev, name)

    def pread(self, offset: int, length: int) -> bytes:
        return self.dev.pread(offset, length)

    def pwrite(self, offset: int, data: bytes) -> None:
        self.dev.pwrite(offset, data)
        self.log.append(LogEntry(WRITE, offset, bytes(data)))

    def pwrite_fua(self, offset: int, data: bytes) -> None:
        """A write that is durable when it returns (forced unit access)."""
        self.dev.pwrite(offset, data)
        self.dev.flush()
        self.log.append(LogEntry(FUA, offset, bytes(data)))

    def flush(self) -> None:
        self.dev.flush()
        self.log.append(LogEntry(FLUSH))

    def mark(self, label: str) -> None:
        self.marks.append((len(self.log), label))

    def expect(self, path: str, data: bytes | None) -> None:
        for p in self.promises:
            if p.path == path and p.end is None:
                p.end = len(self.log)
        if data is not None:
            self.promises.append(Promise(len(self.log), None, path, bytes(data)))


def install(k: Any, factory: Callable[[Any], Any]) -> None:
    """Wrap every block device the kernel's VFS creates over a host file with ``factory``."""
    k.vfs.api.device_filters.append(factory)


# -- crash states ------------------------------------------------------------------------------
def crash_points(log: Sequence[LogEntry]) -> list[int]:
    """Log lengths at which a cut may fall: 0 and after every write (flushes add none)."""
    return [0] + [i + 1 for i, e in enumerate(log) if e.kind != FLUSH]


def _last_barrier(log: Sequence[LogEntry], point: int) -> int:
    """Index just after the last flush/FUA before ``point`` (writes before it are durable)."""
    for i in range(point - 1, -1, -1):
        if log[i].kind == FLUSH:
            return i + 1
    return 0


@dataclass(frozen=True, slots=True)
class CrashState:
    point: int
    persisted: tuple[int | tuple[int, int], ...]   # log index, or (index, sector) when torn
    label: str = ""

    def image(self, base: bytes, log: Sequence[LogEntry], sector: int = 512) -> bytearray:
        img = bytearray(base)
        barrier = _last_barrier(log, self.point)
        for e in log[:barrier]:
            if e.kind != FLUSH:
                img[e.offset : e.offset + len(e.data)] = e.data
        for i in range(barrier, self.point):        # FUA writes are durable on their own
            e = log[i]
            if e.kind == FUA:
                img[e.offset : e.offset + len(e.data)] = e.data
        for p in self.persisted:
            if isinstance(p, tuple):
                e = log[p[0]]
                lo = p[1] * sector
                img[e.offset + lo : e.offset + lo + sector] = e.data[lo : lo + sector]
            else:
                e = log[p]
                img[e.offset : e.offset + len(e.data)] = e.data
        return img


def _pending(log: Sequence[LogEntry], point: int, torn: bool,
             sector: int) -> list[int | tuple[int, int]]:
    out: list[int | tuple[int, int]] = []
    for i in range(_last_barrier(log, point), point):
        e = log[i]
        if e.kind != WRITE:
            continue
        n = len(e.data) // sector
        if torn and n > 1:
            out.extend((i, s) for s in range(n))
        else:
            out.append(i)
    return out


def crash_states(log: Sequence[LogEntry], rng: random.Random, per_point: int = 4,
                 torn: bool = False, sector: int = 512) -> Iterator[CrashState]:
    for point in crash_points(log):
        pending = _pending(log, point, torn, sector)
        yield CrashState(point, tuple(pending), "in order")
        if not pending:
            continue
        yield CrashState(point, (), "none of the unflushed")
        seen: set[tuple] = {tuple(pending), ()}
        for _ in range(per_point):
            k = rng.randrange(1, len(pending) + 1) if len(pending) > 1 else 1
            pick = rng.sample(pending, k)
            key = tuple(pick)
            if key not in seen:
                seen.add(key)
                yield CrashState(point, key, f"{k} of {len(pending)} unflushed, reordered")


def sample(states: Iterable[CrashState], n: int, rng: random.Random) -> list[CrashState]:
    """At most ``n`` states: every "in order" one, the rest drawn at random (seeded)."""
    states = list(states)
    base = [s for s in states if s.label == "in order"]
    rest = [s for s in states if s.label != "in order"]
    room = max(0, n - len(base))
    if len(base) > n:
        base = rng.sample(base, n)
        room = 0
    return sorted(base + rng.sample(rest, min(room, len(rest))),
                  key=lambda s: (s.point, s.label))


def expectations_at(rec: Recorder, point: int) -> dict[str, bytes]:
    """What must read back after a cut at ``point``: promises made at or before it and still
    in force there (a promise withdrawn after ``point`` still binds)."""
    out: dict[str, bytes] = {}
    for p in rec.promises:
        if p.start <= point and (p.end is None or p.end > point):
            out[p.path] = p.data
    return out


# -- checking ----------------------------------------------------------------------------------
FAT_ALLOWED = ("Reclaimed ", "Free cluster summary", "Leaving filesystem unchanged", "fsck.fat ",
               "  Auto-correcting", "Dirty bit is set", " Automatically removing dirty bit",
               "Filesystem was changed", "Checking we can access", "Boot sector contents")
_ENV = dict(os.environ, LC_ALL="C.UTF-8", TZ="UTC", MTOOLS_SKIP_CHECK="1")


def _with_file(image: bytes | bytearray, fn: Callable[[str], Any]) -> Any:
    fd, path = tempfile.mkstemp(prefix=f"crashbed-{os.getpid()}-", suffix=".img")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(image)
        return fn(path)
    finally:
        os.unlink(path)


def fsck_fat(image: bytes | bytearray) -> list[str]:
    """Problems ``fsck.fat -n`` reports beyond leaked clusters / free count / dirty bit."""

    def run(path: str) -> list[str]:
        r = subprocess.run(["fsck.fat", "-n", path], env=_ENV, capture_output=True, timeout=120)
        lines = (r.stdout + r.stderr).decode("utf-8", "replace").splitlines()
        bad = [ln for ln in lines if ln.strip() and not ln.startswith(FAT_ALLOWED)
               and not ln.startswith(path)]
        if r.returncode not in (0, 1):
            bad.append(f"fsck.fat exit {r.returncode}")
        return bad

    return _with_file(image, run)


def e2fsck(image: bytes | bytearray) -> list[str]:
    """Problems ``e2fsck -fn`` reports after the journal is replayed (on a copy)."""

    def run(path: str) -> list[str]:
        subprocess.run(["e2fsck", "-E", "journal_only", "-y", path], env=_ENV,
                       capture_output=True, timeout=120)
        r = subprocess.run(["e2fsck", "-fn", path], env=_ENV, capture_output=True, timeout=120)
        if r.returncode == 0:
            return []
        lines = [ln for ln in r.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
        return [*lines[:40], f"e2fsck exit {r.returncode}"]

    return _with_file(image, run)


def read_back(image: bytes | bytearray, paths: Iterable[str],
              fstype: str | None = None) -> dict[str, bytes | OSError]:
    """Mount ``image`` read-only in a fresh kernel and read ``paths`` (relative to its root)."""
    import rumpkernel

    def run(path: str) -> dict[str, bytes | OSError]:
        k = rumpkernel.boot()
        out: dict[str, bytes | OSError] = {}
        try:
            k.mount_image(path, "/crash", fstype=fstype, readonly=True)
            for p in paths:
                try:
                    out[p] = _read_all(k.sys, "/crash/" + p.lstrip("/"))
                except OSError as e:
                    out[p] = e
        finally:
            k.halt()
        return out

    return _with_file(image, run)


def _read_all(sys: Any, path: str) -> bytes:
    fd = sys.open(path, os.O_RDONLY)
    try:
        parts = []
        while True:
            b = sys.read(fd, 1 << 20)
            if not b:
                return b"".join(parts)
            parts.append(b)
    finally:
        sys.close(fd)


@dataclass
class Verdict:
    """What went wrong at one crash state (empty lists: it was fine)."""

    state: CrashState
    fsck: list[str] = field(default_factory=list)
    lost: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.fsck and not self.lost


def judge(rec: Recorder, state: CrashState, fsck: Callable[[bytearray], list[str]],
          read: Callable[[bytearray, list[str]], dict[str, bytes | OSError]]) -> Verdict:
    """Rebuild ``state``, run ``fsck`` on it and check every promise with ``read``."""
    img = state.image(rec.base, rec.log, rec.sector_size)
    v = Verdict(state, fsck(img))
    want = expectations_at(rec, state.point)
    if want:
        got = read(img, list(want))
        for p, data in want.items():
            g = got.get(p)
            if isinstance(g, OSError) or g is None:
                v.lost[p] = f"unreadable: {g}"
            elif g != data:
                v.lost[p] = f"{len(g)} bytes read, {len(data)} fsync'd"
    return v
