"""The file allocation table, cached whole in memory.

Interface:
    FatTable(bio, geo)          -- load the active FAT (copy 0, or the one FAT32 ext_flags names)
    .chain(start) -> list[int]  -- the cluster chain from ``start``; EUCLEAN on a free, reserved,
                                   bad or out-of-range link, or a chain longer than the volume
                                   (a cycle).  Work is bounded by the cluster count.
    .allocate(n, near) -> list  -- ``n`` free clusters (contiguous from ``near`` when possible),
                                   linked into a chain ending in EOC; ENOSPC when fewer are free.
    .link(prev, first)          -- make ``prev`` point at ``first`` (on disk only after the
                                   clusters it links: see ``flush``)
    .unallocate(clusters)       -- undo an allocation nothing uses yet
    .free_chain(clusters)       -- free clusters, deferred: they stay used (on disk and for the
                                   allocator) until ``commit_frees``
    .set_eoc(c)                 -- terminate a chain at ``c`` (on disk at ``commit_frees`` too)
    .commit_frees() -> bool     -- apply deferred frees and cuts (phase 3 of a sync)
    .ensure_free(n)             -- commit pending frees (``short_hook``) when only they make room
    .clean / .set_clean(flag)   -- the FAT16/32 "volume clean" bit in FAT[1]
    .flush() -> bool            -- write dirty FAT sectors to every mirrored FAT copy, straight
                                   to the device (``BlockIO.write_run``); the caller barriers.
                                   With links made since the last flush it writes twice: every
                                   sector with the links' old values, a barrier, then the
                                   sectors holding the links
    .free_count, .next_free     -- for statfs and the FAT32 FSInfo sector
    .pin(c)                     -- never allocate free cluster ``c`` (a directory entry uses it)
    .merge_copies() -> (merged, conflicts)
                                -- compare every other FAT copy with the active one: where one
                                   copy says free and another in use, take "in use" (a zeroed
                                   FAT1 entry must not hand out a cluster a chain still uses) --
                                   in memory only: the disk keeps the old value until the
                                   driver itself changes that entry;
                                   returns how many entries were merged and a list of
                                   (cluster, value, other) where both are in use but differ

Rules: entries are kept in an ``array`` (FAT12 also keeps its packed bytes); the top 4 bits of
FAT32 entries are preserved on update.  Crash ordering (see ``vfsops.sync``): allocations and
links reach the disk before the directory entries that use them; frees and chain cuts only
after the entries that dropped them -- so a cut can only leak clusters.  A link that grows a
chain reaches the disk after the new clusters' own entries (their links and end mark), never
in the same unordered batch: a chain never runs into a free cluster.  Only the sectors
touched since the last flush are written, to each FAT copy (or only the active one when FAT32
mirroring is off).
"""

from __future__ import annotations

import itertools
from array import array

from rumpkernel.fs.msdos.layout import Geometry
from rumpkernel.kern.errno import Errno, KernelError, corrupt
from rumpkernel.vfs.bio import BlockIO

_EOC = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}
_MASK = {12: 0xFFF, 16: 0xFFFF, 32: 0x0FFFFFFF}
_CLEAN_BIT = {16: 0x8000, 32: 0x08000000}
_BIG = array("H", [1]).tobytes() == b"\x00\x01"  # host byte order, without sys
_LOAD_CHUNK = 2048


