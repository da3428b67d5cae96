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
EUCLEAN.  A directory is walked only over its mapped blocks up to ``i_size``.  Writing to an
htree-indexed directory first turns it into a plain linear directory (clears the index flag
and rewrites the index blocks as empty entry blocks), which e2fsck and Linux accept.
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
_DX = struct.Struct("<II")
FT_TO_DT = {L.FT_REG: DT_REG, L.FT_DIR: DT_DIR, L.FT_CHR: DT_CHR, L.FT_BLK: DT_BLK,
            L.FT_FIFO: DT_FIFO, L.FT_SOCK: DT_SOCK, L.FT_SYMLINK: DT_LNK}
DT_TO_FT = {v: k for k, v in FT_TO_DT.items()}
READDIR_BATCH = 256


class DirCache:
    """Every name of one directory: name -> [ino, ftype, lblk, offset]; plus block numbers."""

    __slots__ = ("blocks", "holes", "names")

    def __init__(self) -> None:
        self.names: dict[bytes, list[int]] = {}
        self.blocks: list[int] = []
        self.holes: set[int] = set()


# -- parsing one block -----------------------------------------------------------------------
def _has_tail(data: bytes, bs: int) -> bool:
    ino, rec_len, nl, ft = _HEAD.unpack_from(data, bs - 12)
    return ino == 0 and rec_len == 12 and nl == 0 and ft == L.DIR_TAIL_FT


def parse_entries(fs: Any, data: bytes, start: int, limit: int, where: str,
                  first_block: bool) -> list[tuple[int, int, int, int, bytes]]:
    """[(offset, ino, rec_len, ftype, name)] of the entry chain in data[start:limit]."""
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
            if nl == 0 or b"/" in name or b"\0" in name:
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
    limit = bs
    if fs.vol.metadata_csum:
        if _has_tail(data, bs):
            limit = bs - L.DIR_TAIL_SIZE
            want = int.from_bytes(data[bs - 4:], "little")
            if fs.vol.csum(dnode.seed, data[:limit]) != want:
                raise corrupt(f"ext: {where}: checksum mismatch")
        elif not _is_dx_block(data, bs, lblk, dnode):
            raise corrupt(f"ext: {where}: no checksum tail")
    return parse_entries(fs, data, 0, limit, where, lblk == 0)


def _is_dx_block(data: bytes, bs: int, lblk: int, dnode: Any) -> bool:
    if not dnode.flags & L.INODE_INDEX_FL:
        return False
    ino, rec_len, _, _ = _HEAD.unpack_from(data, 0)
    if lblk == 0:
        return True
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
    out += parse_entries(fs, buf, 0, 56, where, False)
    if extra:
        out += parse_entries(fs, buf, 56, len(buf), where, False)
    return out


def lookup(fs: Any, dnode: Any, name: bytes) -> int | None:
    dc = dnode.dcache
    if dc is None and not dnode.inline and dnode.flags & L.INODE_INDEX_FL and fs.dir_index:
        found = _dx_lookup(fs, dnode, name)
        if found is not None:
            return found or None
    ent = load_cache(fs, dnode).names.get(name)
    return ent[0] if ent else None


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


def _dx_walk(fs: Any, dnode: Any, name: bytes) -> int | None:
    vol = fs.vol
    bs = vol.block_size
    nblocks = dnode.size // bs
    root = fs.read_dir_block(dnode, 0)
    info = L.DxRootInfo.parse(root, L.DX_ROOT_INFO_OFFSET)
    levels = 3 if fs.largedir else 2
    if info.reserved_zero or info.hash_version not in DX_HASH_VERSIONS or \
            info.info_length != 8 or info.indirect_levels >= levels:
        return None
    h, _ = dx_hash(name, info.hash_version, fs.hash_seed, fs.hash_unsigned)
    data, off = root, L.DX_ROOT_ENTRIES_OFFSET
    for _ in range(info.indirect_levels + 1):
        entries = _dx_entries(data, off, bs, vol.metadata_csum)
        if entries is None:
            return None
        idx = max(i for i, (eh, _) in enumerate(entries) if i == 0 or eh <= h)
        blk = entries[idx][1]
        if not 0 < blk < nblocks:
            return None
        data, off = fs.read_dir_block(dnode, blk), L.DX_NODE_ENTRIES_OFFSET
    for _, ino, _, _, ename in _block_entries(fs, dnode, blk, data):
        if ename == name:
            return ino
    nxt = entries[idx + 1][0] if idx + 1 < len(entries) else None
    if nxt is not None and nxt & 1 and nxt & ~1 == h:
        return None  # hash collision continues in the next leaf: let the linear scan decide
    return 0


def _dx_entries(data: bytes, off: int, bs: int, csum: bool) -> list[tuple[int, int]] | None:
    limit, count = struct.unpack_from("<HH", data, off)
    want = (bs - off - (L.DX_TAIL_SIZE if csum else 0)) // 8
    if limit != want or not 0 < count <= limit:
        return None
    out = [(0, int.from_bytes(data[off + 4:off + 8], "little"))]
    for i in range(1, count):
        out.append(_DX.unpack_from(data, off + 8 * i))
    return out


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
        raise KernelError(Errno.EROFS, "ext: writing inline-data directories is not supported")
    dc = load_cache(fs, dnode)
    _deindex(fs, dnode, dc)
    return dc


def add_entry(fs: Any, dnode: Any, name: bytes, ino: int, ftype: int) -> None:
    dc = _writable_cache(fs, dnode)
    if name in dc.names:
        raise KernelError(Errno.EEXIST, name.decode("utf-8", "replace"))
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
    lblk = len(dc.blocks)
    bs = fs.vol.block_size
    (_, pblk, _, _), = fs.bmap(dnode).map_alloc(lblk, 1, fs.goal_for(dnode))
    dc.blocks.append(pblk)
    dnode.size += bs
    dnode.dirty = True
    write_block(fs, dnode, pblk, empty_block(fs))
    off = _insert(fs, dnode, dc, lblk, name, ino, ftype)
    assert off is not None
    dc.names[name] = [ino, ftype, lblk, off]


def _insert(fs: Any, dnode: Any, dc: DirCache, lblk: int, name: bytes, ino: int,
            ftype: int) -> int | None:
    bs = fs.vol.block_size
    need = L.dir_rec_len(len(name))
    pblk = dc.blocks[lblk]
    data = fs.vol.read(pblk)
    limit = bs - (L.DIR_TAIL_SIZE if fs.vol.metadata_csum else 0)
    off = 0
    while off < limit:
        eino, rec_len, nl, _ = _HEAD.unpack_from(data, off)
        rec_len = L.decode_rec_len(rec_len, bs)
        if rec_len < 8:
            raise corrupt(f"ext: directory {dnode.ino}: bad entry while inserting")
        if not fs.filetype:
            nl |= data[off + 7] << 8
        used = L.dir_rec_len(nl) if eino else 0
        if rec_len - used >= need:
            buf = bytearray(data)
            if used:
                buf[off + 4:off + 6] = L.encode_rec_len(used, bs).to_bytes(2, "little")
            new = off + used
            _put_entry(fs, buf, new, rec_len - used, name, ino, ftype)
            write_block(fs, dnode, pblk, buf)
            return new
        off += rec_len
    return None


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
    write_block(fs, dnode, pblk, buf)
    ent[0], ent[1] = ino, ftype


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
