"""Send and receive buffers of one TCP connection, with a hook for memory accounting.

Interface:
    ByteQueue()            -- a byte stream in chunks: append(data), peek(off, n) -> bytes,
                              drop(n), clear(), len(); no copy of what stays queued
    BufferAccount          -- protocol: charge(nbytes) (raise KernelError(ENOBUFS/ENOMEM) to
                              refuse) and release(nbytes).  The socket layer passes one that
                              charges the kernel memory limit (KMemAccount); NULL_ACCOUNT counts
                              nothing.
    KMemAccount(kmem, tag) -- charges a kern.kmem.KMem under ``tag``.
    SendBuffer(limit, account, start_seq)
        .append(data) -> accepted bytes (bounded by free space and by the account)
        .peek(seq, n) -> bytes at absolute sequence ``seq``; .drop_to(seq) frees acked bytes
        .start, .end (absolute sequence numbers), .used, .free, .limit (settable: autotuning)
    ReceiveBuffer(limit, account)
        .insert(seq, data, rcv_nxt) -> new rcv_nxt (in-order bytes appended, the rest queued
                              for reassembly, all bounded by the buffer's space)
        .read(n, peek=False) -> bytes for the user; .used (in order + out of order), .free
        .sack_blocks(...)    -> out-of-order ranges, the newest first (RFC 2018 4)
        .prune_ooo()         -> drop the reassembly queue under memory pressure (reneging)
        .readable            -- in-order bytes waiting

Rules: sequence numbers here are the engine's unwrapped absolute integers.  Every byte a buffer
holds is charged to its account once and released when it leaves (read, acked, or the buffer
is freed); free() releases everything.  The reassembly queue is a short sorted list of disjoint
[start, end, bytes] ranges; overlapping data is trimmed so each byte is stored once.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from rumpkernel.kern.errno import Errno, KernelError


class BufferAccount(Protocol):
    def charge(self, nbytes: int) -> None: ...

    def release(self, nbytes: int) -> None: ...


class NullAccount:
    __slots__ = ()

    def charge(self, nbytes: int) -> None:
        pass

    def release(self, nbytes: int) -> None:
        pass


NULL_ACCOUNT = NullAccount()


class KMemAccount:
    """Charges socket-buffer bytes to the kernel's memory limit (DESIGN rule 10)."""

    __slots__ = ("kmem", "tag")

    def __init__(self, kmem, tag: str = "tcp") -> None:
        self.kmem = kmem
        self.tag = tag

    def charge(self, nbytes: int) -> None:
        try:
            self.kmem.alloc(nbytes, self.tag)
        except KernelError as e:
            raise KernelError(Errno.ENOBUFS, e.detail) from None

    def release(self, nbytes: int) -> None:
        self.kmem.free(nbytes, self.tag)


SMALL = 4096            # appends shorter than this are coalesced ...
COALESCE = 65536        # ... into a tail chunk of up to this many bytes


class ByteQueue:
    """A byte stream as a deque of chunks: appending and dropping from the front cost no
    copy of what stays (a bytearray with a sliding front re-copies the whole buffer as it
    grows: ~15x slower for 64 KiB segments through a megabyte buffer), and ``peek`` copies
    only the bytes asked for, once.  ``len()`` is the byte count."""

    __slots__ = ("chunks", "head", "size")

    def __init__(self) -> None:
        self.chunks: deque = deque()
        self.head = 0                   # bytes of chunks[0] already dropped
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if not n:
            return
        chunks = self.chunks
        if n < SMALL:
            if chunks and type(chunks[-1]) is bytearray and len(chunks[-1]) < COALESCE:
                chunks[-1] += data
            else:
                chunks.append(bytearray(data))
        else:
            chunks.append(data if type(data) is bytes else bytes(data))
        self.size += n

    def peek(self, off: int, n: int) -> bytes:
        """Bytes ``off`` .. ``off + n`` (clipped to what is queued)."""
        if off < 0:
            off = 0
        if off + n > self.size:
            n = self.size - off
        if n <= 0:
            return b""
        off += self.head
        parts = []
        for c in self.chunks:
            size = len(c)
            if off >= size:
                off -= size
                continue
            if off == 0 and n >= size and type(c) is bytes:
                parts.append(c)
                n -= size
            else:
                take = min(size - off, n)
                parts.append(memoryview(c)[off:off + take])
                n -= take
                off = 0
            if n <= 0:
                break
        if len(parts) == 1 and type(parts[0]) is bytes:
            return parts[0]
        return b"".join(parts)

    def drop(self, n: int) -> None:
        """Forget the first ``n`` bytes (at most what is queued)."""
        if n >= self.size:
            self.clear()
            return
        self.size -= n
        n += self.head
        chunks = self.chunks
        while n >= len(chunks[0]):
            n -= len(chunks.popleft())
        self.head = n

    def clear(self) -> None:
        self.chunks.clear()
        self.head = 0
        self.size = 0


class SendBuffer:
    __slots__ = ("account", "data", "limit", "start")

    def __init__(self, limit: int, account: BufferAccount = NULL_ACCOUNT, start_seq: int = 0):
        self.data = ByteQueue()
        self.limit = limit
        self.account = account
        self.start = start_seq

    @property
    def used(self) -> int:
        return len(self.data)

    @property
    def free(self) -> int:
        return max(0, self.limit - len(self.data))

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def append(self, data: bytes | bytearray | memoryview) -> int:
        n = min(len(data), self.limit - len(self.data))
        if n <= 0:
            return 0
        try:
            self.account.charge(n)
        except KernelError:
            if not self.data:
                raise
            return 0
        self.data.append(data[:n] if n < len(data) else data)
        return n

    def peek(self, seq: int, n: int) -> bytes:
        return self.data.peek(seq - self.start, n)

    def drop_to(self, seq: int) -> int:
        n = min(seq - self.start, len(self.data))
        if n <= 0:
            return 0
        self.data.drop(n)
        self.start += n
        self.account.release(n)
        return n

    def free_all(self) -> None:
        if self.data:
            self.account.release(len(self.data))
            self.start += len(self.data)
            self.data.clear()


