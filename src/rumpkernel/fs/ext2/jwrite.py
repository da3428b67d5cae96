"""Writing the JBD2 journal of ext3/ext4 (``data=ordered``), so that a power cut at any moment
leaves a file system that journal replay -- ours, ``e2fsck``'s or Linux's -- makes consistent.

Interface:
    JournalWriter.open(vol, node, bmap) -> JournalWriter    the internal journal (EOPNOTSUPP
                                        for a format this module does not write: CSUM_V2,
                                        COMPAT_CHECKSUM, fast commits -- the caller then writes
                                        in place, as for ext2)
    jw.capacity                         metadata blocks one transaction may hold
    jw.commit(blocks, now_ns)           one transaction: ``blocks`` {fs block: contents}
    jw.close()                          mark the journal empty (clean unmount)

One commit, in order (each flush a device barrier):
    1. the journal superblock pointing at this transaction (s_start, s_sequence), the
       descriptor blocks (tags, with v3 checksums when the journal has them) and the blocks,
       escaped where they begin with the JBD2 magic;                               flush
       (file data was written to its place before, so this flush also orders it first)
    2. the commit block;                                                            flush
    3. every block at its home location (checkpoint);                              flush
The next commit rewrites the journal superblock to point past this one, so replay only ever
meets the last, possibly unfinished, transaction; a transaction that does not fit before the
end of the log starts again at ``s_first`` after the superblock is marked empty.  A
transaction bigger than the journal raises OverflowError (the caller commits smaller ones).
"""

from __future__ import annotations

import struct
from typing import Any

from rumpkernel.fs.ext2 import layout as L
from rumpkernel.fs.ext2.csum import ext_crc32c
from rumpkernel.fs.ext2.journal import jsb_csum
from rumpkernel.kern.errno import Errno, KernelError, corrupt

_BE32 = struct.Struct(">I")
_MAGIC = _BE32.pack(L.JBD2_MAGIC)


