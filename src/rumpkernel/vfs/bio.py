"""Block devices and the buffer cache drivers use to reach them.

Interface:
    BlockDevice   -- protocol: ``size`` (bytes), ``sector_size``, ``readonly``, ``name``,
                     ``pread(offset, length) -> bytes``, ``pwrite(offset, data)``, ``flush()``.
                     Offsets and lengths are multiples of ``sector_size``.  The kernel's devices
                     over host files (``vfs.blkdev``) do their I/O through hypercalls.
    MemoryDevice  -- a BlockDevice over a bytearray (tests, the sim host, newfs into memory).
    BlockIO       -- a driver's view of one device in blocks of ``block_size`` bytes, through a
                     write-back LRU cache whose memory counts against the kernel (KMem tag
                     "bufcache").  ``read`` / ``write`` are cached (metadata); ``read_run`` /
                     ``write_run`` move many contiguous blocks in one device call (file data).

Rules: a block outside the device is ``KernelError(EIO)`` (hostile images point anywhere); a
write to a read-only device is ``EROFS``.  Dirty blocks reach the device in ascending block order
on ``flush``; nothing is written before that except when eviction must make room.  A driver
that must order its writes sets ``before_flush`` (run before any dirty block goes out).  The
caller serialises access (drivers run under their mount's lock).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.kmem import KMem

DEFAULT_CACHE_BYTES = 32 * 1024 * 1024


class BlockDevice(Protocol):
    name: str
    size: int
    sector_size: int
    readonly: bool

    def pread(self, offset: int, length: int) -> bytes: ...

    def pwrite(self, offset: int, data: bytes) -> None: ...

    def flush(self) -> None: ...


class MemoryDevice:
    """A block device held in memory.  ``data`` may be shared with the creator."""

    def __init__(
        self, data: bytearray | int, *, sector_size: int = 512, readonly: bool = False,
        name: str = "md0",
    ) -> None:
        self.data = bytearray(data) if isinstance(data, int) else data
        self.size = len(self.data)
        self.sector_size = sector_size
        self.readonly = readonly
        self.name = name
        self.reads = 0
        self.writes = 0

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self.size:
            raise KernelError(Errno.EIO, f"{self.name}: read past end of device")
        self.reads += 1
        return bytes(self.data[offset : offset + length])

    def pwrite(self, offset: int, data: bytes) -> None:
        if self.readonly:
            raise KernelError(Errno.EROFS, f"{self.name}: device is read-only")
        if offset < 0 or offset + len(data) > self.size:
            raise KernelError(Errno.ENOSPC, f"{self.name}: write past end of device")
        self.writes += 1
        self.data[offset : offset + len(data)] = data

    def flush(self) -> None:
        return None


class BlockIO:
    """Cached block access to ``dev`` in units of ``block_size`` bytes."""

    def __init__(
        self, dev: BlockDevice, block_size: int, *, kmem: KMem | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES, first_byte: int = 0,
    ) -> None:
        if block_size <= 0 or block_size % dev.sector_size:
            raise KernelError(Errno.EINVAL, f"block size {block_size} vs sector {dev.sector_size}")
        self.dev = dev
        self.block_size = block_size
        self.first_byte = first_byte
        self.nblocks = (dev.size - first_byte) // block_size
        self.readonly = dev.readonly
        self.kmem = kmem
        self.max_blocks = max(16, cache_bytes // block_size)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._dirty: set[int] = set()
        self.hits = 0
        self.misses = 0
        # a driver that orders its writes sets this: it runs before dirty blocks go out
        # (on flush, and on the flush an eviction forces), e.g. to write and barrier a FAT
        self.before_flush: Callable[[], None] | None = None
        if kmem is not None:
            kmem.register_reclaimer(self.reclaim)

    # -- single blocks (metadata) ---------------------------------------------------------------
    def _check(self, blkno: int, count: int = 1) -> None:
        if blkno < 0 or count < 0 or blkno + count > self.nblocks:
            raise KernelError(
                Errno.EIO, f"{self.dev.name}: block {blkno}+{count} outside device "
                f"({self.nblocks} blocks of {self.block_size})")

    def read(self, blkno: int) -> bytes:
        cache = self._cache
        data = cache.get(blkno)
        if data is not None:
            cache.move_to_end(blkno)
            self.hits += 1
            return data
        self._check(blkno)
        self.misses += 1
        bs = self.block_size
        data = self.dev.pread(self.first_byte + blkno * bs, bs)
        self._insert(blkno, data)
        return data

    def write(self, blkno: int, data: bytes) -> None:
        """Delayed write of one whole block."""
        if self.readonly:
            raise KernelError(Errno.EROFS, f"{self.dev.name}: read-only")
        if len(data) != self.block_size:
            raise KernelError(Errno.EINVAL, f"partial block write ({len(data)} bytes)")
        self._check(blkno)
        data = bytes(data)
        if blkno in self._cache:
            self._cache[blkno] = data
            self._cache.move_to_end(blkno)
        else:
            self._insert(blkno, data)
        self._dirty.add(blkno)

    def _insert(self, blkno: int, data: bytes) -> None:
        cache = self._cache
        if len(cache) >= self.max_blocks or (self.kmem is not None and self.kmem.pressure):
            self._evict(max(1, len(cache) // 8))
        if self.kmem is not None:
            self.kmem.alloc(self.block_size, "bufcache")
        cache[blkno] = data

    def _evict(self, count: int) -> int:
        """Drop up to ``count`` least recently used blocks, writing dirty ones first."""
        victims = []
        for blkno in self._cache:
            victims.append(blkno)
            if len(victims) >= count:
                break
        if any(b in self._dirty for b in victims):
            self.flush()
        for blkno in victims:
            del self._cache[blkno]
        if self.kmem is not None:
            self.kmem.free(len(victims) * self.block_size, "bufcache")
        return len(victims)

    def reclaim(self, target_bytes: int) -> int:
        """Pagedaemon hook: free about ``target_bytes`` of cached blocks; return bytes freed."""
        n = min(len(self._cache), -(-target_bytes // self.block_size))
        return self._evict(n) * self.block_size if n else 0

    # -- runs (file data) -----------------------------------------------------------------------
    def read_run(self, blkno: int, count: int) -> bytes:
        """``count`` contiguous blocks in one device read; cached copies win (they may be dirty).
        Blocks read this way are not added to the cache."""
        if count == 1:
            return self.read(blkno)
        self._check(blkno, count)
        bs = self.block_size
        hits = self._cached_in(blkno, count)
        if not hits:
            return self.dev.pread(self.first_byte + blkno * bs, count * bs)
        out = bytearray(self.dev.pread(self.first_byte + blkno * bs, count * bs))
        for b in hits:
            i = b - blkno
            out[i * bs : (i + 1) * bs] = self._cache[b]
        return bytes(out)

    def _cached_in(self, blkno: int, count: int) -> list[int]:
        cache = self._cache
        if not cache:
            return []
        if len(cache) < count:
            return [b for b in cache if blkno <= b < blkno + count]
        return [b for b in range(blkno, blkno + count) if b in cache]

    def write_run(self, blkno: int, data: bytes) -> None:
        """Write whole blocks straight to the device (write-through; cached copies updated)."""
        if self.readonly:
            raise KernelError(Errno.EROFS, f"{self.dev.name}: read-only")
        bs = self.block_size
        count, rem = divmod(len(data), bs)
        if rem:
            raise KernelError(Errno.EINVAL, "write_run needs whole blocks")
        self._check(blkno, count)
        mv = memoryview(data)
        for b in self._cached_in(blkno, count):
            i = b - blkno
            self._cache[b] = bytes(mv[i * bs : (i + 1) * bs])
            self._dirty.discard(b)
        self.dev.pwrite(self.first_byte + blkno * bs, bytes(data))

    def forget(self, blkno: int, count: int = 1) -> None:
        """Drop cached copies (dirty or not) of blocks that were freed."""
        cache = self._cache
        dropped = 0
        for b in range(blkno, blkno + count):
            if cache.pop(b, None) is not None:
                dropped += 1
            self._dirty.discard(b)
        if dropped and self.kmem is not None:
            self.kmem.free(dropped * self.block_size, "bufcache")

    # -- write-back ---------------------------------------------------------------------------
    @property
    def dirty_count(self) -> int:
        return len(self._dirty)

    def flush(self, sync: bool = False) -> None:
        """Write dirty blocks in ascending order, coalescing neighbours; ``sync`` also asks the
        device to make them durable."""
        if self._dirty and self.before_flush is not None:
            self.before_flush()
        if self._dirty:
            bs = self.block_size
            order = sorted(self._dirty)
            start = prev = order[0]
            run = [self._cache[start]]
            for b in order[1:]:
                if b == prev + 1 and len(run) < 256:
                    run.append(self._cache[b])
                else:
                    self.dev.pwrite(self.first_byte + start * bs, b"".join(run))
                    start, run = b, [self._cache[b]]
                prev = b
            self.dev.pwrite(self.first_byte + start * bs, b"".join(run))
            self._dirty.clear()
        if sync:
            self.dev.flush()

    def invalidate(self) -> None:
        """Forget every cached block (dirty ones too): after an unmount or a failed mount."""
        if self.kmem is not None:
            self.kmem.free(len(self._cache) * self.block_size, "bufcache")
        self._cache.clear()
        self._dirty.clear()

    def close(self) -> None:
        self.flush(sync=not self.readonly)
        self.invalidate()
        if self.kmem is not None:
            self.kmem.unregister_reclaimer(self.reclaim)

    def stats(self) -> dict[str, int]:
        return {"cached": len(self._cache), "dirty": len(self._dirty),
                "hits": self.hits, "misses": self.misses}
