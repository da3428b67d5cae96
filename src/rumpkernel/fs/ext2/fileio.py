"""File contents: reading, writing and truncating through an inode's block map (extents or
indirect blocks), inline data (read; changed inline files are first moved to blocks by
``inline.uninline``), symlink targets and device numbers.

Interface:
    has_map(node) -> bool                 does i_block hold a block map (not a fast symlink,
                                          device number or inline data)?
    read(fs, node, offset, size) -> bytes
    write(fs, node, offset, data) -> int  ENOSPC (nothing written), EFBIG
    truncate(fs, node, size)              frees blocks past the new end, zeroes the tail
    punch(fs, node, offset, length)       a hole, as fallocate(PUNCH_HOLE|KEEP_SIZE)
    readlink(fs, node) -> bytes
    decode_rdev(node) / encode_rdev(node, rdev)    Linux dev_t <-> i_block
    seek(fs, node, offset, data: bool) -> int      SEEK_DATA / SEEK_HOLE (ENXIO)

Rules: contiguous mapped runs move in one device call (``read_run``/``write_run``); holes
read as zeros without touching the device; new blocks that are only partly written are
zero-filled, never read.  Output size is bounded by i_size and by the caller's ``size``.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.kern import abi
from rumpkernel.kern.errno import Errno, KernelError, corrupt

MAX_SYMLINK = 4095


def has_map(node: Any) -> bool:
    if node.inline:
        return False
    if node.is_reg or node.is_dir:
        return True
    return node.is_lnk and not is_fast_symlink(node)


def is_fast_symlink(node: Any) -> bool:
    """A symlink whose target lives in i_block (e2fsprogs' rule: shorter than i_block)."""
    return node.is_lnk and node.size < 60 and not node.flags & L.INODE_EXTENTS_FL


# -- reading -----------------------------------------------------------------------------------
def read(fs: Any, node: Any, offset: int, size: int) -> bytes:
    if offset < 0:
        raise KernelError(Errno.EINVAL, "negative offset")
    end = min(node.size, offset + size)
    if offset >= end:
        return b""
    if node.inline:
        chunk = inline_bytes(fs, node)[offset:end]
        return chunk + bytes(end - offset - len(chunk))   # past the stored bytes: zeros
    bs = fs.vol.block_size
    first, last = offset // bs, (end - 1) // bs
    parts = []
    vol = fs.vol
    for _, pblk, n in fs.bmap(node).runs(first, last - first + 1):
        parts.append(vol.read_run(pblk, n) if pblk else bytes(n * bs))
    skip = offset - first * bs
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if skip == 0 and len(data) == end - offset:
        return data
    return data[skip:skip + end - offset]


def inline_bytes(fs: Any, node: Any) -> bytes:
    """The stored inline bytes (at most i_size of them); a file may be longer, its tail
    reads as zeros (mke2fs -d stores all-zero tails that way)."""
    return (bytes(node.iblock) + fs.inline_xattr(node))[:node.size]


def readlink(fs: Any, node: Any) -> bytes:
    if not node.is_lnk:
        raise KernelError(Errno.EINVAL, "not a symbolic link")
    if node.size == 0 or node.size > MAX_SYMLINK:
        raise corrupt(f"ext: symlink {node.ino}: bad length {node.size}")
    if node.inline:
        target = inline_bytes(fs, node)
    elif not has_map(node):
        target = bytes(node.iblock[:node.size])
    else:
        if node.size >= fs.vol.block_size:
            raise corrupt(f"ext: symlink {node.ino}: longer than a block")
        target = read(fs, node, 0, node.size)
    if len(target) != node.size or b"\0" in target:
        raise corrupt(f"ext: symlink {node.ino}: bad target")
    return target


# -- writing -----------------------------------------------------------------------------------
def write(fs: Any, node: Any, offset: int, data: bytes) -> int:
    if offset < 0:
        raise KernelError(Errno.EINVAL, "negative offset")
    if not data:
        return 0
    if node.inline:
        fs.uninline(node)
    end = offset + len(data)
    if end > fs.max_file_size:
        raise KernelError(Errno.EFBIG, "ext: file too large")
    bs = fs.vol.block_size
    first, last = offset // bs, (end - 1) // bs
    bmap = fs.bmap(node)
    try:
        runs = bmap.map_alloc(first, last - first + 1, fs.goal_for(node))
    except KernelError as err:
        if err.errno != Errno.ENOSPC:
            raise
        bmap.truncate(-(-node.size // bs))
        if first == last:
            raise
        return _write_prefix(fs, node, offset, data)
    mv = memoryview(data)
    for lblk, pblk, n, new in runs:
        lo = max(offset, lblk * bs)
        hi = min(end, (lblk + n) * bs)
        _write_run(fs, pblk, lblk, n, lo - lblk * bs, mv[lo - offset:hi - offset], new)
    if end > node.size:
        node.size = end
    node.mtime = node.ctime = fs.now()
    node.dirty = True
    return len(data)


def _write_prefix(fs: Any, node: Any, offset: int, data: bytes) -> int:
    """After ENOSPC: write block by block and return the length of the prefix that fit."""
    bs = fs.vol.block_size
    pos, end = offset, offset + len(data)
    while pos < end:
        n = min(end, (pos // bs + 1) * bs) - pos
        try:
            write(fs, node, pos, data[pos - offset:pos - offset + n])
        except KernelError as err:
            if err.errno != Errno.ENOSPC:
                raise
            break
        pos += n
    if pos == offset:
        raise KernelError(Errno.ENOSPC, "ext: no free blocks")
    return pos - offset


def _write_run(fs: Any, pblk: int, lblk: int, n: int, skip: int, chunk: memoryview,
               new: bool) -> None:
    vol = fs.vol
    bs = vol.block_size
    total = n * bs
    if skip == 0 and len(chunk) == total:
        if n == 1:
            vol.write_data(pblk, bytes(chunk))
        else:
            vol.write_run(pblk, chunk)
        return
    # partial first and/or last block: merge with zeros (new) or the old contents
    buf = bytearray(total) if new else bytearray(vol.read_run(pblk, n))
    buf[skip:skip + len(chunk)] = chunk
    if n == 1:
        vol.write_data(pblk, buf)
    else:
        vol.write_run(pblk, buf)


def truncate(fs: Any, node: Any, size: int) -> None:
    if size < 0:
        raise KernelError(Errno.EINVAL, "negative size")
    if size > fs.max_file_size:
        raise KernelError(Errno.EFBIG, "ext: file too large")
    if node.inline:
        fs.uninline(node)
    bs = fs.vol.block_size
    if size < node.size and has_map(node):
        bmap = fs.bmap(node)
        bmap.truncate(-(-size // bs))
        if size % bs:
            _zero_tail(fs, bmap, size)
    node.size = size
    node.mtime = node.ctime = fs.now()
    node.dirty = True


def punch(fs: Any, node: Any, offset: int, length: int) -> None:
    """A hole over [offset, offset+length) as ``fallocate(PUNCH_HOLE|KEEP_SIZE)``: partial
    blocks at the edges are zeroed, whole blocks freed; the size stays.  Past the end of the
    file nothing happens beyond its last block."""
    if offset < 0 or length <= 0:
        raise KernelError(Errno.EINVAL, "punch: bad range")
    if not node.is_reg:
        raise KernelError(Errno.EINVAL, "punch: not a regular file")
    if node.inline:
        fs.uninline(node)
    bs = fs.vol.block_size
    end = offset + length
    if end >= node.size:                 # to the end of the last block (no stale tail bytes)
        end = -(-node.size // bs) * bs
    if offset >= end:
        return
    bmap = fs.bmap(node)
    first, last = -(-offset // bs), end // bs
    if offset % bs:
        _zero_range(fs, bmap, offset, min(end, (offset // bs + 1) * bs))
    if end % bs and end // bs >= first:
        _zero_range(fs, bmap, end // bs * bs, end)
    if first < last:
        bmap.punch(first, last)
    node.mtime = node.ctime = fs.now()
    node.dirty = True


def _zero_range(fs: Any, bmap: Any, start: int, end: int) -> None:
    """Zero bytes [start, end) of one block, if it is mapped."""
    vol = fs.vol
    bs = vol.block_size
    (_, pblk, _), = bmap.runs(start // bs, 1)
    if pblk:
        buf = bytearray(vol.read(pblk))
        buf[start % bs:(end - 1) % bs + 1] = bytes(end - start)
        vol.write(pblk, buf)      # with the transaction: the old bytes stay until it commits


def _zero_tail(fs: Any, bmap: Any, size: int) -> None:
    vol = fs.vol
    bs = vol.block_size
    (_, pblk, _), = bmap.runs(size // bs, 1)
    if pblk:
        buf = bytearray(vol.read(pblk))
        buf[size % bs:] = bytes(bs - size % bs)
        vol.write(pblk, buf)      # with the transaction: the old bytes stay until it commits


def seek(fs: Any, node: Any, offset: int, data: bool) -> int:
    if offset < 0 or offset >= node.size:
        raise KernelError(Errno.ENXIO, "offset past end of file")
    if not has_map(node):
        return offset if data else node.size
    bs = fs.vol.block_size
    bmap = fs.bmap(node)
    lblk = offset // bs
    if data:
        nxt = bmap.next_data(lblk)
        if nxt is None or nxt * bs >= node.size:
            raise KernelError(Errno.ENXIO, "no data past offset")
        return max(offset, nxt * bs)
    last = (node.size - 1) // bs
    while lblk <= last:
        for start, pblk, n in bmap.runs(lblk, min(last - lblk + 1, 1 << 16)):
            if not pblk:
                return max(offset, start * bs)
            lblk = start + n
    return node.size


# -- device numbers ------------------------------------------------------------------------------
def decode_rdev(node: Any) -> int:
    ib = node.iblock
    old = int.from_bytes(ib[0:4], "little")
    if old:
        major, minor = (old >> 8) & 0xFF, old & 0xFF
    else:
        new = int.from_bytes(ib[4:8], "little")
        major, minor = (new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00)
    return abi.makedev(major, minor)


def encode_rdev(node: Any, rdev: int) -> None:
    major, minor = abi.major(rdev), abi.minor(rdev)
    node.iblock[:] = bytes(60)
    if major < 256 and minor < 256:
        node.iblock[0:4] = ((major << 8) | minor).to_bytes(4, "little")
    else:
        new = (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)
        node.iblock[4:8] = (new & 0xFFFFFFFF).to_bytes(4, "little")
