"""The bounded table of datagrams being reassembled, shared by IPv4 (``net/inet/ip_reass.py``)
and IPv6 (``net/inet6/frag6.py``) reassembly.  Sans-IO: time is an argument.

Interface (a base class; the protocol's ``add`` decides what a fragment means):
    ReassTable(timeout_ns, max_bytes, max_queues, max_frags)
    _queue(key, need, now) -> queue     the datagram's queue, made (after making room) if new
    _hold(key, q, nbytes) -> bool       account ``nbytes`` more held data (making room first;
                                        False when that dropped this very datagram)
    _make_room(need, keep=None) / _drop(key)
    _expired(now) -> [queue]            queues past their deadline, dropped and counted
    deadline -> int | None;  held_bytes;  queues;  drop_all() -> bytes released
    counters: ``dropped`` (fragments), ``timeouts``, ``overflows`` (datagrams dropped for the
    bounds), ``bad`` (malformed)

Rules: when holding another fragment would pass ``max_bytes`` (or a new datagram ``max_queues``)
the oldest datagrams go first, so a fragment flood costs bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class ReassQueue:
    """One datagram's fragments: ``pieces`` (offset, data), ``total`` once the last fragment
    came, ``first`` what the offset-0 fragment brought, bytes held, expiry."""

    __slots__ = ("bytes", "expires", "first", "pieces", "total")

    def __init__(self, expires: int) -> None:
        self.pieces: list[tuple[int, bytes]] = []
        self.total: int | None = None
        self.first: Any = None
        self.expires = expires
        self.bytes = 0


class ReassTable:
    queue_class: type[ReassQueue] = ReassQueue

    def __init__(self, timeout_ns: int, max_bytes: int, max_queues: int,
                 max_frags: int) -> None:
        self.timeout_ns = timeout_ns
        self.max_bytes = max_bytes
        self.max_queues = max_queues
        self.max_frags = max_frags
        self.queues: OrderedDict[tuple, Any] = OrderedDict()
        self.held_bytes = 0
        self.dropped = 0
        self.timeouts = 0
        self.overflows = 0
        self.bad = 0

    def _queue(self, key: tuple, need: int, now: int) -> Any:
        q = self.queues.get(key)
        if q is None:
            self._make_room(need)
            q = self.queues[key] = self.queue_class(now + self.timeout_ns)
        return q

    def _hold(self, key: tuple, q: ReassQueue, nbytes: int) -> bool:
        if nbytes and self.held_bytes + nbytes > self.max_bytes:
            self._make_room(nbytes, keep=key)
            if key not in self.queues:
                return False
        q.bytes += nbytes
        self.held_bytes += nbytes
        return True

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

    def _done(self, key: tuple, q: ReassQueue) -> None:
        """A datagram is complete: it leaves the table."""
        del self.queues[key]
        self.held_bytes -= q.bytes

    def _expired(self, now: int) -> list[Any]:
        out = []
        for key, q in list(self.queues.items()):
            if q.expires <= now:
                self._drop(key)
                self.timeouts += 1
                out.append(q)
        return out

    @property
    def deadline(self) -> int | None:
        return min((q.expires for q in self.queues.values()), default=None)

    def drop_all(self) -> int:
        n = self.held_bytes
        for key in list(self.queues):
            self._drop(key)
        return n
