"""Inline data (``inline_data`` feature): moving an inode's inline contents into ordinary
blocks before it is changed, as Linux does when inline data stops fitting.

Interface:
    uninline(fs, node)   -- a regular file or directory whose contents live in i_block and the
                            ``system.data`` attribute becomes extent- (or block-) mapped with
                            the same contents; times are kept.  Other inodes: EOPNOTSUPP.

Rules: only the writer calls this; reading inline inodes is ``fileio``/``dirs``.  New inodes
are never made inline.  The ``system.data`` attribute is removed with the inline flag, in
the same inode write.
"""

from __future__ import annotations

from typing import Any

from rumpkernel.fs.ext2 import dirs, fileio, xattr
from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.extents import empty_root
from rumpkernel.kern.errno import Errno, KernelError


def uninline(fs: Any, node: Any) -> None:
    if not node.inline:
        return
    times = (node.atime, node.mtime, node.ctime)
    if node.is_dir:
        _uninline_dir(fs, node)
    elif node.is_reg:
        data, size = fileio.inline_bytes(fs, node), node.size
        _reset(fs, node)
        if data.strip(b"\0"):
            fileio.write(fs, node, 0, data)
        node.size = size
    else:
        raise KernelError(Errno.EOPNOTSUPP, f"ext: inode {node.ino}: inline symlink change")
    node.atime, node.mtime, node.ctime = times
    node.dirty = True


def _reset(fs: Any, node: Any) -> None:
    """Clear the inline flag, the inline bytes and ``system.data``; start an empty map."""
    attrs = dict(xattr.load(fs, node))
    attrs.pop(xattr.INLINE_NAME, None)
    node.flags &= ~L.INODE_INLINE_DATA_FL
    if fs.extents:
        node.flags |= L.INODE_EXTENTS_FL
        node.iblock[:] = empty_root()
    else:
        node.iblock[:] = bytes(60)
    node.size = 0
    node.emap = None
    node.dcache = None
    xattr.store(fs, node, attrs)


def _uninline_dir(fs: Any, node: Any) -> None:
    ents = dirs.inline_entries(fs, node)
    parent = ents[1][1]
    rest = [(name, ino, ft) for _, ino, _, ft, name in ents[2:]]
    _reset(fs, node)
    (_, pblk, _, _), = fs.bmap(node).map_alloc(0, 1, fs.goal_for(node))
    node.size = fs.vol.block_size
    dc = dirs.DirCache()
    dc.blocks = [pblk]
    body = [(b".", node.ino, L.FT_DIR), (b"..", parent, L.FT_DIR), *rest]
    if sum(L.dir_rec_len(len(n)) for n, _, _ in body) > fs.vol.block_size - 12:
        raise KernelError(Errno.ENOSPC, f"ext: inline directory {node.ino} too large")
    dirs.fill_block(fs, node, dc, 0, body)
    node.dcache = dc
