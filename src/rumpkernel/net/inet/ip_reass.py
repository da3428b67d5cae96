"""IPv4 reassembly as a sans-IO state machine, with a timeout and a memory bound.

Interface:
    Reassembler(timeout_ns=30 s, max_bytes=1 MiB, max_queues=64, max_frags=128)
    add(key, offset, more, data, header, now) -> (payload, first header) | None
            ``key`` is (src, dst, proto, ident); ``header`` the fragment's IP header (kept from
            the offset-0 fragment for the reassembled datagram and for ICMP time exceeded)
    timeout(now) -> [(first header, first 8 payload bytes)]   queues that timed out after their
            first fragment arrived (the caller sends ICMP time exceeded for those)
    deadline -> int | None;  held_bytes;  queues
    drop_all() -> bytes released;  counters: ``dropped`` (fragments), ``timeouts``,
            ``overflows`` (queues dropped for the memory bound), ``bad`` (malformed)

Rules: overlapping data keeps what arrived first (the new fragment is trimmed); a non-final
fragment whose length is not a multiple of 8, a second final fragment with a different end, or
data past the end drops the whole datagram; at most ``max_frags`` pieces per datagram; when
holding another fragment would pass ``max_bytes`` (or ``max_queues``) the oldest datagrams are
dropped first, so a fragment flood costs bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_DATAGRAM = 65535 - 20


class _Queue:
    __slots__ = ("bytes", "expires", "first", "pieces", "total")

    def __init__(self, expires: int) -> None:
        self.pieces: list[tuple[int, bytes]] = []    # sorted, non-overlapping
        self.total: int | None = None
        self.first: bytes | None = None             # header of the offset-0 fragment
        self.expires = expires
        self.bytes = 0


class Reassembler:
    def __init__(self, timeout_ns: int = 30 * 10**9, max_bytes: int = 1 << 20,
                 max_queues: int = 64, max_frags: int = 128) -> None:
        self.timeout_ns = timeout_ns
        self.max_bytes = max_bytes
        self.max_queues = max_queues
        self.max_frags = max_frags
        self.queues: OrderedDict[tuple, _Queue] = OrderedDict()
        self.held_bytes = 0
        self.dropped = 0
        self.timeouts = 0
        self.overflows = 0
        self.bad = 0

    def add(self, key: tuple, offset: int, more: bool, data: bytes, header: bytes,
            now: int) -> tuple[bytes, bytes] | None:
        end = offset + len(data)
        if (more and len(data) % 8) or end > MAX_DATAGRAM or (more and not data):
            self.bad += 1
            self._drop(key)
            return None
        q = self.queues.get(key)
        if q is None:
            self._make_room(len(data))
            q = self.queues[key] = _Queue(now + self.timeout_ns)
        if not more:
            if (q.total is not None and q.total != end) or (q.pieces and q.pieces[-1][0]
                                                            + len(q.pieces[-1][1]) > end):
                self.bad += 1
                self._drop(key)
                return None
            q.total = end
        elif q.total is not None and end > q.total:
            self.bad += 1
            self._drop(key)
            return None
        if offset == 0:
            q.first = header
        new = self._trim(q, offset, data)
        if len(q.pieces) + len(new) > self.max_frags:
            self.bad += 1
            self._drop(key)
            return None
        added = sum(len(d) for _, d in new)
        if added and self.held_bytes + added > self.max_bytes:
            self._make_room(added, keep=key)
            if key not in self.queues:
                return None
        q.pieces.extend(new)
        q.pieces.sort(key=lambda p: p[0])
        q.bytes += added
        self.held_bytes += added
        if q.total is not None and q.bytes == q.total and q.first is not None:
            del self.queues[key]
            self.held_bytes -= q.bytes
            return b"".join(d for _, d in q.pieces), q.first
        return None

    @staticmethod
    def _trim(q: _Queue, offset: int, data: bytes) -> list[tuple[int, bytes]]:
        pieces = [(offset, data)] if data else []
        for s, d in q.pieces:
            e = s + len(d)
            out = []
            for ps, pd in pieces:
                pe = ps + len(pd)
                if pe <= s or ps >= e:
                    out.append((ps, pd))
                    continue
                if ps < s:
                    out.append((ps, pd[: s - ps]))
                if pe > e:
                    out.append((e, pd[e - ps :]))
            pieces = out
        return pieces

    def _make_room(self, need: int, keep: tuple | None = None) -> None:
        while self.queues and (self.held_bytes + need > self.max_bytes
                               or len(self.queues) >= self.max_queues + (keep is not None)):
            victim = next(iter(self.queues))
            if victim == keep:
                if len(self.queues) == 1:
                    self._drop(victim)
                    self.overflows += 1
                    return
                self.queues.move_to_end(victim)
                victim = next(iter(self.queues))
            self._drop(victim)
            self.overflows += 1

    def _drop(self, key: tuple) -> None:
        q = self.queues.pop(key, None)
        if q is not None:
            self.held_bytes -= q.bytes
            self.dropped += len(q.pieces)

    def timeout(self, now: int) -> list[tuple[bytes, bytes]]:
        out = []
        for key, q in list(self.queues.items()):
            if q.expires <= now:
                self._drop(key)
                self.timeouts += 1
                if q.first is not None and q.pieces and q.pieces[0][0] == 0:
                    out.append((q.first, q.pieces[0][1][:8]))
        return out

    @property
    def deadline(self) -> int | None:
        return min((q.expires for q in self.queues.values()), default=None)

    def drop_all(self) -> int:
        n = self.held_bytes
        for key in list(self.queues):
            self._drop(key)
        return n
