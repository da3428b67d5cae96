"""A parsed directory: names, slot map and free-slot search, built once per directory node.

Interface:
    Directory(store, clusters, sectors, is_root)  -- parse the directory's sectors
    .lookup(name: str) -> DirSlot | None          -- case-insensitive, long or short name
    .entries_from(index) -> list[DirSlot]         -- live entries in slot order (readdir)
    .plan_add(name, reserve) -> AddPlan           -- check an add can succeed, change nothing
                                                     (ENOSPC, EFBIG past 65,536 slots)
    .add(name, entry, plan) -> (DirSlot, entry)   -- write LFN slots + short entry
    .remove(slot)                                 -- mark the entry's slots deleted (0xE5)
    .replace(old, name, entry, drop) -> (DirSlot, entry) | None
                                                  -- rename in one sector write (see there)
    .epos(index) -> int                           -- absolute entry number (32-byte units from
                                                     the start of the file system): the natural
                                                     inode number of the entry at ``index``
    .dotdot                                       -- cluster in the ``..`` entry (None if absent)

``store`` is the mounted file system; the directory uses its ``bio``, ``geo``, ``fat``,
``namer``, ``mode``, ``codepage``, ``log``, ``grow_dir(dir)`` and ``dir_name(dir)``.

Rules: the parse tolerates hostile data -- orphan or mismatched LFN slots fall back to the short
name; names with ``/`` or NUL, stray ``.``/``..`` entries and duplicates are skipped (logged);
a 0x00 lead byte ends the directory.  Any of these marks the directory ``damaged`` (the reason):
it can be read, but ``plan_add``/``remove``/``set_dotdot`` refuse it with EUCLEAN.  The slot
map never lets a 0x00 slot sit before a used one.  Directories are limited to 65536 slots
(2 MiB) as FAT requires.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, replace

from rumpkernel.fs.msdos.layout import (
    ATTR_DIR,
    ATTR_LFN,
    ATTR_VOLUME,
    DIRENT_SIZE,
    LFN_LAST,
    ShortEntry,
    lfn_checksum,
)
from rumpkernel.fs.msdos.names import DOT, DOTDOT, decode_lfn, display_short, fold, lfn_slots
from rumpkernel.kern.errno import Errno, KernelError, corrupt

MAX_SLOTS = 65536


@dataclass(frozen=True, slots=True)
class AddPlan:
    """What ``Directory.add`` will write: the short name, the LFN chunks, ``k`` slots in all,
    ``grow`` clusters the directory must gain first, and whether the slots lie in one sector
    (``aligned``: always, unless the name needs more slots than a sector has or only a
    straddling run is left)."""

    name: str
    short11: bytes
    ntres: int
    need_lfn: bool
    chunks: list[bytes]
    k: int
    grow: int
    aligned: bool = False


@dataclass(slots=True)
class DirSlot:
    """One live entry: ``name`` as shown, ``first``..``index`` its slots (LFN then short)."""

    name: str
    short: bytes
    first: int
    index: int
    is_dir: bool
    short_key: str
    gen: int = -1          # the store's sync_gen when written (-1: read from disk)


class Directory:
    def __init__(self, store, clusters: list[int], sectors: list[int], is_root: bool) -> None:
        self.store = store
        self.clusters = clusters
        self.sectors = sectors
        self.is_root = is_root
        self.per_sector = store.geo.sector_size // DIRENT_SIZE
        self.nslots = len(sectors) * self.per_sector
        if self.nslots > MAX_SLOTS:
            raise corrupt(f"msdos: directory of {self.nslots} entries (max {MAX_SLOTS})")
        self.used = bytearray(self.nslots)
        self.end = self.nslots
        self.by_key: dict[str, DirSlot] = {}
        self.by_short_key: dict[str, DirSlot] = {}
        self.shorts: set[bytes] = set()
        self.slots: dict[int, DirSlot] = {}
        self.order: list[int] = []
        self.hints: dict[str, int] = {}
        self.subdirs = 0
        self.dotdot: int | None = None
        self.label: bytes | None = None
        self.dead = False
        self.damaged: str | None = None
        self.owner = 0
        self._parse(store.read_sectors(sectors))

    # -- parsing ----------------------------------------------------------------------------
    def _parse(self, data: bytes) -> None:
        parts: list[bytes] = []
        expect = 0
        csum = -1
        first = -1
        for i in range(self.nslots):
            o = i * DIRENT_SIZE
            b0 = data[o]
            if b0 == 0:
                self.end = i
                if data[o : self.nslots * DIRENT_SIZE : DIRENT_SIZE].strip(b"\x00"):
                    self._damage(f"entries after the end mark at slot {i}")
                if parts:
                    self._damage(f"long name without its entry at slot {first}")
                return
            if b0 == 0xE5:
                if parts:
                    self._damage(f"long name without its entry at slot {first}")
                expect, parts = 0, []
                continue
            self.used[i] = 1
            if data[o + 11] == ATTR_LFN:
                chunk = data[o + 1 : o + 11] + data[o + 14 : o + 26] + data[o + 28 : o + 32]
                if b0 & LFN_LAST and 1 <= (b0 & 0x1F) <= 20:
                    if parts:
                        self._damage(f"long name without its entry at slot {first}")
                    parts, expect, csum, first = [chunk], (b0 & 0x1F) - 1, data[o + 13], i
                elif expect and b0 == expect and data[o + 13] == csum:
                    parts.append(chunk)
                    expect -= 1
                else:
                    self._damage(f"broken long name at slot {i}")
                    expect, parts = 0, []
                continue
            long_ok = bool(parts) and expect == 0 and first >= 0
            if parts and not long_ok:
                self._damage(f"incomplete long name at slot {first}")
            self._short(i, data[o : o + DIRENT_SIZE], parts if long_ok else None, csum, first)
            parts, expect, first = [], 0, -1

    def _damage(self, why: str) -> None:
        if self.damaged is None:
            self.damaged = why

    def _short(self, i: int, raw: bytes, parts: list[bytes] | None, csum: int,
               first: int) -> None:
        name11, attr, ntres = raw[:11], raw[11], raw[12]
        log = self.store.log
        if attr & ATTR_VOLUME:
            if self.is_root and not attr & ATTR_DIR and self.label is None:
                self.label = name11
            if attr & ATTR_DIR or raw[26:28] != b"\0\0":
                self._damage(f"volume-label entry with a directory bit or cluster at slot {i}")
            return
        if name11 in (DOT, DOTDOT):
            if not self.is_root and i == (0 if name11 == DOT else 1):
                if name11 == DOTDOT:
                    self.dotdot = ShortEntry.parse(raw).cluster
            else:
                log(f"msdos: stray dot entry at slot {i} skipped")
                self._damage(f"stray dot entry at slot {i}")
            return
        store = self.store
        short = display_short(name11, ntres, store.mode, store.codepage)
        name = None
        if parts is not None and lfn_checksum(name11) == csum:
            name = decode_lfn(b"".join(reversed(parts)))
            if name is not None and not _sane(name):
                log(f"msdos: long name {name!r} refused; using short name")
                name = None
            if name is None:
                self._damage(f"bad long name at slot {i}")
        else:
            if parts is not None:
                self._damage(f"long name checksum mismatch at slot {i}")
            first = i
        if name is None:
            first = i
            name = short
        if not _sane(name):
            log(f"msdos: entry {name!r} at slot {i} skipped (bad name)")
            self._damage(f"bad name at slot {i}")
            return
        key, skey = fold(name), fold(short)
        if key in self.by_key or key in self.by_short_key or skey in self.by_key:
            log(f"msdos: duplicate name {name!r} at slot {i} skipped")
            self._damage(f"duplicate name {name!r} at slot {i}")
            return
        self._index(DirSlot(name, bytes(name11), first, i, bool(attr & ATTR_DIR), skey))

    def _index(self, s: DirSlot) -> None:
        self.by_key[fold(s.name)] = s
        self.by_short_key.setdefault(s.short_key, s)
        self.shorts.add(s.short)
        self.slots[s.index] = s
        insort(self.order, s.index)
        if s.is_dir:
            self.subdirs += 1

    def _unindex(self, s: DirSlot) -> None:
        if self.by_key.get(fold(s.name)) is s:    # a case-only rename indexed its new slot
            del self.by_key[fold(s.name)]
        if self.by_short_key.get(s.short_key) is s:
            del self.by_short_key[s.short_key]
        self.shorts.discard(s.short)
        del self.slots[s.index]
        del self.order[bisect_left(self.order, s.index)]
        if s.is_dir:
            self.subdirs -= 1

    # -- queries ----------------------------------------------------------------------------
    def lookup(self, name: str) -> DirSlot | None:
        key = fold(name)
        return self.by_key.get(key) or self.by_short_key.get(key)

    def entries_from(self, index: int, limit: int = 256) -> list[DirSlot]:
        k = bisect_left(self.order, index)
        return [self.slots[i] for i in self.order[k : k + limit]]

    @property
    def empty(self) -> bool:
        return not self.slots

    def epos(self, index: int) -> int:
        sec, k = divmod(index, self.per_sector)
        return self.sectors[sec] * self.per_sector + k

    def taken(self, name11: bytes) -> bool:
        if name11 in self.shorts:
            return True
        store = self.store
        shown = fold(display_short(name11, 0, "win95", store.codepage))
        return shown in self.by_key or shown in self.by_short_key

    # -- slot I/O ---------------------------------------------------------------------------
    def read_slot(self, index: int) -> bytes:
        sec, k = divmod(index, self.per_sector)
        data = self.store.bio.read(self.sectors[sec])
        return data[k * DIRENT_SIZE : (k + 1) * DIRENT_SIZE]

    def write_slots(self, index: int, raw: bytes) -> None:
        """Write consecutive 32-byte slots starting at ``index`` (read-modify-write sectors)."""
        bio = self.store.bio
        per = self.per_sector
        pos = 0
        while pos < len(raw):
            sec, k = divmod(index + pos // DIRENT_SIZE, per)
            take = min(len(raw) - pos, (per - k) * DIRENT_SIZE)
            blk = bytearray(bio.read(self.sectors[sec]))
            blk[k * DIRENT_SIZE : k * DIRENT_SIZE + take] = raw[pos : pos + take]
            bio.write(self.sectors[sec], bytes(blk))
            pos += take

    def extend(self, clusters: list[int], sectors: list[int]) -> None:
        """The store appended zeroed ``clusters`` (``sectors``) to this directory."""
        more = len(sectors) * self.per_sector
        if self.nslots + more > MAX_SLOTS:
            raise KernelError(Errno.ENOSPC, "msdos: directory full (65536 entries)")
        self.clusters.extend(clusters)
        self.sectors.extend(sectors)
        self.used.extend(bytes(more))
        self.nslots += more

    # -- changes ----------------------------------------------------------------------------
    def plan_add(self, name: str, reserve: int = 0) -> AddPlan:
        """Check that ``name`` can be added -- a short name, free slots, clusters to grow the
        directory (plus ``reserve`` more for the caller) -- without changing anything.
        ENOENT (directory removed), ENOSPC (volume or fixed root full), EFBIG (a FAT directory
        holds at most 65,536 slots)."""
        if self.dead:
            raise KernelError(Errno.ENOENT, "msdos: directory was removed")
        self.check_sound()
        store = self.store
        short11, ntres, need_lfn = store.namer.plan(name, self.taken, self.hints)
        chunks = lfn_slots(name) if need_lfn else []
        k = len(chunks) + 1
        per_cluster = store.geo.cluster_size // DIRENT_SIZE
        aligned = k <= self.per_sector
        grow = 0
        if self._free_run(k, aligned) < 0:
            fixed = self.is_root and store.geo.fat_bits != 32
            can_grow = (not fixed and self.nslots + per_cluster <= MAX_SLOTS
                        and store.fat.free_total > reserve)
            if not can_grow and self._free_run(k, False) >= 0:
                aligned = False
            elif aligned:
                grow = 1
            else:
                tail = len(self.used) - len(self.used.rstrip(b"\x00"))
                grow = -(-(k - tail) // per_cluster)
        if grow:
            if self.is_root and store.geo.fat_bits != 32:
                raise KernelError(Errno.ENOSPC, f"msdos: {store.dir_name(self)}: the root "
                                  f"directory is full ({self.nslots} entries, fixed size)")
            if self.nslots + grow * per_cluster > MAX_SLOTS:
                raise KernelError(Errno.EFBIG, f"msdos: {store.dir_name(self)}: directory "
                                  f"is full: a FAT directory holds at most {MAX_SLOTS} "
                                  "32-byte entries (a long name takes one per 13 characters "
                                  "plus one)")
        store.fat.ensure_free(grow + reserve)
        if grow + reserve > store.fat.free_count:
            raise KernelError(Errno.ENOSPC, "msdos: file system full")
        return AddPlan(name, short11, ntres, need_lfn, chunks, k, grow, aligned)

    def _free_run(self, k: int, aligned: bool = False) -> int:
        """First run of ``k`` free slots (-1: none); ``aligned``: inside one sector, so the
        entry is written -- and later removed -- by one atomic sector write."""
        used, per, end = self.used, self.per_sector, self.nslots
        i = used.find(bytes(k))
        while i >= 0 and i + k <= end:
            if not aligned or i % per + k <= per:
                return i
            i = used.find(bytes(k), (i // per + 1) * per)
        return -1

    def add(self, name: str, entry: ShortEntry,
            plan: AddPlan | None = None) -> tuple[DirSlot, ShortEntry]:
        """Write ``name`` (long + short entries); ``entry`` supplies every field but the name.
        Returns the new slot and the short entry as written.  Errors as ``plan_add``; nothing
        is written when it fails."""
        if plan is None or plan.name != name:
            plan = self.plan_add(name)
        plan = self.grow(plan)
        short11, ntres, need_lfn, chunks, k = (plan.short11, plan.ntres, plan.need_lfn,
                                               plan.chunks, plan.k)
        i = self._free_run(k, plan.aligned)
        if i < 0:
            raise KernelError(Errno.ENOSPC, "msdos: directory slots vanished")
        self._prefetch(i, i + k + 1)
        raw, written = _entry_raw(chunks, short11, ntres, entry)
        if i > self.end:
            self._fill_gap(i)
        if i + k > self.end:
            # past the end mark: the rest of this sector becomes deleted slots in the same
            # (atomic) sector write, so the end mark only ever sits at a sector boundary and
            # no later entry can land behind a 0x00 slot
            fill = min(-(i + k) % self.per_sector, self.nslots - i - k)
            raw += (b"\xe5" + bytes(DIRENT_SIZE - 1)) * fill
            self.end = i + k + fill
        self.write_slots(i, bytes(raw))
        self.used[i : i + k] = b"\x01" * k
        return self._new_slot(name, short11, ntres, need_lfn, i, k, entry), written

    def _new_slot(self, name: str, short11: bytes, ntres: int, need_lfn: bool, i: int, k: int,
                  entry: ShortEntry) -> DirSlot:
        store = self.store
        short = display_short(short11, ntres, store.mode, store.codepage)
        slot = DirSlot(name if need_lfn else short, short11, i, i + k - 1,
                       bool(entry.attr & ATTR_DIR), fold(short), store.sync_gen)
        self._index(slot)
        return slot

    def in_sector(self, a: DirSlot, b: DirSlot | None = None) -> bool:
        """Whether ``a`` (and ``b``) lie wholly in one and the same sector."""
        sec = a.first // self.per_sector
        return all(s.first // self.per_sector == sec == s.index // self.per_sector
                   for s in (a, b) if s is not None)

    def replace(self, old: DirSlot, name: str, entry: ShortEntry,
                drop: DirSlot | None = None) -> tuple[DirSlot, ShortEntry] | None:
        """Rename ``old`` to ``name`` (removing ``drop``, a replaced target, too) by ONE write
        of the sector that holds ``old``: its slots, ``drop``'s and free ones of that sector
        take the new LFN slots + short entry, the rest of the old ones are marked deleted.  A
        sector write is atomic, so a crash leaves the old names or the new one, never two
        names sharing a chain.  None (nothing changed) when ``old`` and ``drop`` do not lie in
        one sector or the new name does not fit in it (``fits`` says so beforehand); the
        caller falls back to ``add`` then ``remove``."""
        gone = [old] if drop is None or drop is old else [old, drop]
        place = self._placement(gone, name)
        if place is None:
            return None
        short11, ntres, need_lfn, chunks, i = place
        k = len(chunks) + 1
        store, per = self.store, self.per_sector
        lo = old.first // per * per
        hi = min(lo + per, self.nslots)
        blk = bytearray(store.bio.read(self.sectors[lo // per]))
        for s in gone:
            for j in range(s.first, s.index + 1):
                blk[(j - lo) * DIRENT_SIZE] = 0xE5
        raw, written = _entry_raw(chunks, short11, ntres, entry)
        blk[(i - lo) * DIRENT_SIZE : (i - lo) * DIRENT_SIZE + len(raw)] = raw
        if self.end < hi:                # the end mark sits in this sector: fill it (as add)
            deleted = b"\xe5" + bytes(DIRENT_SIZE - 1)
            for j in range(self.end, hi):
                if not i <= j < i + k:
                    blk[(j - lo) * DIRENT_SIZE : (j - lo + 1) * DIRENT_SIZE] = deleted
            self.end = hi
        store.bio.write(self.sectors[lo // per], bytes(blk))
        for s in gone:
            self.used[s.first : s.index + 1] = bytes(s.index + 1 - s.first)
            self._unindex(s)
        self.used[i : i + k] = b"\x01" * k
        return self._new_slot(name, short11, ntres, need_lfn, i, k, entry), written

    def fits(self, old: DirSlot, name: str) -> bool:
        """Whether ``replace(old, name)`` can rename in one sector write."""
        return self._placement([old], name) is not None

    def _placement(self, gone: list[DirSlot],
                   name: str) -> tuple[bytes, int, bool, list[bytes], int] | None:
        """Short name, flags, LFN chunks and first slot for ``name`` in the sector of
        ``gone[0]``, counting the slots of ``gone`` as free (None: no room, or ``gone`` spans
        sectors).  Changes nothing."""
        if not self.in_sector(*gone):
            return None
        self.check_sound()
        store, per = self.store, self.per_sector
        for s in gone:
            self._unindex(s)             # their short names are free for the new name
        try:
            short11, ntres, need_lfn = store.namer.plan(name, self.taken, dict(self.hints))
        finally:
            for s in gone:
                self._index(s)
        chunks = lfn_slots(name) if need_lfn else []
        lo = gone[0].first // per * per
        free = bytearray(self.used[lo : min(lo + per, self.nslots)])
        for s in gone:
            free[s.first - lo : s.index + 1 - lo] = bytes(s.index + 1 - s.first)
        i = free.find(bytes(len(chunks) + 1))
        return None if i < 0 else (short11, ntres, need_lfn, chunks, lo + i)

    def _fill_gap(self, i: int) -> None:
        """An entry placed in a fresh sector past an end mark that sits inside a sector (only
        in directories other tools wrote; ours end at sector boundaries): the never-used slots
        before it become deleted ones (0xE5), durably first -- else a cut could leave the
        entry behind a 0x00 end mark, where readers stop."""
        self.write_slots(self.end, (b"\xe5" + bytes(DIRENT_SIZE - 1)) * (i - self.end))
        self.store.barrier()
        self.end = i

    def check_sound(self) -> None:
        """EUCLEAN when the parse found damage: changing a damaged directory could orphan
        long-name slots or hide entries (read it, repair it with fsck.fat, then write)."""
        if self.damaged is not None:
            raise KernelError(Errno.EUCLEAN, f"msdos: {self.store.dir_name(self)}: directory "
                              f"is damaged ({self.damaged}); not changed (run fsck.fat)")

    def grow(self, plan: AddPlan) -> AddPlan:
        """Add the empty clusters ``plan`` needs (a multi-step operation does this before its
        first real change: an extra empty directory cluster changes nothing visible)."""
        if not plan.grow:
            return plan
        for _ in range(plan.grow):
            self.store.grow_dir(self)
        return replace(plan, grow=0)

    def prefetch(self, plan: AddPlan | None = None, slot: DirSlot | None = None) -> None:
        """Read now what ``add(plan)`` / ``remove(slot)`` will rewrite (a multi-step operation
        reads before its first change)."""
        if plan is not None and not plan.grow:
            i = self._free_run(plan.k, plan.aligned)
            if i >= 0:
                self._prefetch(i, i + plan.k + 1)
        if slot is not None:
            self._prefetch(slot.first, slot.index + 1)

    def _prefetch(self, lo: int, hi: int) -> None:
        """Read the sectors of slots [lo, hi) before changing any, so a read error cannot stop
        a change half-way (e.g. long-name slots written without their short entry)."""
        per, bio = self.per_sector, self.store.bio
        for sec in range(lo // per, min(hi, self.nslots) // per + 1):
            if sec < len(self.sectors):
                bio.read(self.sectors[sec])

    def remove(self, slot: DirSlot) -> None:
        self.check_sound()
        self._prefetch(slot.first, slot.index + 1)
        per = self.per_sector
        bio = self.store.bio
        for sec_i in range(slot.first // per, slot.index // per + 1):
            blk = bytearray(bio.read(self.sectors[sec_i]))
            lo, hi = max(slot.first, sec_i * per), min(slot.index, sec_i * per + per - 1)
            for i in range(lo, hi + 1):
                blk[(i - sec_i * per) * DIRENT_SIZE] = 0xE5
            bio.write(self.sectors[sec_i], bytes(blk))
        self.used[slot.first : slot.index + 1] = bytes(slot.index + 1 - slot.first)
        self._unindex(slot)

    def set_dotdot(self, cluster: int) -> None:
        if self.is_root or self.nslots < 2:
            return
        self.check_sound()
        raw = self.read_slot(1)
        if raw[:11] != DOTDOT:
            return
        ent = ShortEntry.parse(raw).with_cluster(cluster)
        self.write_slots(1, ent.emit())
        self.dotdot = cluster


def _entry_raw(chunks: list[bytes], short11: bytes, ntres: int,
               entry: ShortEntry) -> tuple[bytes, ShortEntry]:
    """The LFN slots (last first) and the short entry of a name, and the short entry."""
    csum = lfn_checksum(short11)
    raw = bytearray()
    n = len(chunks)
    for seq in range(n, 0, -1):
        raw += _lfn_raw(seq | (LFN_LAST if seq == n else 0), chunks[seq - 1], csum)
    written = entry.replace(name=short11, ntres=(entry.ntres & ~0x18) | ntres)
    return bytes(raw + written.emit()), written


def _lfn_raw(seq: int, chunk: bytes, csum: int) -> bytes:
    return (bytes([seq]) + chunk[:10] + bytes([ATTR_LFN, 0, csum]) + chunk[10:22]
            + b"\x00\x00" + chunk[22:26])


def _sane(name: str) -> bool:
    return bool(name) and "/" not in name and "\x00" not in name and name not in (".", "..")
