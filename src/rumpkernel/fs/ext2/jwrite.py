"""Writing the JBD2 journal of ext3/ext4 (``data=ordered``), so that a power cut at any moment
leaves a file system that journal replay -- ours, ``e2fsck``'s or Linux's -- makes consistent.

Interface:
    JournalWriter.open(vol, node, bmap) -> JournalWriter    the internal journal (EOPNOTSUPP
                                        for a format this module does not write: CSUM_V2,
                                        COMPAT_CHECKSUM, fast commits, a version 1 superblock
                                        -- the caller then writes in place, as for ext2)
    jw.capacity                         metadata blocks one transaction may hold
    jw.live                             blocks with a copy in the log not yet known to be home
    jw.commit(blocks, revokes, now_ns)  one transaction: ``blocks`` {fs block: contents};
                                        ``revokes``: blocks freed or overwritten in place, so
                                        replay must not bring back their older logged copies
    jw.checkpoint()                     every committed block home and durable; log emptied
    jw.close()                          checkpoint (clean unmount: an empty journal)

One commit, in order (each flush a device barrier):
    1. (if the log is empty) the journal superblock pointing at this transaction; revoke
       blocks; descriptor blocks (tags, with v3 checksums when the journal has them) each
       followed by its blocks, escaped where they begin with the JBD2 magic;        flush
       (file data was written to its place before, so this flush also orders it first)
    2. the commit block;                                                            flush
The committed blocks then go to the buffer cache as dirty, reaching their homes on the
cache's own schedule; ``checkpoint`` forces them out when the log is full (before it wraps:
home writes, flush, an empty journal superblock, flush) and at unmount.  Replay therefore
walks every transaction since the last checkpoint, and revoke records keep it from writing an
old copy over a block that was freed and reused, or whose file data was rewritten in place.
A transaction bigger than the journal raises OverflowError (the caller writes it in place).
"""

from __future__ import annotations

import bisect
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
        if jsb.h_blocktype == L.JBD2_SUPER_V2:      # replay must honour our revoke records
            jsb = jsb.replace(s_feature_incompat=jsb.s_feature_incompat | L.JBD2_INCOMPAT_REVOKE)
        self.jsb = jsb
        incompat = jsb.s_feature_incompat
        self.csum = bool(incompat & L.JBD2_INCOMPAT_CSUM_V3)
        self.is64 = bool(incompat & L.JBD2_INCOMPAT_64BIT)
        self.seed = ext_crc32c(0xFFFFFFFF, jsb.s_uuid) if self.csum else 0
        self.first, self.last = jsb.s_first, jsb.s_maxlen
        self.tag_size = 16 if self.csum else (12 if self.is64 else 8)
        self.seq = jsb.s_sequence
        self.head = self.first
        self.started = False          # does the on-disk journal superblock point at a log?
        self.live: set[int] = set()
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
                compat & L.JBD2_COMPAT_CHECKSUM or jsb.h_blocktype != L.JBD2_SUPER_V2:
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
    def commit(self, blocks: dict[int, bytes], revokes: set[int], now_ns: int) -> None:
        revoked = sorted(b for b in revokes if b in self.live)
        if not blocks and not revoked:
            return
        items = sorted(blocks.items())
        if len(items) > self.capacity:
            raise OverflowError(f"transaction of {len(items)} blocks exceeds the journal")
        log = self._revoke_blocks(revoked) + self._log_blocks(items)
        if self.head + len(log) + 1 > self.last:     # no room before the end: start over
            self.checkpoint()
            log = self._log_blocks(items)            # nothing left to revoke
        start = self.head
        if not self.started:
            self._write_jsb(start)
        for i, data in enumerate(log):
            self._put(start + i, data)
        self.bio.flush(sync=True)
        self._put(start + len(log), self._commit_block(now_ns))
        self.bio.flush(sync=True)
        for blk, data in items:                       # home later, as the cache writes back
            self.bio.write(blk, data)
        self.live.update(blocks)
        self.head = start + len(log) + 1
        self.seq = (self.seq + 1) & 0xFFFFFFFF

    def freed_live(self, ranges: list[tuple[int, int]]) -> set[int]:
        """The logged blocks among freed ``ranges`` (each needs a revoke record)."""
        if not self.live or not ranges:
            return set()
        ordered = sorted(ranges)
        starts = [r[0] for r in ordered]
        out = set()
        for blk in self.live:
            i = bisect.bisect_right(starts, blk) - 1
            if i >= 0 and blk < ordered[i][0] + ordered[i][1]:
                out.add(blk)
        return out

    def checkpoint(self) -> None:
        """Committed blocks home and durable, then the log empty (replay has nothing to do)."""
        self.bio.flush(sync=True)
        if self.started:
            self._write_jsb(0)
            self.bio.flush(sync=True)
        self.live.clear()
        self.head = self.first

    def close(self) -> None:
        """After the last commit: an empty journal, as a clean Linux unmount leaves it."""
        self.checkpoint()

    def _revoke_blocks(self, revoked: list[int]) -> list[bytes]:
        size = 8 if self.is64 else 4
        per = (self.bs - 16 - (4 if self.csum else 0)) // size
        out = []
        for k in range(0, len(revoked), per):
            chunk = revoked[k:k + per]
            buf = bytearray(self.bs)
            buf[:16] = L.JournalRevokeHeader(L.JBD2_MAGIC, L.JBD2_REVOKE, self.seq,
                                             16 + size * len(chunk)).emit()
            fmt = ">Q" if self.is64 else ">I"
            for i, blk in enumerate(chunk):
                struct.pack_into(fmt, buf, 16 + size * i, blk)
            out.append(self._tail(buf))
        return out

    def _tail(self, buf: bytearray) -> bytes:
        if self.csum:
            _BE32.pack_into(buf, self.bs - 4, ext_crc32c(self.seed, bytes(buf[:-4]) + bytes(4)))
        return bytes(buf)

    def _put(self, pos: int, data: bytes) -> None:
        self.bio.write_run(self.phys[pos], data)

    def _write_jsb(self, start: int) -> None:
        j = self.jsb.replace(s_start=start, s_sequence=self.seq, s_errno=0)
        if self.csum:
            j = j.replace(s_checksum=jsb_csum(j))
        self.jsb = j
        old = self.vol.read(self.phys[0])
        self.bio.write_run(self.phys[0], j.emit() + old[L.JournalSuper.SIZE:])
        self.started = bool(start)

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
        return self._tail(buf)

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