class JournalWriter:
    def __init__(self, vol: Any, phys: list[int], jsb: Any) -> None:
        self.vol = vol
        self.bio = vol.bio
        self.bs = vol.block_size
        self.phys = phys
        self.jsb = jsb
        incompat = jsb.s_feature_incompat if jsb.h_blocktype == L.JBD2_SUPER_V2 else 0
        self.csum = bool(incompat & L.JBD2_INCOMPAT_CSUM_V3)
        self.is64 = bool(incompat & L.JBD2_INCOMPAT_64BIT)
        self.seed = ext_crc32c(0xFFFFFFFF, jsb.s_uuid) if self.csum else 0
        self.first, self.last = jsb.s_first, jsb.s_maxlen
        self.tag_size = 16 if self.csum else (12 if self.is64 else 8)
        self.seq = jsb.s_sequence
        self.head = self.first
        self.live = False            # does the on-disk journal superblock point at a log?
        self.capacity = self._fits(self.last - self.first)

    @classmethod
    def open(cls, vol: Any, node: Any, bmap: Any) -> JournalWriter:
        bs = vol.block_size
        nblocks = node.size // bs
        if nblocks < 2 or nblocks > vol.geo.blocks_count:
            raise corrupt(f"ext: journal inode has bad size {node.size}")
        phys: list[int] = []
        for _, pblk, n in bmap.runs(0, nblocks):
            if not pblk:
                raise corrupt("ext: journal has a hole")
            phys.extend(range(pblk, pblk + n))
        jsb = L.JournalSuper.parse(vol.read(phys[0]))
        if jsb.h_magic != L.JBD2_MAGIC or jsb.s_blocksize != bs or \
                not 1 <= jsb.s_first < jsb.s_maxlen <= nblocks:
            raise corrupt("ext: bad journal superblock")
        v2 = jsb.h_blocktype == L.JBD2_SUPER_V2
        incompat = jsb.s_feature_incompat if v2 else 0
        compat = jsb.s_feature_compat if v2 else 0
        if incompat & ~(L.JBD2_INCOMPAT_REVOKE | L.JBD2_INCOMPAT_64BIT |
                        L.JBD2_INCOMPAT_CSUM_V3 | L.JBD2_INCOMPAT_ASYNC_COMMIT) or \
                compat & L.JBD2_COMPAT_CHECKSUM or jsb.h_blocktype not in (
                    L.JBD2_SUPER_V1, L.JBD2_SUPER_V2):
            raise KernelError(Errno.EOPNOTSUPP, "ext: journal format not written by this "
                              "driver (checksum v1/v2 or fast commits)")
        if jsb.s_start:
            raise KernelError(Errno.EUCLEAN, "ext: journal not empty after recovery")
        return cls(vol, phys, jsb)

    def _fits(self, nlog: int) -> int:
        """How many blocks one transaction of ``nlog`` log blocks can carry."""
        per = self._tags_per_descriptor()
        n = max(0, nlog - 2)                 # a commit block and at least one descriptor
        return n - -(-n // (per + 1))

    def _tags_per_descriptor(self) -> int:
        space = self.bs - 12 - (4 if self.csum else 0) - 16    # the first tag has the uuid
        return space // self.tag_size

    # -- writing -------------------------------------------------------------------------------
    def commit(self, blocks: dict[int, bytes], now_ns: int) -> None:
        if not blocks:
            return
        items = sorted(blocks.items())
        if len(items) > self.capacity:
            raise OverflowError(f"transaction of {len(items)} blocks exceeds the journal")
        log = self._log_blocks(items)
        if self.head + len(log) + 1 > self.last:     # no room before the end: start over
            self._write_jsb(0)
            self.bio.flush(sync=True)
            self.head = self.first
        start = self.head
        self._write_jsb(start)
        for i, data in enumerate(log):
            self._put(start + i, data)
        self.bio.flush(sync=True)
        self._put(start + len(log), self._commit_block(now_ns))
        self.bio.flush(sync=True)
        for blk, data in items:                       # checkpoint
            self.bio.write(blk, data)
        self.bio.flush(sync=True)
        self.head = start + len(log) + 1
        self.seq = (self.seq + 1) & 0xFFFFFFFF

    def close(self) -> None:
        """After the last commit: an empty journal, as a clean Linux unmount leaves it."""
        if self.live:
            self._write_jsb(0)
            self.bio.flush(sync=True)

    def _put(self, pos: int, data: bytes) -> None:
        self.bio.write_run(self.phys[pos], data)

    def _write_jsb(self, start: int) -> None:
        j = self.jsb.replace(s_start=start, s_sequence=self.seq, s_errno=0)
        if self.csum:
            j = j.replace(s_checksum=jsb_csum(j))
        self.jsb = j
        old = self.vol.read(self.phys[0])
        self.bio.write_run(self.phys[0], j.emit() + old[L.JournalSuper.SIZE:])
        self.live = bool(start)

    def _log_blocks(self, items: list[tuple[int, bytes]]) -> list[bytes]:
        """Descriptor blocks, each followed by the blocks its tags describe."""
        per = self._tags_per_descriptor()
        out: list[bytes] = []
        for k in range(0, len(items), per):
            chunk = items[k:k + per]
            copies = [b"\0\0\0\0" + d[4:] if d[:4] == _MAGIC else d for _, d in chunk]
            out.append(self._descriptor(chunk, copies, last=True))
            out.extend(copies)
        return out

    def _descriptor(self, chunk: list[tuple[int, bytes]], copies: list[bytes],
                    last: bool) -> bytes:
        buf = bytearray(self.bs)
        buf[:12] = L.JournalHeader(L.JBD2_MAGIC, L.JBD2_DESCRIPTOR, self.seq).emit()
        off = 12
        for i, ((blk, data), copy) in enumerate(zip(chunk, copies)):
            flags = (L.JBD2_TAG_ESCAPE if copy is not data else 0) | \
                (L.JBD2_TAG_SAME_UUID if i else 0) | \
                (L.JBD2_TAG_LAST if i == len(chunk) - 1 and last else 0)
            hi = blk >> 32 if self.is64 else 0
            if self.csum:
                c = ext_crc32c(ext_crc32c(self.seed, _BE32.pack(self.seq)), copy)
                buf[off:off + 16] = L.JournalTag3(blk & 0xFFFFFFFF, flags, hi, c).emit()
            else:
                tag = L.JournalTagLegacy(blk & 0xFFFFFFFF, 0, flags, hi).emit()
                buf[off:off + self.tag_size] = tag[:self.tag_size]
            off += self.tag_size
            if not i:
                buf[off:off + 16] = self.jsb.s_uuid
                off += 16
        if self.csum:
            _BE32.pack_into(buf, self.bs - 4, ext_crc32c(self.seed, bytes(buf[:-4]) + bytes(4)))
        return bytes(buf)

    def _commit_block(self, now_ns: int) -> bytes:
        buf = bytearray(self.bs)
        sec, nsec = divmod(max(now_ns, 0), 1_000_000_000)
        c = L.JournalCommit.parse(bytes(L.JournalCommit.SIZE)).replace(
            h_magic=L.JBD2_MAGIC, h_blocktype=L.JBD2_COMMIT, h_sequence=self.seq,
            h_commit_sec=sec & (2**64 - 1), h_commit_nsec=nsec)
        buf[:L.JournalCommit.SIZE] = c.emit()
        if self.csum:
            _BE32.pack_into(buf, 0x10, ext_crc32c(self.seed, bytes(buf)))
        return bytes(buf)
