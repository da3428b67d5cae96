"""Directories: linear entry blocks (with checksum tails), htree lookup, inline directories
(read), and the in-memory name index used for lookups and updates.

Interface:
    lookup(fs, dnode, name) -> int | None
    readdir(fs, dnode, cookie) -> list[DirEnt]      cookie = byte position of the next entry
    add_entry(fs, dnode, name, ino, ftype)          ENOSPC
    remove_entry(fs, dnode, name) -> int            the inode number the entry held
    set_entry(fs, dnode, name, ino, ftype)          repoint an existing entry (rename, ``..``)
    is_empty(fs, dnode) -> bool
    new_dir_block(fs, ino, parent, seed) -> bytes   a fresh ``.``/``..`` block

Rules: every entry read from disk is checked (rec_len bounds and alignment, name length, no
``/`` or NUL in names, no ``.``/``..`` outside the first block, checksum tails); a bad block is
EUCLEAN.  A directory is walked only over its mapped blocks up to ``i_size``.  Adding to an
htree directory goes through the index (full leaves split, full index nodes split, a second
level is added to a full one-level root; index checksums kept); when the index cannot take the
entry (both levels full, a third level needed, index damaged) the directory is turned into a
plain linear one (index flag cleared, index blocks rewritten as empty entry blocks), which
e2fsck and Linux accept.  Removal and renaming never touch the index.  With dir_index, a
one-block linear directory that fills up is turned into an htree, as Linux does.
"""

from __future__ import annotations

import struct
from typing import Any

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.csum import DX_HASH_VERSIONS, dx_hash
from rumpkernel.kern.errno import Errno, KernelError, corrupt
from rumpkernel.vfs.vattr import (
    DT_BLK,
    DT_CHR,
    DT_DIR,
    DT_FIFO,
    DT_LNK,
    DT_REG,
    DT_SOCK,
    DT_UNKNOWN,
    DirEnt,
)

_HEAD = struct.Struct("<IHBB")
_U32 = struct.Struct("<I")
_DX = struct.Struct("<II")
FT_TO_DT = {L.FT_REG: DT_REG, L.FT_DIR: DT_DIR, L.FT_CHR: DT_CHR, L.FT_BLK: DT_BLK,
            L.FT_FIFO: DT_FIFO, L.FT_SOCK: DT_SOCK, L.FT_SYMLINK: DT_LNK}
DT_TO_FT = {v: k for k, v in FT_TO_DT.items()}
READDIR_BATCH = 256


class DirCache:
    """Every name of one directory: name -> [ino, ftype, lblk, offset]; plus block numbers."""

    __slots__ = ("blocks", "holes", "last", "names")

    def __init__(self) -> None:
        self.names: dict[bytes, list[int]] = {}
        self.blocks: list[int] = []
        self.holes: set[int] = set()
        self.last: dict[int, int] = {}    # block -> offset of its last entry (set by _insert)


# -- parsing one block -----------------------------------------------------------------------
def _has_tail(data: bytes, bs: int) -> bool:
    ino, rec_len, nl, ft = _HEAD.unpack_from(data, bs - 12)
    return ino == 0 and rec_len == 12 and nl == 0 and ft == L.DIR_TAIL_FT


def parse_entries(fs: Any, data: bytes, start: int, limit: int, where: str,
                  first_block: bool, ciphertext: bool = False,
                  ) -> list[tuple[int, int, int, int, bytes]]:
    """[(offset, ino, rec_len, ftype, name)] of the entry chain in data[start:limit].
    ``ciphertext``: an encrypted directory's names are any bytes (never used as paths)."""
    bs = fs.vol.block_size
    filetype = fs.filetype
    out = []
    off = start
    while off < limit:
        if off + 8 > limit:
            raise corrupt(f"ext: {where}: entry header past the block end")
        ino, rec_len, nl, ft = _HEAD.unpack_from(data, off)
        rec_len = L.decode_rec_len(rec_len, bs)
        if not filetype:
            nl, ft = nl | ft << 8, 0
        if rec_len < 8 or rec_len & 3 or off + rec_len > limit or (ino and nl + 8 > rec_len):
            raise corrupt(f"ext: {where}: bad entry at {off} (rec_len {rec_len})")
        if ino:
            name = bytes(data[off + 8:off + 8 + nl])
            if nl == 0 or (not ciphertext and (b"/" in name or b"\0" in name)):
                raise corrupt(f"ext: {where}: bad name {name!r}")
            if ino > fs.vol.geo.inodes_count:
                raise corrupt(f"ext: {where}: inode {ino} out of range")
            if name in (b".", b"..") and not (first_block and off < 24):
                raise corrupt(f"ext: {where}: stray {name!r} entry")
            out.append((off, ino, rec_len, ft, name))
        off += rec_len
    return out


