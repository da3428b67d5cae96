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

from rumpkernel.net.reass import ReassQueue, ReassTable

MAX_DATAGRAM = 65535 - 20


class Reassembler(ReassTable):
    def __init__(self, timeout_ns: int = 30 * 10**9, max_bytes: int = 1 << 20,
                 max_queues: int = 64, max_frags: int = 128) -> None:
        super().__init__(timeout_ns, max_bytes, max_queues, max_frags)

    def add(self, key: tuple, offset: int, more: bool, data: bytes, header: bytes,
            now: int) -> tuple[bytes, bytes] | None:
        end = offset + len(data)
        if (more and len(data) % 8) or end > MAX_DATAGRAM or (more and not data):
            self.bad += 1
            self._drop(key)
            return None
        q = self._queue(key, len(data), now)
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
        if not self._hold(key, q, sum(len(d) for _, d in new)):
            return None
        q.pieces.extend(new)
        q.pieces.sort(key=lambda p: p[0])
        if q.total is not None and q.bytes == q.total and q.first is not None:
            self._done(key, q)
            return b"".join(d for _, d in q.pieces), q.first
        return None

    @staticmethod
    def _trim(q: ReassQueue, offset: int, data: bytes) -> list[tuple[int, bytes]]:
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

    def timeout(self, now: int) -> list[tuple[bytes, bytes]]:
        return [(q.first, q.pieces[0][1][:8]) for q in self._expired(now)
                if q.first is not None and q.pieces and q.pieces[0][0] == 0]
