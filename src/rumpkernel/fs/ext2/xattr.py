"""Extended attributes: the in-inode area after the extra fields and one external block
(shared blocks are copied on write), with entry and block hashes and checksums.

Interface:
    load(fs, node) -> dict[bytes, bytes]      full names (b"user.x") -> values; cached on node
    store(fs, node, attrs)                    rewrite both areas from ``attrs`` (ENOSPC, E2BIG)
    inline_data(fs, node) -> bytes            the ``system.data`` value (inline data)
    release_block(fs, node)                   drop the external block (inode being freed)

Rules: entries are checked against their area (name and value inside it, values not past the
end, sizes bounded by the block size); values stored in separate inodes (ea_inode) are
refused with EOPNOTSUPP.  Values are stored as given: POSIX ACLs are translated to and from
ext4's format by the caller (``acl.py``, in ``fs.py``).
"""

from __future__ import annotations

import struct
from typing import Any

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.csum import xattr_block_hash, xattr_entry_hash
from rumpkernel.kern.errno import Errno, KernelError, corrupt

PREFIXES = {1: b"user.", 2: b"system.posix_acl_access", 3: b"system.posix_acl_default",
            4: b"trusted.", 6: b"security.", 7: b"system.", 8: b"system.richacl"}
_EXACT = {2, 3, 8}
_ENT = struct.Struct("<BBHIII")
_U32 = struct.Struct("<I")
INLINE_NAME = b"system.data"


def split_name(full: bytes) -> tuple[int, bytes]:
    for idx in _EXACT:
        if full == PREFIXES[idx]:
            return idx, b""
    best = None
    for idx, pre in PREFIXES.items():
        if idx not in _EXACT and full.startswith(pre) and len(full) > len(pre) and \
                (best is None or len(pre) > len(PREFIXES[best])):
            best = idx
    if best is None:
        raise KernelError(Errno.EOPNOTSUPP, f"ext: unsupported xattr namespace {full!r}")
    return best, full[len(PREFIXES[best]):]


def _parse(data: bytes, start: int, end: int, vbase: int, vend: int, where: str,
           out: dict[bytes, bytes]) -> None:
    off = start
    while off + 4 <= end and _U32.unpack_from(data, off)[0] != 0:
        if off + 16 > end:
            raise corrupt(f"ext: {where}: xattr entry past the end")
        nl, idx, voff, vinum, vsize, _ = _ENT.unpack_from(data, off)
        if off + 16 + nl > end:
            raise corrupt(f"ext: {where}: xattr name past the end")
        name = bytes(data[off + 16:off + 16 + nl])
        if vinum:
            raise KernelError(Errno.EOPNOTSUPP, f"ext: {where}: xattr value in an inode")
        if vsize and (vbase + voff < start or vbase + voff + vsize > vend):
            raise corrupt(f"ext: {where}: xattr value outside its area")
        pre = PREFIXES.get(idx)
        if pre is not None and (nl or idx in _EXACT):
            out[pre + name] = bytes(data[vbase + voff:vbase + voff + vsize])
        off += (16 + nl + 3) & ~3


def _ibody(fs: Any, node: Any) -> tuple[int, int] | None:
    isz = fs.vol.geo.inode_size
    start = L.GOOD_OLD_INODE_SIZE + node.extra_isize
    if isz <= L.GOOD_OLD_INODE_SIZE or start + 4 > isz:
        return None
    return start, isz


def load(fs: Any, node: Any) -> dict[bytes, bytes]:
    if node.xcache is not None:
        return node.xcache
    attrs: dict[bytes, bytes] = {}
    body = _ibody(fs, node)
    where = f"inode {node.ino}"
    if body is not None:
        start, isz = body
        raw = bytes(node.raw)
        if _U32.unpack_from(raw, start)[0] == L.XATTR_MAGIC:
            _parse(raw, start + 4, isz, start + 4, isz, where, attrs)
    if node.file_acl:
        data = _read_block(fs, node)
        _parse(data, 32, len(data), 0, len(data), where + " xattr block", attrs)
    node.xcache = attrs
    return attrs


def _read_block(fs: Any, node: Any) -> bytes:
    vol = fs.vol
    blk = node.file_acl
    vol.check_block(blk, 1, f"inode {node.ino} xattr block")
    data = vol.read(blk)
    hdr = L.XattrHeader.parse(data)
    if hdr.h_magic != L.XATTR_MAGIC or hdr.h_blocks != 1:
        raise corrupt(f"ext: inode {node.ino}: bad xattr block header")
    if vol.metadata_csum and _block_csum(vol, blk, data) != hdr.h_checksum:
        raise corrupt(f"ext: inode {node.ino}: xattr block checksum mismatch")
    return data