def _block_entries(fs: Any, dnode: Any, lblk: int, data: bytes) -> list[tuple[Any, ...]]:
    bs = fs.vol.block_size
    where = f"directory {dnode.ino} block {lblk}"
    if _is_dx_block(data, bs, lblk, dnode):
        # An index block (as Linux decides: block 0, or a whole-block empty entry): its
        # checksum is the index's own; Linux may leave a stale leaf tail at its end.
        return parse_entries(fs, data, 0, bs, where, True, _enc(dnode)) if lblk == 0 else []
    limit = bs
    if fs.vol.metadata_csum:
        if not _has_tail(data, bs):
            raise corrupt(f"ext: {where}: no checksum tail")
        limit = bs - L.DIR_TAIL_SIZE
        want = int.from_bytes(data[bs - 4:], "little")
        if fs.vol.csum(dnode.seed, data[:limit]) != want:
            raise corrupt(f"ext: {where}: checksum mismatch")
    return parse_entries(fs, data, 0, limit, where, lblk == 0, _enc(dnode))


def _enc(dnode: Any) -> bool:
    return bool(dnode.flags & L.INODE_ENCRYPT_FL)


def _is_dx_block(data: bytes | bytearray, bs: int, lblk: int, dnode: Any) -> bool:
    if not dnode.flags & L.INODE_INDEX_FL:
        return False
    if lblk == 0:
        return True
    ino, rec_len, _, _ = _HEAD.unpack_from(data, 0)
    return ino == 0 and L.decode_rec_len(rec_len, bs) == bs


