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
    expectations_at(rec, point)       the promises in force at ``point``
    judge(rec, state, fsck, read)     rebuild one state, fsck it, check its promises -> Verdict

Checking
    fsck_fat(image, allowed) -> [problems]
                                      ``fsck.fat -n`` findings beyond what a crash may leave on
                                      FAT (leaked clusters, also as a chain longer than its
                                      file; the free count; the dirty bit; FAT copies that
                                      differ); [] means acceptable.  ``fsck_fat_blocks`` gives
                                      the findings grouped by path for finer rules
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
import re
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
    path: str                  # or several alternatives, "a|b": one of them must hold data
    data: bytes
    prefix: bool = False       # the file must start with data (an appending log)


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

    def expect(self, path: str, data: bytes | None, prefix: bool = False) -> None:
        """Promise ``data`` at ``path`` from here on (``None`` withdraws the promise).
        ``path`` may list alternatives, ``"a|b"``: a rename in progress leaves the file at
        one of them.  ``prefix``: the file must start with ``data`` (a log being appended
        to keeps what it had when it was fsync'd)."""
        for p in self.promises:
            if p.path == path and p.end is None:
                p.end = len(self.log)
        if data is not None:
            self.promises.append(Promise(len(self.log), None, path, bytes(data), prefix))


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


def expectations_at(rec: Recorder, point: int) -> list[Promise]:
    """What must read back after a cut at ``point``: promises made at or before it and still
    in force there (a promise withdrawn after ``point`` still binds)."""
    return [p for p in rec.promises if p.start <= point and (p.end is None or p.end > point)]


def kept(p: Promise, got: dict[str, bytes | OSError]) -> bool:
    """Whether what was read (``got``: path -> bytes or error) keeps promise ``p``."""
    for path in p.path.split("|"):
        g = got.get(path)
        if isinstance(g, bytes) and (g.startswith(p.data) if p.prefix else g == p.data):
            return True
    return False


# -- checking ----------------------------------------------------------------------------------
FAT_ALLOWED = ("Reclaimed ", "Free cluster summary", "Leaving filesystem unchanged", "fsck.fat ",
               "Dirty bit is set", "Automatically removing dirty bit", "Filesystem was changed",
               "Checking we can access", "Boot sector contents", "Auto-correcting",
               # mirrored FATs are written one copy after the other: a cut between them
               # leaves them different, and fsck (like our driver after a crash) uses FAT 1
               "FATs differ but appear to be intact", "Using first FAT")
# a chain longer than its file's size: clusters allocated before the size was written, or a
# shrink whose chain cut had not landed -- fsck.fat trims the chain, which is a leak
FAT_LEAK_LIKE = re.compile(r"File size is \d+ bytes, cluster chain length is > \d+ bytes\.|"
                           r"Truncating file to \d+ bytes\.")
_ENV = dict(os.environ, LC_ALL="C.UTF-8", TZ="UTC", MTOOLS_SKIP_CHECK="1")


@dataclass(frozen=True, slots=True)
class FsckBlock:
    """One finding of fsck.fat: the paths it names (empty for volume-wide messages) and its
    message lines (stripped)."""

    paths: tuple[str, ...]
    messages: tuple[str, ...]


def _with_file(image: bytes | bytearray, fn: Callable[[str], Any]) -> Any:
    fd, path = tempfile.mkstemp(prefix=f"crashbed-{os.getpid()}-", suffix=".img")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(image)
        return fn(path)
    finally:
        os.unlink(path)


def fsck_fat_blocks(image: bytes | bytearray) -> list[FsckBlock]:
    """``fsck.fat -n`` findings, grouped: a path line ("/a  and" + "/b" for two) and the
    indented lines after it form one block; other lines stand alone."""

    def run(path: str) -> list[FsckBlock]:
        r = subprocess.run(["fsck.fat", "-n", path], env=_ENV, capture_output=True, timeout=120)
        lines = (r.stdout + r.stderr).decode("utf-8", "replace").splitlines()
        blocks: list[tuple[list[str], list[str]]] = []
        joined = False
        for ln in lines:
            if not ln.strip() or ln.startswith(path):
                continue
            if ln.startswith("/"):
                name = ln.removesuffix("  and")
                if joined:
                    blocks[-1][0].append(name)
                else:
                    blocks.append(([name], []))
                joined = ln.endswith("  and")
            elif ln.startswith(" ") and blocks:
                blocks[-1][1].append(ln.strip())
                joined = False
            else:
                blocks.append(([], [ln.strip()]))
                joined = False
        out = [FsckBlock(tuple(p), tuple(m)) for p, m in blocks]
        if r.returncode not in (0, 1):
            out.append(FsckBlock((), (f"fsck.fat exit {r.returncode}",)))
        return out

    return _with_file(image, run)


def fat_block_allowed(b: FsckBlock) -> bool:
    """Whether a finding is one a crash may leave on FAT (leaks, counts, the dirty bit)."""
    if not b.paths:
        return all(m.startswith(FAT_ALLOWED) for m in b.messages)
    return bool(b.messages) and all(FAT_LEAK_LIKE.fullmatch(m) for m in b.messages)


def fsck_fat(image: bytes | bytearray,
             allowed: Callable[[FsckBlock], bool] = fat_block_allowed) -> list[str]:
    """Findings of ``fsck.fat -n`` that ``allowed`` rejects, one line each; [] means fine."""
    return [" / ".join(b.paths + b.messages) for b in fsck_fat_blocks(image) if not allowed(b)]


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
        paths = sorted({path for p in want for path in p.path.split("|")})
        got = read(img, paths)
        for p in want:
            if not kept(p, got):
                seen = {q: (len(g) if isinstance(g, bytes) else str(g))
                        for q in p.path.split("|") for g in [got.get(q)]}
                v.lost[p.path] = f"{len(p.data)} bytes fsync'd; read: {seen}"
    return v