class ReceiveBuffer:
    __slots__ = ("account", "data", "limit", "ooo", "ooo_bytes", "recent")

    def __init__(self, limit: int, account: BufferAccount = NULL_ACCOUNT) -> None:
        self.data = ByteQueue()         # in-order bytes not yet read
        self.limit = limit
        self.account = account
        self.ooo: list[list] = []      # sorted disjoint [start, end, bytes]
        self.ooo_bytes = 0
        self.recent: list[int] = []    # starts of ooo ranges, most recently changed first

    @property
    def readable(self) -> int:
        return len(self.data)

    @property
    def used(self) -> int:
        return len(self.data) + self.ooo_bytes

    @property
    def free(self) -> int:
        return max(0, self.limit - len(self.data) - self.ooo_bytes)

    def window_space(self) -> int:
        """Bytes beyond rcv_nxt the peer may send: limit less in-order bytes held.  Queued
        out-of-order bytes lie inside that window already."""
        return max(0, self.limit - len(self.data))

    def insert(self, seq: int, data: bytes, rcv_nxt: int) -> int:
        """Store ``data`` at ``seq`` (already trimmed to start at or after rcv_nxt and to end
        inside the window); return the new rcv_nxt."""
        if seq == rcv_nxt and not self.ooo:
            self.account.charge(len(data))
            self.data.append(data)
            return rcv_nxt + len(data)
        self._queue(seq, data)
        return self._pull(rcv_nxt)

    def _queue(self, seq: int, data: bytes) -> None:
        end = seq + len(data)
        ooo = self.ooo
        i = 0
        while i < len(ooo) and ooo[i][1] < seq:
            i += 1
        pieces = []
        cur = seq
        j = i
        while cur < end:
            if j < len(ooo) and ooo[j][0] <= cur:
                cur = max(cur, ooo[j][1])
                j += 1
                continue
            stop = min(end, ooo[j][0]) if j < len(ooo) else end
            pieces.append((cur, data[cur - seq:stop - seq]))
            cur = stop
        if not pieces:
            return
        added = sum(len(p) for _, p in pieces)
        self.account.charge(added)
        self.ooo_bytes += added
        for start, chunk in pieces:
            self._merge_in(start, chunk)
        self._touch(seq)

    def _merge_in(self, start: int, chunk: bytes) -> None:
        ooo = self.ooo
        end = start + len(chunk)
        i = 0
        while i < len(ooo) and ooo[i][1] < start:
            i += 1
        if i < len(ooo) and ooo[i][1] == start:
            ooo[i][2] += chunk
            ooo[i][1] = end
            if i + 1 < len(ooo) and ooo[i + 1][0] == end:
                nxt = ooo.pop(i + 1)
                ooo[i][2] += nxt[2]
                ooo[i][1] = nxt[1]
            return
        if i < len(ooo) and ooo[i][0] == end:
            ooo[i][2] = bytearray(chunk) + ooo[i][2]
            ooo[i][0] = start
            return
        ooo.insert(i, [start, end, bytearray(chunk)])

    def _touch(self, seq: int) -> None:
        start = next((r[0] for r in self.ooo if r[0] <= seq <= r[1]), None)
        if start is None:
            return
        recent = [s for s in self.recent if s != start and any(r[0] == s for r in self.ooo)]
        self.recent = [start, *recent][:8]

    def _pull(self, rcv_nxt: int) -> int:
        ooo = self.ooo
        while ooo and ooo[0][0] <= rcv_nxt:
            start, end, chunk = ooo.pop(0)
            self.ooo_bytes -= len(chunk)
            if end > rcv_nxt:
                self.data.append(chunk[rcv_nxt - start:])
                self.account.release(rcv_nxt - start)
                rcv_nxt = end
            else:
                self.account.release(len(chunk))
        if self.recent:
            self.recent = [s for s in self.recent if any(r[0] == s for r in ooo)]
        return rcv_nxt

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` out-of-order ranges: the most recently changed first (RFC 2018)."""
        by_start = {r[0]: r for r in self.ooo}
        out = [(by_start[s][0], by_start[s][1]) for s in self.recent if s in by_start]
        for r in self.ooo:
            if len(out) >= limit:
                break
            if (r[0], r[1]) not in out:
                out.append((r[0], r[1]))
        return out[:limit]

    def read(self, n: int, peek: bool = False) -> bytes:
        n = min(n, len(self.data))
        out = self.data.peek(0, n)
        if not peek and n:
            self.data.drop(n)
            self.account.release(n)
        return out

    def prune_ooo(self) -> int:
        """Drop the reassembly queue (memory pressure); returns the bytes released."""
        n = self.ooo_bytes
        if n:
            self.account.release(n)
        self.ooo = []
        self.ooo_bytes = 0
        self.recent = []
        return n

    def free_all(self) -> None:
        total = len(self.data) + self.ooo_bytes
        if total:
            self.account.release(total)
        self.data.clear()
        self.ooo = []
        self.ooo_bytes = 0
        self.recent = []