# -- walking ---------------------------------------------------------------------------------
def dir_blocks(fs: Any, dnode: Any) -> list[int]:
    """Physical block of every logical block of the directory (EUCLEAN for holes)."""
    bs = fs.vol.block_size
    if dnode.size % bs or dnode.size > fs.vol.geo.blocks_count * bs:
        raise corrupt(f"ext: directory {dnode.ino}: bad size {dnode.size}")
    out = []
    for lblk, pblk, n in fs.bmap(dnode).runs(0, dnode.size // bs):
        if not pblk:
            raise corrupt(f"ext: directory {dnode.ino}: hole at block {lblk}")
        out.extend(range(pblk, pblk + n))
    return out


def load_cache(fs: Any, dnode: Any) -> DirCache:
    dc = dnode.dcache
    if dc is not None:
        return dc
    dc = DirCache()
    if dnode.inline:
        for _, ino, _, ft, name in inline_entries(fs, dnode):
            dc.names[name] = [ino, ft, -1, 0]
        dnode.dcache = dc
        return dc
    dc.blocks = dir_blocks(fs, dnode)
    names = dc.names
    for lblk, pblk in enumerate(dc.blocks):
        for off, ino, _, ft, name in _block_entries(fs, dnode, lblk, fs.vol.read(pblk)):
            if name in names:
                raise corrupt(f"ext: directory {dnode.ino}: duplicate name {name!r}")
            names[name] = [ino, ft, lblk, off]
    if b"." not in names or b".." not in names:
        raise corrupt(f"ext: directory {dnode.ino}: missing . or ..")
    dnode.dcache = dc
    return dc


def inline_entries(fs: Any, dnode: Any) -> list[tuple[int, int, int, int, bytes]]:
    """Entries of an inline directory: ``.`` and ``..`` synthesized, then the stored ones.
    Offsets are positions in (i_block[4:] + system.data)."""
    ib = bytes(dnode.iblock)
    parent = int.from_bytes(ib[:4], "little")
    if not 0 < parent <= fs.vol.geo.inodes_count:
        raise corrupt(f"ext: inline directory {dnode.ino}: bad parent {parent}")
    extra = fs.inline_xattr(dnode)
    buf = ib[4:] + extra
    where = f"inline directory {dnode.ino}"
    out = [(0, dnode.ino, 0, L.FT_DIR, b"."), (0, parent, 0, L.FT_DIR, b"..")]
    out += parse_entries(fs, buf, 0, 56, where, False, _enc(dnode))
    if extra:
        out += parse_entries(fs, buf, 56, len(buf), where, False, _enc(dnode))
    return out


def lookup(fs: Any, dnode: Any, name: bytes) -> int | None:
    if name in (b".", b".."):
        return dot_entry(fs, dnode, name)
    dc = dnode.dcache
    if dc is None and not dnode.inline and dnode.flags & L.INODE_INDEX_FL and fs.dir_index:
        found = _dx_lookup(fs, dnode, name)
        if found is not None:
            return found or None
    ent = load_cache(fs, dnode).names.get(name)
    return ent[0] if ent else None


def dot_entry(fs: Any, dnode: Any, name: bytes) -> int:
    """``.`` or ``..`` of a directory, from its first block (or inline header) alone: they are
    never in an htree leaf, so the index cannot find them."""
    dc = dnode.dcache
    if dc is not None:
        return dc.names[name][0]
    if dnode.inline:
        ents = inline_entries(fs, dnode)
    else:
        ents = _block_entries(fs, dnode, 0, fs.read_dir_block(dnode, 0))
    want = 0 if name == b"." else 1
    if len(ents) <= want or ents[want][4] != name:
        raise corrupt(f"ext: directory {dnode.ino}: missing {name.decode()} entry")
    return ents[want][1]


def readdir(fs: Any, dnode: Any, cookie: int) -> list[DirEnt]:
    if dnode.inline:
        ents = inline_entries(fs, dnode)
        return [DirEnt(name, ino, FT_TO_DT.get(ft, DT_UNKNOWN), i + 1)
                for i, (_, ino, _, ft, name) in enumerate(ents) if i >= cookie]
    bs = fs.vol.block_size
    dc = load_cache(fs, dnode)
    out: list[DirEnt] = []
    lblk, start = divmod(max(cookie, 0), bs)
    while lblk < len(dc.blocks) and len(out) < READDIR_BATCH:
        ents = _block_entries(fs, dnode, lblk, fs.vol.read(dc.blocks[lblk]))
        for off, ino, rec_len, ft, name in ents:
            if off >= start:
                dt = FT_TO_DT.get(ft, DT_UNKNOWN) if fs.filetype else DT_UNKNOWN
                out.append(DirEnt(name, ino, dt, lblk * bs + off + rec_len))
        lblk += 1
        start = 0
    return out


# -- htree lookup ----------------------------------------------------------------------------
def _dx_lookup(fs: Any, dnode: Any, name: bytes) -> int | None:
    """Inode number (0 = definitely absent) via the hash index, or None if the index is
    unusable (the caller falls back to a linear scan)."""
    try:
        return _dx_walk(fs, dnode, name)
    except KernelError as err:
        if err.errno != Errno.EUCLEAN:
            raise
        return None


class DxLevel:
    """One index block on the path to a leaf: its logical block, bytes, entries offset,
    entries [(hash, block)] and the chosen entry."""

    __slots__ = ("data", "entries", "idx", "lblk", "off")

    def __init__(self, lblk: int, data: bytes, off: int, entries: list[tuple[int, int]],
                 idx: int) -> None:
        self.lblk, self.data, self.off, self.entries, self.idx = lblk, data, off, entries, idx


def _dx_probe(fs: Any, dnode: Any, h: int) -> tuple[list[DxLevel], int] | None:
    """The index path to the leaf that holds hash ``h``, or None if the index is unusable."""
    bs = fs.vol.block_size
    nblocks = dnode.size // bs
    info = dx_info(fs, dnode)
    if info is None:
        return None
    lblk, off = 0, L.DX_ROOT_ENTRIES_OFFSET
    path: list[DxLevel] = []
    for _ in range(info.indirect_levels + 1):
        data = fs.read_dir_block(dnode, lblk)
        entries = _dx_entries(fs, dnode, data, off)
        if entries is None:
            return None
        idx = max(i for i, (eh, _) in enumerate(entries) if i == 0 or eh <= h)
        path.append(DxLevel(lblk, data, off, entries, idx))
        lblk, off = entries[idx][1], L.DX_NODE_ENTRIES_OFFSET
        if not 0 < lblk < nblocks:
            return None
    return path, lblk


def dx_info(fs: Any, dnode: Any) -> Any:
    root = fs.read_dir_block(dnode, 0)
    info = L.DxRootInfo.parse(root, L.DX_ROOT_INFO_OFFSET)
    levels = 3 if fs.largedir else 2
    if info.reserved_zero or info.hash_version not in DX_HASH_VERSIONS or \
            info.info_length != 8 or info.indirect_levels >= levels:
        return None
    return info


def _name_hash(fs: Any, dnode: Any, name: bytes) -> int | None:
    info = dx_info(fs, dnode)
    if info is None:
        return None
    return dx_hash(name, info.hash_version, fs.hash_seed, fs.hash_unsigned)[0]


def _dx_walk(fs: Any, dnode: Any, name: bytes) -> int | None:
    h = _name_hash(fs, dnode, name)
    found = _dx_probe(fs, dnode, h) if h is not None else None
    if found is None:
        return None
    path, leaf = found
    data = fs.read_dir_block(dnode, leaf)
    for _, ino, _, _, ename in _block_entries(fs, dnode, leaf, data):
        if ename == name:
            return ino
    last = path[-1]
    nxt = last.entries[last.idx + 1][0] if last.idx + 1 < len(last.entries) else None
    if (nxt is None and len(path) > 1) or (nxt is not None and nxt & 1 and nxt & ~1 == h):
        return None  # the hash may continue in the next leaf: let the linear scan decide
    return 0


def _dx_limit(fs: Any, off: int) -> int:
    bs = fs.vol.block_size
    return (bs - off - (L.DX_TAIL_SIZE if fs.vol.metadata_csum else 0)) // 8


def _dx_csum(fs: Any, dnode: Any, data: bytes | bytearray, off: int, count: int) -> int:
    limit = _dx_limit(fs, off)
    tail = off + limit * 8
    c = fs.vol.csum(dnode.seed, data[:off + count * 8])
    return fs.vol.csum(c, bytes(data[tail:tail + 4]) + b"\0\0\0\0")


def _dx_entries(fs: Any, dnode: Any, data: bytes, off: int) -> list[tuple[int, int]] | None:
    limit, count = struct.unpack_from("<HH", data, off)
    if limit != _dx_limit(fs, off) or not 0 < count <= limit:
        return None
    if fs.vol.metadata_csum:
        tail = off + limit * 8
        if _dx_csum(fs, dnode, data, off, count) != _U32.unpack_from(data, tail + 4)[0]:
            return None
    out = [(0, _U32.unpack_from(data, off + 4)[0])]
    for i in range(1, count):
        out.append(_DX.unpack_from(data, off + 8 * i))
    return out


def _dx_write_entries(fs: Any, dnode: Any, level: DxLevel,
                      entries: list[tuple[int, int]]) -> None:
    buf = bytearray(level.data)
    off = level.off
    struct.pack_into("<HHI", buf, off, _dx_limit(fs, off), len(entries), entries[0][1])
    for i, (h, blk) in enumerate(entries[1:], 1):
        _DX.pack_into(buf, off + 8 * i, h, blk)
    if fs.vol.metadata_csum:
        tail = off + _dx_limit(fs, off) * 8
        buf[tail:tail + 4] = b"\0\0\0\0"
        _U32.pack_into(buf, tail + 4, _dx_csum(fs, dnode, buf, off, len(entries)))
    pblk = load_cache(fs, dnode).blocks[level.lblk]
    fs.vol.write(pblk, buf)


def _dx_add(fs: Any, dnode: Any, dc: DirCache, name: bytes, ino: int, ftype: int) -> bool:
    """Insert through the hash index, splitting a full leaf (and, when needed, a full index
    node, or adding a second index level).  False when the index cannot take the entry
    (the caller drops the index)."""
    h = _name_hash(fs, dnode, name)
    found = _dx_probe(fs, dnode, h) if h is not None else None
    if found is None:
        return False
    path, leaf = found
    off = _insert(fs, dnode, dc, leaf, name, ino, ftype)
    if off is None:
        if not _make_room(fs, dnode, dc, path):
            return False
        found = _dx_probe(fs, dnode, h)
        if found is None:
            return False
        path, leaf = found
        level = path[-1]
        split = _split_leaf(fs, dnode, dc, leaf)
        if split is None:
            return False
        split_hash, new = split
        entries = list(level.entries)
        entries.insert(level.idx + 1, (split_hash, new))
        _dx_write_entries(fs, dnode, level, entries)
        leaf = new if h >= split_hash else leaf
        off = _insert(fs, dnode, dc, leaf, name, ino, ftype)
        if off is None:
            return False
    dc.names[name] = [ino, ftype, leaf, off]
    return True


def _make_room(fs: Any, dnode: Any, dc: DirCache, path: list[DxLevel]) -> bool:
    """Make sure the index block above the leaf can take one more entry."""
    level = path[-1]
    if len(level.entries) < _dx_limit(fs, level.off):
        return True
    if len(path) == 1:
        _add_level(fs, dnode, dc, level)
        return True
    root = path[-2]
    if len(path) > 2 or len(root.entries) >= _dx_limit(fs, root.off):
        return False
    half = len(level.entries) // 2
    new = _append_block(fs, dnode, dc)
    _write_node(fs, dnode, new, level.entries[half:])
    _dx_write_entries(fs, dnode, level, level.entries[:half])
    entries = list(root.entries)
    entries.insert(root.idx + 1, (level.entries[half][0], new))
    _dx_write_entries(fs, dnode, root, entries)
    return True


def _add_level(fs: Any, dnode: Any, dc: DirCache, root: DxLevel) -> None:
    """Move the root's entries into a new index node; the root points at it alone."""
    new = _append_block(fs, dnode, dc)
    _write_node(fs, dnode, new, root.entries)
    buf = bytearray(root.data)
    buf[L.DX_ROOT_INFO_OFFSET + 6] = 1                  # indirect_levels
    root.data = bytes(buf)
    _dx_write_entries(fs, dnode, root, [(0, new)])


def _write_node(fs: Any, dnode: Any, lblk: int, entries: list[tuple[int, int]]) -> None:
    bs = fs.vol.block_size
    buf = bytearray(bs)
    buf[:8] = _HEAD.pack(0, L.encode_rec_len(bs, bs), 0, 0)
    _dx_write_entries(fs, dnode, DxLevel(lblk, bytes(buf), L.DX_NODE_ENTRIES_OFFSET, [], 0),
                      entries)


def _append_block(fs: Any, dnode: Any, dc: DirCache) -> int:
    new = len(dc.blocks)
    (_, pblk, _, _), = fs.bmap(dnode).map_alloc(new, 1, fs.goal_for(dnode))
    dc.blocks.append(pblk)
    dnode.size += fs.vol.block_size
    dnode.dirty = True
    return new


def _split_leaf(fs: Any, dnode: Any, dc: DirCache, leaf: int) -> tuple[int, int] | None:
    """Move the upper half (by hash) of a full leaf into a new block; (split hash, block)."""
    info = dx_info(fs, dnode)
    data = fs.vol.read(dc.blocks[leaf])
    ents = []
    for _, eino, _, ft, ename in _block_entries(fs, dnode, leaf, data):
        eh = dx_hash(ename, info.hash_version, fs.hash_seed, fs.hash_unsigned)[0]
        ents.append((eh, ename, eino, ft))
    if len(ents) < 2 or ents[0][1] == b".":
        return None
    ents.sort(key=lambda e: e[0])
    half, used, cut = sum(L.dir_rec_len(len(e[1])) for e in ents) // 2, 0, len(ents) - 1
    for i, e in enumerate(ents):
        used += L.dir_rec_len(len(e[1]))
        if used > half:
            cut = max(1, i)
            break
    split_hash = ents[cut][0] | (1 if ents[cut][0] == ents[cut - 1][0] else 0)
    new = _append_block(fs, dnode, dc)
    for lblk, part in ((leaf, ents[:cut]), (new, ents[cut:])):
        fill_block(fs, dnode, dc, lblk, [(n, i, t) for _, n, i, t in part])
    return split_hash, new


def fill_block(fs: Any, dnode: Any, dc: DirCache, lblk: int,
                ents: list[tuple[bytes, int, int]]) -> None:
    bs = fs.vol.block_size
    limit = bs - (L.DIR_TAIL_SIZE if fs.vol.metadata_csum else 0)
    buf = bytearray(bs)
    off = 0
    for k, (name, ino, ft) in enumerate(ents):
        rec = limit - off if k == len(ents) - 1 else L.dir_rec_len(len(name))
        _put_entry(fs, buf, off, rec, name, ino, ft)
        dc.names[name] = [ino, ft, lblk, off]
        off += rec
    if not ents:
        buf[:8] = _HEAD.pack(0, L.encode_rec_len(limit, bs), 0, 0)
    dc.last.pop(lblk, None)
    write_block(fs, dnode, dc.blocks[lblk], buf)


# -- updating --------------------------------------------------------------------------------
def _deindex(fs: Any, dnode: Any, dc: DirCache) -> None:
    """Turn an htree directory into a linear one (index blocks become empty entry blocks)."""
    if not dnode.flags & L.INODE_INDEX_FL:
        return
    bs = fs.vol.block_size
    limit = bs - (L.DIR_TAIL_SIZE if fs.vol.metadata_csum else 0)
    used = {lblk for _, _, lblk, _ in dc.names.values()}
    for lblk, pblk in enumerate(dc.blocks):
        data = fs.vol.read(pblk)
        if lblk == 0:
            buf = bytearray(data)
            dotdot = _HEAD.unpack_from(buf, 12)
            buf[12:20] = _HEAD.pack(dotdot[0], L.encode_rec_len(limit - 12, bs), 2, dotdot[3])
            write_block(fs, dnode, pblk, buf)
        elif lblk not in used and _is_dx_block(data, bs, lblk, dnode) and \
                (not fs.vol.metadata_csum or not _has_tail(data, bs)):
            write_block(fs, dnode, pblk, empty_block(fs))
    dnode.flags &= ~L.INODE_INDEX_FL
    dnode.dirty = True
    dc.last.clear()


def empty_block(fs: Any) -> bytearray:
    bs = fs.vol.block_size
    limit = bs - (L.DIR_TAIL_SIZE if fs.vol.metadata_csum else 0)
    buf = bytearray(bs)
    buf[:8] = _HEAD.pack(0, L.encode_rec_len(limit, bs), 0, 0)
    return buf


def write_block(fs: Any, dnode: Any, pblk: int, buf: bytearray) -> None:
    bs = fs.vol.block_size
    if fs.vol.metadata_csum:
        buf[bs - 12:bs - 4] = _HEAD.pack(0, 12, 0, L.DIR_TAIL_FT)
        buf[bs - 4:] = fs.vol.csum(dnode.seed, buf[:bs - 12]).to_bytes(4, "little")
    fs.vol.write(pblk, buf)


def _writable_cache(fs: Any, dnode: Any) -> DirCache:
    if dnode.inline:
        fs.uninline(dnode)
    return load_cache(fs, dnode)


def add_entry(fs: Any, dnode: Any, name: bytes, ino: int, ftype: int) -> None:
    dc = _writable_cache(fs, dnode)
    if name in dc.names:
        raise KernelError(Errno.EEXIST, name.decode("utf-8", "replace"))
    if dnode.flags & L.INODE_INDEX_FL:
        if fs.dir_index and _dx_add(fs, dnode, dc, name, ino, ftype):
            return
        _deindex(fs, dnode, dc)
    tried = []
    if dc.blocks:
        tried.append(len(dc.blocks) - 1)
    tried += sorted(dc.holes - set(tried))
    for lblk in tried:
        off = _insert(fs, dnode, dc, lblk, name, ino, ftype)
        if off is not None:
            dc.names[name] = [ino, ftype, lblk, off]
            return
        dc.holes.discard(lblk)
    if len(dc.blocks) == 1 and fs.dir_index and _make_indexed(fs, dnode, dc) and \
            _dx_add(fs, dnode, dc, name, ino, ftype):
        return
    lblk = _append_block(fs, dnode, dc)
    write_block(fs, dnode, dc.blocks[lblk], empty_block(fs))
    off = _insert(fs, dnode, dc, lblk, name, ino, ftype)
    if off is None:
        raise KernelError(Errno.ENAMETOOLONG, "ext: entry does not fit in a directory block")
    dc.names[name] = [ino, ftype, lblk, off]


def _make_indexed(fs: Any, dnode: Any, dc: DirCache) -> bool:
    """Turn a full one-block directory into an htree (as Linux does when it grows): block 0
    becomes the index root, its entries move to a new leaf (which then splits as needed)."""
    data = fs.vol.read(dc.blocks[0])
    ents = _block_entries(fs, dnode, 0, data)
    if len(ents) < 3 or ents[0][4] != b"." or ents[1][4] != b"..":
        return False
    version = fs.vol.sb.s_def_hash_version
    if version not in DX_HASH_VERSIONS:
        version = 1
    leaf = _append_block(fs, dnode, dc)
    fill_block(fs, dnode, dc, leaf, [(n, i, t) for _, i, _, t, n in ents[2:]])
    bs = fs.vol.block_size
    root = bytearray(bs)
    _put_entry(fs, root, 0, 12, b".", dnode.ino, L.FT_DIR)
    _put_entry(fs, root, 12, bs - 12, b"..", ents[1][1], L.FT_DIR)
    root[L.DX_ROOT_INFO_OFFSET:L.DX_ROOT_ENTRIES_OFFSET] = L.DxRootInfo(0, version, 8, 0,
                                                                        0).emit()
    _dx_write_entries(fs, dnode, DxLevel(0, bytes(root), L.DX_ROOT_ENTRIES_OFFSET, [], 0),
                      [(0, leaf)])
    dnode.flags |= L.INODE_INDEX_FL
    dnode.dirty = True
    dc.last.pop(0, None)
    return True


def _insert(fs: Any, dnode: Any, dc: DirCache, lblk: int, name: bytes, ino: int,
            ftype: int) -> int | None:
    bs = fs.vol.block_size
    need = L.dir_rec_len(len(name))
    pblk = dc.blocks[lblk]
    data = fs.vol.read(pblk)
    limit = bs - (L.DIR_TAIL_SIZE if fs.vol.metadata_csum else 0)
    hint = dc.last.get(lblk)
    if hint is not None:   # the last entry, where appended names usually find room
        off = _try_slot(fs, dnode, dc, lblk, data, hint, limit, name, ino, ftype, need)
        if off is not None:
            return off
    off = 0
    while off < limit:
        rec_len = L.decode_rec_len(_HEAD.unpack_from(data, off)[1], bs)
        if rec_len < 8:
            raise corrupt(f"ext: directory {dnode.ino}: bad entry while inserting")
        new = _try_slot(fs, dnode, dc, lblk, data, off, limit, name, ino, ftype, need)
        if new is not None:
            return new
        off += rec_len
    return None


def _try_slot(fs: Any, dnode: Any, dc: DirCache, lblk: int, data: bytes, off: int, limit: int,
              name: bytes, ino: int, ftype: int, need: int) -> int | None:
    """Put the entry into the slack of the entry at ``off`` if it fits; its offset or None."""
    bs = fs.vol.block_size
    eino, rec_len, nl, _ = _HEAD.unpack_from(data, off)
    rec_len = L.decode_rec_len(rec_len, bs)
    if not fs.filetype:
        nl |= data[off + 7] << 8
    used = L.dir_rec_len(nl) if eino else 0
    if rec_len - used < need or off + rec_len > limit:
        return None
    buf = bytearray(data)
    if used:
        buf[off + 4:off + 6] = L.encode_rec_len(used, bs).to_bytes(2, "little")
    new = off + used
    _put_entry(fs, buf, new, rec_len - used, name, ino, ftype)
    write_block(fs, dnode, dc.blocks[lblk], buf)
    if new + rec_len - used == limit:
        dc.last[lblk] = new
    return new


def _put_entry(fs: Any, buf: bytearray, off: int, rec_len: int, name: bytes, ino: int,
               ftype: int) -> None:
    bs = fs.vol.block_size
    nl, ft = (len(name), ftype) if fs.filetype else (len(name) & 0xFF, len(name) >> 8)
    buf[off:off + 8] = _HEAD.pack(ino, L.encode_rec_len(rec_len, bs), nl, ft)
    buf[off + 8:off + 8 + len(name)] = name


def remove_entry(fs: Any, dnode: Any, name: bytes) -> int:
    dc = _writable_cache(fs, dnode)
    ent = dc.names.get(name)
    if ent is None:
        raise KernelError(Errno.ENOENT, name.decode("utf-8", "replace"))
    ino, _, lblk, off = ent
    bs = fs.vol.block_size
    pblk = dc.blocks[lblk]
    buf = bytearray(fs.vol.read(pblk))
    prev = None
    pos = 0
    while pos < off:
        prev = pos
        pos += L.decode_rec_len(_HEAD.unpack_from(buf, pos)[1], bs)
    if pos != off:
        raise corrupt(f"ext: directory {dnode.ino}: entry chain changed under the cache")
    rec_len = L.decode_rec_len(_HEAD.unpack_from(buf, off)[1], bs)
    if prev is None:
        buf[off:off + 4] = b"\0\0\0\0"
    else:
        plen = L.decode_rec_len(_HEAD.unpack_from(buf, prev)[1], bs)
        buf[prev + 4:prev + 6] = L.encode_rec_len(plen + rec_len, bs).to_bytes(2, "little")
    write_block(fs, dnode, pblk, buf)
    del dc.names[name]
    dc.holes.add(lblk)
    dc.last.pop(lblk, None)
    return ino


def set_entry(fs: Any, dnode: Any, name: bytes, ino: int, ftype: int) -> None:
    dc = _writable_cache(fs, dnode)
    ent = dc.names.get(name)
    if ent is None:
        raise KernelError(Errno.ENOENT, name.decode("utf-8", "replace"))
    _, _, lblk, off = ent
    pblk = dc.blocks[lblk]
    buf = bytearray(fs.vol.read(pblk))
    buf[off:off + 4] = ino.to_bytes(4, "little")
    if fs.filetype:
        buf[off + 7] = ftype
    if _is_dx_block(buf, fs.vol.block_size, lblk, dnode):
        _dx_rewrite(fs, dnode, lblk, buf)     # ``..`` lives in the index root
    else:
        write_block(fs, dnode, pblk, buf)
    ent[0], ent[1] = ino, ftype


def _dx_rewrite(fs: Any, dnode: Any, lblk: int, buf: bytearray) -> None:
    """Write an index block whose entry part changed, with the index checksum (not a leaf
    tail, which would overwrite the index's own tail)."""
    off = L.DX_ROOT_ENTRIES_OFFSET if lblk == 0 else L.DX_NODE_ENTRIES_OFFSET
    if fs.vol.metadata_csum:
        limit, count = struct.unpack_from("<HH", buf, off)
        if limit != _dx_limit(fs, off) or not 0 < count <= limit:
            raise corrupt(f"ext: directory {dnode.ino}: bad index block {lblk}")
        tail = off + limit * 8
        buf[tail:tail + 4] = b"\0\0\0\0"
        _U32.pack_into(buf, tail + 4, _dx_csum(fs, dnode, buf, off, count))
    fs.vol.write(load_cache(fs, dnode).blocks[lblk], buf)


def is_empty(fs: Any, dnode: Any) -> bool:
    names = load_cache(fs, dnode).names
    return all(n in (b".", b"..") for n in names)


def new_dir_block(fs: Any, ino: int, parent: int, seed_node: Any) -> bytearray:
    bs = fs.vol.block_size
    buf = empty_block(fs)
    limit = bs - (L.DIR_TAIL_SIZE if fs.vol.metadata_csum else 0)
    _put_entry(fs, buf, 0, 12, b".", ino, L.FT_DIR)
    _put_entry(fs, buf, 12, limit - 12, b"..", parent, L.FT_DIR)
    return buf
