"""JBD2 journal recovery (ext3/ext4 internal journals).

Interface:
    recover(vol, inode_loader) -> Recovery
        ``inode_loader(ino)`` returns an object with ``bmap`` runs for the journal inode.
        Recovery.blocks   -- {fs block: contents} to apply, newest committed version of each
        Recovery.next_seq -- the sequence number the next transaction would get
        Recovery.jsb_block, Recovery.jsb -- where the journal superblock is, and its record
    clean_jsb(rec, vol) -> bytes   the journal superblock marked empty (s_start = 0)

Rules: the scan walks at most ``s_maxlen`` log blocks (one lap) and stops at the first block
whose magic or sequence is wrong; a transaction counts only with a valid commit block.  Data
blocks are restored from escapes; revoke records cancel older copies.  Descriptor, revoke and
commit checksums (v2/v3) are verified and end the scan when bad; a data block whose tag
checksum fails is skipped (as Linux does).  Tags naming blocks outside the file system are
corruption.  Fast-commit blocks (after the log proper) are not replayed: what they hold is
lost, as after a Linux mount with fast commits disabled.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.csum import ext_crc32c
from rumpkernel.kern.errno import Errno, KernelError, corrupt

_BE32 = struct.Struct(">I")


@dataclass
class Recovery:
    blocks: dict[int, bytes] = field(default_factory=dict)
    next_seq: int = 0
    jsb_block: int = 0
    jsb: Any = None
    transactions: int = 0
    fast_commit: bool = False     # the journal may hold fast commits this code cannot replay


class _Log:
    """The journal inode as a circular log of blocks."""

    def __init__(self, vol: Any, node: Any, bmap: Any) -> None:
        self.vol = vol
        bs = vol.block_size
        nblocks = node.size // bs
        if nblocks < 2 or nblocks > vol.geo.blocks_count:
            raise corrupt(f"ext: journal inode has bad size {node.size}")
        self.phys: list[int] = []
        for _, pblk, n in bmap.runs(0, nblocks):
            if not pblk:
                raise corrupt("ext: journal has a hole")
            self.phys.extend(range(pblk, pblk + n))
        self.jsb = L.JournalSuper.parse(vol.read(self.phys[0]))
        self._check_super(nblocks)

    def _check_super(self, nblocks: int) -> None:
        j = self.jsb
        if j.h_magic != L.JBD2_MAGIC or j.h_blocktype not in (L.JBD2_SUPER_V1, L.JBD2_SUPER_V2):
            raise corrupt("ext: bad journal superblock")
        if j.s_blocksize != self.vol.block_size:
            raise corrupt(f"ext: journal block size {j.s_blocksize}")
        if not 1 <= j.s_first < j.s_maxlen <= nblocks:
            raise corrupt("ext: journal geometry out of range")
        if j.h_blocktype == L.JBD2_SUPER_V1:
            self.incompat = 0
        else:
            self.incompat = j.s_feature_incompat
        self.csum3 = bool(self.incompat & L.JBD2_INCOMPAT_CSUM_V3)
        self.csum2 = bool(self.incompat & L.JBD2_INCOMPAT_CSUM_V2)
        self.seed = ext_crc32c(0xFFFFFFFF, j.s_uuid) if self.csum2 or self.csum3 else 0
        self.last = j.s_maxlen       # the log wraps here; a fast-commit area follows it
        if self.incompat & L.JBD2_INCOMPAT_FAST_COMMIT:
            self.last -= j.s_num_fc_blks or 256
            if self.last <= j.s_first:
                raise corrupt("ext: journal fast-commit area leaves no log")
        if (self.csum2 or self.csum3) and j.s_checksum != jsb_csum(j):
            raise corrupt("ext: journal superblock checksum mismatch")
        if self.incompat & ~(L.JBD2_INCOMPAT_REVOKE | L.JBD2_INCOMPAT_64BIT |
                             L.JBD2_INCOMPAT_ASYNC_COMMIT | L.JBD2_INCOMPAT_CSUM_V2 |
                             L.JBD2_INCOMPAT_CSUM_V3 | L.JBD2_INCOMPAT_FAST_COMMIT):
            raise KernelError(Errno.EOPNOTSUPP, "ext: unknown journal features")

    def block(self, pos: int) -> bytes:
        return self.vol.read(self.phys[pos])

    def next(self, pos: int) -> int:
        pos += 1
        return self.jsb.s_first if pos >= self.last else pos

    def tag_size(self) -> int:
        if self.csum3:
            return 16
        size = 12 if self.incompat & L.JBD2_INCOMPAT_64BIT else 8
        return size + 2 if self.csum2 else size

    def block_csum_ok(self, data: bytes) -> bool:
        if not (self.csum2 or self.csum3):
            return True
        bs = len(data)
        want = _BE32.unpack_from(data, bs - 4)[0]
        return ext_crc32c(self.seed, data[:bs - 4] + b"\0\0\0\0") == want


def jsb_csum(j: Any) -> int:
    raw = bytearray(j.emit())
    raw[L.JSB_CHECKSUM_OFFSET:L.JSB_CHECKSUM_OFFSET + 4] = b"\0\0\0\0"
    return ext_crc32c(0xFFFFFFFF, raw)


def recover(vol: Any, load_journal: Any) -> Recovery:
    node, bmap = load_journal()
    log = _Log(vol, node, bmap)
    rec = Recovery(jsb_block=log.phys[0], jsb=log.jsb, next_seq=log.jsb.s_sequence)
    if log.jsb.s_start == 0:
        return rec
    rec.fast_commit = bool(log.incompat & L.JBD2_INCOMPAT_FAST_COMMIT)
    if not log.jsb.s_first <= log.jsb.s_start < log.last:
        raise corrupt("ext: journal start outside the log")
    txns, revoked, next_seq = _scan(log, vol)
    rec.next_seq = next_seq
    rec.transactions = len(txns)
    for seq, tags in txns:
        for fsblk, data in tags:
            r = revoked.get(fsblk)
            if r is not None and _seq_ge(r, seq):
                continue
            rec.blocks[fsblk] = data
    return rec


def _seq_ge(a: int, b: int) -> bool:
    return ((a - b) & 0xFFFFFFFF) < 0x80000000


def _scan(log: _Log, vol: Any) -> tuple[list[tuple[int, list[tuple[int, bytes]]]],
                                        dict[int, int], int]:
    """Committed transactions [(seq, [(fs block, data)])], revokes {block: seq}, next seq."""
    pos, seq = log.jsb.s_start, log.jsb.s_sequence
    budget = log.jsb.s_maxlen
    txns: list[tuple[int, list[tuple[int, bytes]]]] = []
    revoked: dict[int, int] = {}
    pending: list[tuple[int, bytes]] = []
    pending_revokes: list[int] = []
    while budget > 0:
        data = log.block(pos)
        hdr = L.JournalHeader.parse(data)
        if hdr.h_magic != L.JBD2_MAGIC or hdr.h_sequence != seq:
            break
        budget -= 1
        if hdr.h_blocktype == L.JBD2_DESCRIPTOR:
            if not log.block_csum_ok(data):
                break
            pos, budget = _descriptor(log, vol, data, seq, pos, budget, pending)
            if pos < 0:
                break
            continue
        if hdr.h_blocktype == L.JBD2_REVOKE:
            if not log.block_csum_ok(data):
                break
            pending_revokes.extend(_revoke_records(log, data))
        elif hdr.h_blocktype == L.JBD2_COMMIT:
            if not _commit_ok(log, data):
                break
            txns.append((seq, pending))
            for blk in pending_revokes:
                revoked[blk] = seq
            pending, pending_revokes = [], []
            seq = (seq + 1) & 0xFFFFFFFF
        else:
            break
        pos = log.next(pos)
    return txns, revoked, seq


def _descriptor(log: _Log, vol: Any, data: bytes, seq: int, pos: int, budget: int,
                pending: list[tuple[int, bytes]]) -> tuple[int, int]:
    bs = vol.block_size
    tsize = log.tag_size()
    end = bs - (4 if log.csum2 or log.csum3 else 0)
    off = 12
    is64 = bool(log.incompat & L.JBD2_INCOMPAT_64BIT)
    while off + tsize <= end:
        if log.csum3:
            t = L.JournalTag3.parse(data, off)
            csum = t.t_checksum
        else:
            t = L.JournalTagLegacy.parse(data[off:off + 12].ljust(12, b"\0"))
            csum = t.t_checksum
        flags = t.t_flags
        fsblk = t.t_blocknr | (t.t_blocknr_high << 32 if is64 else 0)
        off += tsize
        if not flags & L.JBD2_TAG_SAME_UUID:
            off += 16
        pos = log.next(pos)
        budget -= 1
        if budget < 0:
            return -1, 0
        block = log.block(pos)
        if not 0 <= fsblk < vol.geo.blocks_count:
            raise corrupt(f"ext: journal names block {fsblk} outside the file system")
        if _tag_csum_ok(log, seq, block, csum):      # the checksum is of the escaped copy
            if flags & L.JBD2_TAG_ESCAPE:
                block = _BE32.pack(L.JBD2_MAGIC) + block[4:]
            pending.append((fsblk, block))
        if flags & L.JBD2_TAG_LAST:
            break
    return log.next(pos), budget


def _tag_csum_ok(log: _Log, seq: int, block: bytes, csum: int) -> bool:
    if not (log.csum2 or log.csum3):
        return True
    c = ext_crc32c(ext_crc32c(log.seed, _BE32.pack(seq)), block)
    return c == csum if log.csum3 else (c & 0xFFFF) == csum


def _revoke_records(log: _Log, data: bytes) -> list[int]:
    hdr = L.JournalRevokeHeader.parse(data)
    size = 8 if log.incompat & L.JBD2_INCOMPAT_64BIT else 4
    limit = len(data) - (4 if log.csum2 or log.csum3 else 0)
    if not 16 <= hdr.r_count <= limit:
        raise corrupt("ext: journal revoke block count out of range")
    fmt = ">Q" if size == 8 else ">I"
    return [struct.unpack_from(fmt, data, off)[0] for off in range(16, hdr.r_count - size + 1,
                                                                    size)]


def _commit_ok(log: _Log, data: bytes) -> bool:
    if not (log.csum2 or log.csum3):
        return True
    c = L.JournalCommit.parse(data)
    buf = bytearray(data)
    buf[0x10:0x14] = b"\0\0\0\0"
    return ext_crc32c(log.seed, buf) == c.h_chksum0


def clean_jsb(rec: Recovery, vol: Any) -> bytes:
    """The journal superblock block, marked empty and with the next sequence number."""
    j = rec.jsb.replace(s_start=0, s_sequence=rec.next_seq, s_errno=0)
    if j.h_blocktype == L.JBD2_SUPER_V2 and j.s_feature_incompat & (
            L.JBD2_INCOMPAT_CSUM_V2 | L.JBD2_INCOMPAT_CSUM_V3):
        j = j.replace(s_checksum=jsb_csum(j))
    old = vol.read(rec.jsb_block)
    return j.emit() + old[L.JournalSuper.SIZE:]