class FatTable:
    __slots__ = ("_deferred", "_dirty", "_links", "_raw12", "_shadow", "arr", "bio", "bits",
                 "eoc",
                 "free_count", "geo", "mask", "max_cluster", "next_free", "pending_free",
                 "short_hook")

    def __init__(self, bio: BlockIO, geo: Geometry) -> None:
        self.bio = bio
        self.geo = geo
        self.bits = geo.fat_bits
        self.eoc = _EOC[self.bits]
        self.mask = _MASK[self.bits]
        self.max_cluster = geo.max_cluster
        self._dirty: set[int] = set()
        self._shadow: dict[int, int] = {}
        self._deferred: dict[int, int] = {}
        self._links: dict[int, int] = {}      # cluster -> its value on disk before link()
        self.pending_free: list[int] = []
        self.short_hook = None
        raw = self._load()
        self._raw12: bytearray | None = None
        if self.bits == 12:
            self._raw12 = bytearray(raw)
        self.arr = self._parse(raw)
        if len(self.arr) < self.max_cluster + 1:
            raise corrupt("msdos: FAT shorter than the cluster count")
        self.free_count = self.arr[2 : self.max_cluster + 1].count(0)
        self.next_free = 2

    def _load(self, copy: int | None = None) -> bytes:
        geo = self.geo
        copy = (geo.active_fat or 0) if copy is None else copy
        first = geo.reserved + copy * geo.fat_sectors
        # only the part of the FAT that describes existing clusters (a hostile FAT size
        # must not make us read or hold more than the volume's clusters need)
        need = -(-(geo.max_cluster + 1) * self.bits // 8 // geo.sector_size) + 1
        count = min(geo.fat_sectors, need)
        parts = []
        for s in range(0, count, _LOAD_CHUNK):
            parts.append(self.bio.read_run(first + s, min(_LOAD_CHUNK, count - s)))
        return b"".join(parts)

    def _parse(self, raw: bytes) -> array:
        if self.bits == 12:
            return _unpack12(raw)
        arr = array("H" if self.bits == 16 else "I")
        usable = len(raw) - len(raw) % arr.itemsize
        arr.frombytes(raw[:usable])
        if _BIG:
            arr.byteswap()
        return arr

    def merge_copies(self) -> tuple[int, list[tuple[int, int, int]]]:
        geo = self.geo
        if geo.active_fat is not None or geo.num_fats < 2:
            return 0, []
        merged = 0
        conflicts: list[tuple[int, int, int]] = []
        for k in range(1, geo.num_fats):
            other = self._parse(self._load(k))
            for c in _differing(self.arr, other, 2, self.max_cluster + 1):
                a, b = self.arr[c] & self.mask, other[c] & self.mask
                if a == b or b == 0:
                    continue
                if a == 0:
                    self._shadow.setdefault(c, self.arr[c])
                    self.arr[c] = other[c]
                    merged += 1
                else:
                    conflicts.append((c, a, b))
        if merged:
            self.free_count = self.arr[2 : self.max_cluster + 1].count(0)
        return merged, conflicts

    def pin(self, c: int) -> None:
        """Treat free cluster ``c`` as used (in memory only: the disk entry stays 0)."""
        if self.arr[c] & self.mask == 0:
            self._shadow.setdefault(c, self.arr[c])
            self.arr[c] = self.arr[c] | self.mask
            self.free_count -= 1

    # -- reading ----------------------------------------------------------------------------
    def get(self, c: int) -> int:
        return self.arr[c] & self.mask

    def chain(self, start: int) -> list[int]:
        """Clusters of the chain starting at ``start`` (EUCLEAN on any bad link)."""
        arr, mask, eoc, top = self.arr, self.mask, self.eoc, self.max_cluster
        if not 2 <= start <= top:
            raise corrupt(f"msdos: chain starts at cluster {start} (valid 2..{top})")
        out = [start]
        c = start
        limit = top
        while True:
            v = arr[c] & mask
            if v >= eoc:
                return out
            if v < 2 or v > top:
                raise corrupt(f"msdos: cluster {c} links to {v:#x}")
            out.append(v)
            if len(out) > limit:
                raise corrupt(f"msdos: cluster chain from {start} loops")
            c = v

    # -- writing ----------------------------------------------------------------------------
    def _set(self, c: int, v: int) -> None:
        if self._shadow:
            self._shadow.pop(c, None)
        if self._deferred:
            self._deferred.pop(c, None)
        if self._links:
            self._links.pop(c, None)
        bits = self.bits
        if bits == 32:
            self.arr[c] = (self.arr[c] & 0xF0000000) | v
            self._dirty.add(c * 4 // self.geo.sector_size)
        elif bits == 16:
            self.arr[c] = v
            self._dirty.add(c * 2 // self.geo.sector_size)
        else:
            self.arr[c] = v
            assert self._raw12 is not None
            _pack12(self._raw12, c, v)
            self._dirty.update(self._sectors_of(c))

    def _sectors_of(self, c: int) -> tuple[int, ...]:
        """The FAT sectors holding entry ``c``."""
        bps = self.geo.sector_size
        if self.bits == 12:
            off = c + (c >> 1)
            return (off // bps, (off + 1) // bps)
        return (c * (self.bits // 8) // bps,)

    def set_eoc(self, c: int) -> None:
        """Cut a chain at ``c`` (a shrink): in memory now, on disk with the frees (phase 3),
        so a crash never leaves a file's size beyond its chain."""
        if self.bits != 12:
            self._shadow.setdefault(c, self.arr[c])
        v = self.mask
        self.arr[c] = (self.arr[c] & 0xF0000000) | v if self.bits == 32 else v
        self._deferred[c] = v

    def link(self, prev: int, first: int) -> None:
        """``prev`` -> ``first``; until the next flush the disk keeps ``prev``'s old value."""
        old = self._links.get(prev, self._shadow.get(prev, self.arr[prev]))
        self._set(prev, first)
        self._links[prev] = old

    def _find_free(self, start: int) -> int:
        arr, top = self.arr, self.max_cluster + 1
        for lo, hi in ((start, top), (2, start)):
            if lo < hi:
                try:
                    return arr.index(0, lo, hi)
                except ValueError:
                    pass
        raise KernelError(Errno.ENOSPC, "msdos: no free clusters")

    def allocate(self, n: int, near: int = 0) -> list[int]:
        """``n`` free clusters, chained and terminated; contiguous after ``near`` if free."""
        if n <= 0:
            return []
        self.ensure_free(n)
        if n > self.free_count:
            raise KernelError(Errno.ENOSPC, f"msdos: {n} clusters wanted, {self.free_count} free")
        arr, top = self.arr, self.max_cluster
        c = near + 1 if 2 <= near < top and arr[near + 1] == 0 else self._find_free(
            self.next_free if 2 <= self.next_free <= top else 2)
        out = [c]
        while len(out) < n:
            nxt = c + 1
            c = nxt if nxt <= top and arr[nxt] == 0 else self._find_free(nxt if nxt <= top else 2)
            out.append(c)
        for a, b in itertools.pairwise(out):
            self._set(a, b)
        self._set(out[-1], self.mask)
        self.free_count -= n
        self.next_free = out[-1] + 1 if out[-1] < top else 2
        return out

    def unallocate(self, clusters: list[int]) -> None:
        """Undo an ``allocate`` that nothing has used yet (free at once: never on disk)."""
        for c in clusters:
            self._set(c, 0)
        self.free_count += len(clusters)

    def free_chain(self, clusters: list[int]) -> None:
        """Free ``clusters`` -- at ``commit_frees``: until then they stay in use on disk and in
        memory, so nothing can reuse them before the entry that dropped them is durable."""
        self.pending_free.extend(clusters)

    def commit_frees(self) -> bool:
        """Apply deferred chain cuts and frees to the table (the caller then flushes);
        True if anything changed."""
        if not self.pending_free and not self._deferred:
            return False
        deferred, self._deferred = self._deferred, {}
        for c, v in deferred.items():
            self._set(c, v)
        for c in self.pending_free:
            self._set(c, 0)
        self.free_count += len(self.pending_free)
        self.pending_free.clear()
        return True

    def ensure_free(self, n: int) -> None:
        """Before an allocation of ``n``: if only pending frees would make room, commit them
        (``short_hook``, the file system's sync)."""
        if n > self.free_count and self.pending_free and self.short_hook is not None:
            self.short_hook()

    @property
    def free_total(self) -> int:
        """Free clusters as statfs shows them (pending frees included)."""
        return self.free_count + len(self.pending_free)

    # -- clean bit --------------------------------------------------------------------------
    @property
    def clean(self) -> bool:
        bit = _CLEAN_BIT.get(self.bits)
        return bit is None or bool(self.arr[1] & bit)

    def set_clean(self, flag: bool) -> None:
        bit = _CLEAN_BIT.get(self.bits)
        if bit is None or self.clean == flag:
            return
        v = self.arr[1] | bit if flag else self.arr[1] & ~bit
        if self.bits == 32:
            self.arr[1] = v
            self._dirty.add(0)
        else:
            self._set(1, v)

    # -- write-back -------------------------------------------------------------------------
    def _sector_bytes(self, s: int, overrides: dict[int, int]) -> bytes:
        """Sector ``s`` of the table as it is in memory, but with ``overrides`` (cluster ->
        value) in place."""
        bps = self.geo.sector_size
        if self._raw12 is not None:
            raw = self._raw12
            if overrides:
                raw = bytearray(raw[: (s + 1) * bps + 1])
                for c, v in overrides.items():
                    if c + (c >> 1) + 1 < len(raw):
                        _pack12(raw, c, v & 0xFFF)
            return bytes(raw[s * bps : (s + 1) * bps])
        per = bps // self.arr.itemsize
        part = self.arr[s * per : (s + 1) * per]
        for c, v in overrides.items():
            if s * per <= c < (s + 1) * per:
                part[c - s * per] = v
        if _BIG:
            part.byteswap()
        data = part.tobytes()
        return data + bytes(bps - len(data))

    def flush(self) -> bool:
        """Write the dirty FAT sectors to every copy, straight to the device (the caller
        issues the barrier); True if anything was written.  Links made since the last flush
        go in a second pass after a barrier: first every dirty sector with the links' old
        values (the new clusters' entries land), then the sectors holding the links."""
        if not self._dirty:
            return False
        links, self._links = self._links, {}
        shadow = self._shadow
        if links:
            self._write(self._dirty, {**shadow, **links})
            self.bio.dev.flush()
            self._write({s for c in links for s in self._sectors_of(c)}, shadow)
        else:
            self._write(self._dirty, shadow)
        self._dirty.clear()
        return True

    def _write(self, sectors: set[int], overrides: dict[int, int]) -> None:
        geo = self.geo
        copies = [geo.active_fat] if geo.active_fat is not None else range(geo.num_fats)
        for s in sorted(sectors):
            if s >= geo.fat_sectors:
                continue
            data = self._sector_bytes(s, overrides)
            for k in copies:
                self.bio.write_run(geo.reserved + k * geo.fat_sectors + s, data)


def _pack12(raw: bytearray, c: int, v: int) -> None:
    """Store 12-bit entry ``c`` = ``v`` in the packed FAT12 bytes."""
    off = c + (c >> 1)
    if c & 1:
        raw[off] = (raw[off] & 0x0F) | ((v & 0x0F) << 4)
        raw[off + 1] = v >> 4
    else:
        raw[off] = v & 0xFF
        raw[off + 1] = (raw[off + 1] & 0xF0) | (v >> 8)


def _differing(a: array, b: array, lo: int, hi: int, step: int = 1024):
    """Indices in [lo, hi) where ``a`` and ``b`` differ (whole slices compared first)."""
    hi = min(hi, len(a), len(b))
    for start in range(lo, hi, step):
        end = min(start + step, hi)
        if a[start:end] != b[start:end]:
            yield from (i for i in range(start, end) if a[i] != b[i])


def _unpack12(raw: bytes) -> array:
    n = len(raw) * 2 // 3
    padded = bytes(raw) + b"\x00\x00\x00"
    out = array("H", bytes(2 * (n + 1)))
    for i in range(0, n, 2):
        o = i + (i >> 1)
        b0, b1, b2 = padded[o], padded[o + 1], padded[o + 2]
        out[i] = b0 | ((b1 & 0x0F) << 8)
        out[i + 1] = (b1 >> 4) | (b2 << 4)
    del out[n:]
    return out
