"""How much room a tree needs on ext2/3/4 and FAT (for ``fsu makefs`` without ``-s``).

Interface:
    ext_blocks(nodes, block_size, extents=True) -> int     data, directory, symlink and block-map
                                                            blocks the tree takes
    ext_inodes(nodes) -> int                                inodes the tree takes
    fat_clusters(nodes, cluster_size) -> int                clusters (directories included,
                                                            the FAT12/16 root excepted)
    fat_root_entries(nodes) -> int                          32-byte root entries (long names)
    first_guess(fstype, nodes) -> int                       a starting image size in bytes

These are estimates from the on-disk formats; ``makefs`` checks them against a freshly made
file system's statvfs and grows the image until they fit (and retries on ENOSPC), so the
driver's own layout decides, not a copy of it.
"""

from __future__ import annotations

import math
from typing import Any

FAST_SYMLINK = 60
MiB = 1 << 20


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _files(nodes: dict[str, Any]) -> list[Any]:
    seen: set[tuple[int, int]] = set()
    out = []
    for n in nodes.values():
        if n.kind != "file":
            continue
        if n.link_key is not None:
            if n.link_key in seen:
                continue
            seen.add(n.link_key)
        out.append(n)
    return out


def _indirect(blocks: int, bs: int) -> int:
    per = bs // 4
    rest = blocks - 12
    extra = 0
    for level in (1, 2, 3):
        if rest <= 0:
            break
        span = per ** level
        take = min(rest, span)
        extra += sum(_cdiv(take, per ** k) for k in range(1, level + 1))
        rest -= take
    return extra


def _extent_index(blocks: int, bs: int) -> int:
    extents = blocks // (bs * 2) + 2  # breaks at block group metadata, pessimistically
    if extents <= 4:
        return 0
    return _cdiv(extents, (bs - 12) // 12) + 1


def _dir_blocks(n: Any, bs: int) -> int:
    used = 24 + sum((8 + len(name.encode()) + 3) & ~3 for name in n.children)
    usable = bs - 12
    blocks = max(1, _cdiv(used, usable))
    if blocks > 1:
        blocks = math.ceil(blocks * 1.3) + 1  # half-full leaves after splits, htree root
    return blocks


def ext_blocks(nodes: dict[str, Any], bs: int, extents: bool = True) -> int:
    total = 0
    for n in _files(nodes):
        b = _cdiv(n.size if n.data is None else n.data, bs)
        total += b + (_extent_index(b, bs) if extents else _indirect(b, bs))
    for n in nodes.values():
        if n.kind == "dir":
            total += _dir_blocks(n, bs)
        elif n.kind == "link" and len((n.target or "").encode()) >= FAST_SYMLINK:
            total += 1
    return total


def ext_inodes(nodes: dict[str, Any]) -> int:
    seen: set[tuple[int, int]] = set()
    count = 0
    for n in nodes.values():
        if n.link_key is not None:
            if n.link_key in seen:
                continue
            seen.add(n.link_key)
        count += 1
    return count


def _dirent_slots(name: str) -> int:
    return 1 + _cdiv(len(name.encode("utf-16-le")) // 2, 13)


_SHORT_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                      "!#$%&'()-@^_`{}~")
FAT_DIR_SLOTS = 65536


def _short_name(name: str) -> bool:
    """Could ``name`` be stored as an 8.3 entry alone (no long-name slots)?"""
    base, dot, ext = name.partition(".")
    return (0 < len(base) <= 8 and len(ext) <= 3 and "." not in ext and
            not (dot and not ext) and all(c in _SHORT_OK for c in base + ext))


def fat_dir_slots_min(n: Any) -> int:
    """The fewest 32-byte slots directory ``n`` can take on FAT ("." and ".." included): a
    name that fits 8.3 may take one, any other a long-name chain and its short entry."""
    return 2 + sum(1 if _short_name(c) else _dirent_slots(c) for c in n.children)


def fat_clusters(nodes: dict[str, Any], cs: int) -> int:
    total = sum(_cdiv(n.size, cs) for n in _files(nodes) if n.size)
    for n in nodes.values():
        if n.kind == "dir" and n.rel:
            entries = 2 + sum(_dirent_slots(c) for c in n.children)
            total += max(1, _cdiv(entries * 32, cs))
    return total


def fat_root_entries(nodes: dict[str, Any]) -> int:
    return 1 + sum(_dirent_slots(c) for c in nodes[""].children)


def first_guess(fstype: str, nodes: dict[str, Any]) -> int:
    if fstype.startswith("ext"):
        data = ext_blocks(nodes, 4096) * 4096
        meta = ext_inodes(nodes) * 256 * 2
        journal = 0 if fstype == "ext2" else (4 * MiB if data < 100 * MiB else 16 * MiB)
        return int(data * 1.1) + meta + journal + 2 * MiB
    data = fat_clusters(nodes, 2048) * 2048
    return int(data * 1.1) + 256 * 1024
