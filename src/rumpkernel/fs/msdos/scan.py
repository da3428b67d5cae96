"""A quick consistency scan of a volume that looks damaged, before a read-write session.

Interface:
    scan_entries(fs) -> list[str]   -- walk every directory from the root; return the problems
                                       found (at most ``MAX_PROBLEMS``), after pinning in the
                                       FAT every cluster a directory entry starts at but the
                                       FAT calls free (``FatTable.pin``), so no allocation can
                                       hand it to a second file

Run by ``MsdosFS`` on every write mount.  It reads directory sectors only (no long-name
decoding) and walks every chain once: work is bounded by the volume's cluster count (a cluster
seen twice is a cross-link or a directory cycle and ends that branch).  Problems: chains that
are broken, run outside the volume or into a free cluster, clusters shared by two entries, and
live entries after a directory's end mark (which some readers show and others hide).
"""

from __future__ import annotations

from rumpkernel.fs.msdos.layout import ATTR_DIR, ATTR_LFN, ATTR_VOLUME, DIRENT_SIZE
from rumpkernel.fs.msdos.names import DOT, DOTDOT
from rumpkernel.kern.errno import KernelError

MAX_PROBLEMS = 20


def scan_entries(fs) -> list[str]:
    geo, fat = fs.geo, fs.fat
    problems: list[str] = []
    used = bytearray(geo.max_cluster + 1)
    if geo.fat_bits == 32:
        chain = _chain(fat, geo.root_cluster, "/", problems, used)
        stack = [("/", fs.cluster_sectors(chain))]
    else:
        stack = [("/", list(range(geo.root_start, geo.root_start + geo.root_sectors)))]
    while stack and len(problems) < MAX_PROBLEMS:
        path, sectors = stack.pop()
        for where, c, is_dir in _entries(fs.read_sectors(sectors), path, geo, problems):
            if not 2 <= c <= geo.max_cluster:
                problems.append(f"{where}: starts at cluster {c}, outside the volume")
            elif fat.get(c) == 0:
                fat.pin(c)
                problems.append(f"{where}: starts at cluster {c}, which the FAT calls free")
            elif used[c]:
                if not is_dir:
                    problems.append(f"{where}: shares cluster {c} with another file")
            else:
                chain = _chain(fat, c, where, problems, used)
                if is_dir and chain:
                    stack.append((where + "/", fs.cluster_sectors(chain)))
    return problems[:MAX_PROBLEMS]


def _entries(data: bytes, path: str, geo, problems: list[str]):
    """(name, first cluster, is_dir) of the short entries in directory bytes ``data``."""
    ended = False
    for o in range(0, len(data), DIRENT_SIZE):
        b0, attr = data[o], data[o + 11]
        if b0 == 0:
            if not ended and data[o::DIRENT_SIZE].strip(b"\x00"):
                problems.append(f"{path}: entries after the end-of-directory mark")
            ended = True
            continue
        if b0 == 0xE5 or attr == ATTR_LFN:
            continue
        if attr & ATTR_VOLUME:
            if attr & ATTR_DIR or data[o + 26 : o + 28] != b"\0\0":
                problems.append(f"{path}: a volume-label entry with a directory bit or a "
                                "cluster (fsck.fat walks it as a directory)")
            continue
        if data[o : o + 11] in (DOT, DOTDOT):
            continue
        c = int.from_bytes(data[o + 26 : o + 28], "little")
        if geo.fat_bits == 32:
            c |= int.from_bytes(data[o + 20 : o + 22], "little") << 16
        if c:
            yield f"{path}{data[o : o + 11].decode('latin-1').rstrip()}", c, bool(attr & ATTR_DIR)


def _chain(fat, start: int, where: str, problems: list[str], used: bytearray) -> list[int]:
    """The chain from ``start`` (marked in ``used``); [] and a problem when it is broken or
    runs into a chain already seen (a cross-link)."""
    try:
        chain = fat.chain(start)
    except KernelError as e:
        problems.append(f"{where}: {(e.detail or 'bad chain').removeprefix('msdos: ')}")
        return []
    for c in chain:
        if used[c]:
            problems.append(f"{where}: cluster {c} is also used by another file")
            return []
        used[c] = 1
    return chain