def _block_csum(vol: Any, blk: int, data: bytes | bytearray) -> int:
    buf = bytearray(data)
    buf[0x10:0x14] = b"\0\0\0\0"
    return vol.csum(vol.csum(vol.csum_seed, struct.pack("<Q", blk)), buf)


def inline_data(fs: Any, node: Any) -> bytes:
    return load(fs, node).get(INLINE_NAME, b"")


# -- writing ---------------------------------------------------------------------------------
def _entry_size(name: bytes) -> int:
    return (16 + len(name) + 3) & ~3


def _vsize(value: bytes) -> int:
    return (len(value) + 3) & ~3


def _layout(items: list[tuple[int, bytes, bytes]], size: int, entries_start: int,
            vbase: int, hashed: bool) -> tuple[bytearray, list[int]]:
    """Entries from ``entries_start``; values packed downwards from ``size``."""
    buf = bytearray(size)
    off = entries_start
    vpos = size
    hashes = []
    for idx, name, value in items:
        vpos -= _vsize(value)
        h = xattr_entry_hash(name, value) if hashed else 0
        hashes.append(h)
        voff = vpos - vbase if value else 0
        buf[off:off + 16] = _ENT.pack(len(name), idx, voff, 0, len(value), h)
        buf[off + 16:off + 16 + len(name)] = name
        buf[vpos:vpos + len(value)] = value
        off += _entry_size(name)
    return buf, hashes


def store(fs: Any, node: Any, attrs: dict[bytes, bytes]) -> None:
    items = [(*split_name(k), v) for k, v in attrs.items()]
    bs = fs.vol.block_size
    body = _ibody(fs, node)
    in_inode: list[tuple[int, bytes, bytes]] = []
    rest = items
    if body is not None:
        space = body[1] - body[0] - 4 - 4          # magic and the 4-byte terminator
        rest = []
        for it in items:
            need = _entry_size(it[1]) + _vsize(it[2])
            if need <= space:
                in_inode.append(it)
                space -= need
            else:
                rest.append(it)
    need = 32 + 4 + sum(_entry_size(n) + _vsize(v) for _, n, v in rest)
    if need > bs:            # checked before anything changes
        raise KernelError(Errno.ENOSPC, "ext: extended attributes do not fit in one block")
    if body is not None:
        _store_ibody(fs, node, body, in_inode)
    if rest:
        _store_block(fs, node, sorted(rest, key=lambda t: (t[0], len(t[1]), t[1])))
    elif node.file_acl:
        release_block(fs, node)
    node.xcache = dict(attrs)
    node.dirty = True


def _store_ibody(fs: Any, node: Any, body: tuple[int, int],
                 items: list[tuple[int, bytes, bytes]]) -> None:
    start, isz = body
    size = isz - start - 4
    if not items:
        node.raw[start:isz] = bytes(isz - start)
        return
    buf, _ = _layout(items, size, 0, 0, True)
    node.raw[start:start + 4] = _U32.pack(L.XATTR_MAGIC)
    node.raw[start + 4:isz] = buf


def _store_block(fs: Any, node: Any, items: list[tuple[int, bytes, bytes]]) -> None:
    vol = fs.vol
    bs = vol.block_size
    buf, hashes = _layout(items, bs, 32, 0, True)
    blk = node.file_acl
    if blk:
        hdr = L.XattrHeader.parse(_read_block(fs, node))
        if hdr.h_refcount > 1:        # shared: this inode gets its own copy
            _drop_ref(fs, blk, hdr)
            node.blocks = max(0, node.blocks - bs // 512)
            blk = 0
    if not blk:
        blk, _ = vol.alloc_blocks(fs.goal_for(node), 1)
        node.blocks += bs // 512
        node.file_acl = blk
    hdr = L.XattrHeader(L.XATTR_MAGIC, 1, 1, xattr_block_hash(hashes), 0, bytes(12))
    buf[:32] = hdr.emit()
    if vol.metadata_csum:
        buf[0x10:0x14] = _U32.pack(_block_csum(vol, blk, buf))
    vol.write(blk, buf)


def _drop_ref(fs: Any, blk: int, hdr: Any) -> None:
    vol = fs.vol
    buf = bytearray(vol.read(blk))
    buf[:32] = hdr.replace(h_refcount=hdr.h_refcount - 1).emit()
    if vol.metadata_csum:
        buf[0x10:0x14] = _U32.pack(_block_csum(vol, blk, buf))
    vol.write(blk, buf)


def release_block(fs: Any, node: Any) -> None:
    blk = node.file_acl
    if not blk:
        return
    hdr = L.XattrHeader.parse(_read_block(fs, node))
    if hdr.h_refcount > 1:
        _drop_ref(fs, blk, hdr)
    else:
        fs.vol.free_blocks(blk, 1)
    node.file_acl = 0
    node.blocks = max(0, node.blocks - fs.vol.block_size // 512)
    node.dirty = True
