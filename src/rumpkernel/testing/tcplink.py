"""Two sans-IO TCP stacks joined by a seeded, faulty in-memory link on a virtual clock.

Interface:
    LinkConfig(delay, jitter, loss, dup, reorder, reorder_delay, corrupt, rate, queue_bytes)
        -- per-direction behaviour: one-way delay (s), uniform extra jitter (s), loss,
           duplication, reordering (extra delay with probability ``reorder``) and corruption
           (one random bit flipped) probabilities, bottleneck ``rate`` in bytes/s (None:
           infinite) with a drop-tail queue of ``queue_bytes``.
    TcpLinkNet(seed, link=LinkConfig(), config_a=None, config_b=None)
        .a, .b        -- TcpStack at ADDR_A / ADDR_B
        .now          -- virtual time (s)
        .run(until=None, cond=None, max_events=...) -- deliver frames and fire timers in time
                         order until ``cond()`` is true or time ``until``; ``apps`` callbacks
                         (net.apps.append(fn)) run after every event
        .connect(...), .listen(...) shortcuts; .frames, .dropped, .corrupted counters
    BulkTransfer(net, tx, rx, nbytes, seed) -- app: writes a pseudorandom stream into ``tx``,
                         reads ``rx``, checks byte-exactness incrementally (sha256 of both
                         sides), shuts ``tx`` down for writing at the end when ``close`` is
                         set (the receiver then sees end of stream).

Everything random comes from one random.Random(seed), so a run replays exactly.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from dataclasses import dataclass

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.inet.tcp_config import TcpConfig
from rumpkernel.net.inet.tcp_engine import EV_READABLE, SHUT_WR
from rumpkernel.net.inet.tcp_stack import TcpStack

ADDR_A = bytes([10, 0, 0, 1])
ADDR_B = bytes([10, 0, 0, 2])


@dataclass(slots=True)
class LinkConfig:
    delay: float = 0.005
    jitter: float = 0.0
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.004
    corrupt: float = 0.0
    rate: float | None = None
    queue_bytes: int = 256 * 1024


class _Direction:
    __slots__ = ("busy_until", "cfg", "queued")

    def __init__(self, cfg: LinkConfig) -> None:
        self.cfg = cfg
        self.busy_until = 0.0
        self.queued: list[tuple[float, int]] = []


class TcpLinkNet:
    def __init__(self, seed: int, link: LinkConfig | None = None,
                 config_a: TcpConfig | None = None, config_b: TcpConfig | None = None,
                 link_ba: LinkConfig | None = None) -> None:
        self.rng = random.Random(seed)
        self.a = TcpStack(self.rng.randbytes(32), config_a)
        self.b = TcpStack(self.rng.randbytes(32), config_b)
        link = link or LinkConfig()
        self.dirs = {id(self.a): _Direction(link), id(self.b): _Direction(link_ba or link)}
        self.peer = {id(self.a): self.b, id(self.b): self.a}
        self.now = 0.0
        self.events: list = []
        self._seq = itertools.count()
        self.apps: list = []
        self.frames = self.dropped = self.corrupted = self.duplicated = 0

    def _transmit(self, stack: TcpStack) -> None:
        d = self.dirs[id(stack)]
        cfg = d.cfg
        rng = self.rng
        peer = self.peer[id(stack)]
        for src, dst, frame in stack.take_output_bytes():
            self.frames += 1
            if cfg.loss and rng.random() < cfg.loss:
                self.dropped += 1
                continue
            t = self.now
            if cfg.rate:
                while d.queued and d.queued[0][0] <= t:
                    d.queued.pop(0)
                if sum(n for _, n in d.queued) + len(frame) > cfg.queue_bytes:
                    self.dropped += 1
                    continue
                start = max(t, d.busy_until)
                d.busy_until = start + (len(frame) + 40) / cfg.rate
                d.queued.append((d.busy_until, len(frame)))
                t = d.busy_until
            copies = 2 if cfg.dup and rng.random() < cfg.dup else 1
            self.duplicated += copies - 1
            for _ in range(copies):
                arrive = t + cfg.delay
                if cfg.jitter:
                    arrive += rng.random() * cfg.jitter
                if cfg.reorder and rng.random() < cfg.reorder:
                    arrive += cfg.reorder_delay * (0.5 + rng.random())
                data = frame
                if cfg.corrupt and rng.random() < cfg.corrupt:
                    bit = rng.randrange(len(frame) * 8)
                    b = bytearray(frame)
                    b[bit >> 3] ^= 1 << (bit & 7)
                    data = bytes(b)
                    self.corrupted += 1
                heapq.heappush(self.events, (arrive, next(self._seq), peer, src, dst, data))

    def flush(self) -> None:
        self._transmit(self.a)
        self._transmit(self.b)

    def run(self, until: float | None = None, cond=None, max_events: int = 50_000_000) -> bool:
        """Advance virtual time; True when ``cond()`` became true (or ``until`` was reached
        with no ``cond``)."""
        a, b = self.a, self.b
        for app in self.apps:
            app()
        self.flush()
        for _ in range(max_events):
            if cond is not None and cond():
                return True
            t = self.events[0][0] if self.events else None
            for s in (a, b):
                d = s.deadline
                if d is not None and (t is None or d < t):
                    t = d
            if t is None or (until is not None and t > until):
                if until is not None:
                    self.now = max(self.now, until)
                return cond is None
            if t > self.now:
                self.now = t
            now = self.now
            events = self.events
            while events and events[0][0] <= now:
                _, _, stack, src, dst, frame = heapq.heappop(events)
                stack.input_bytes(src, dst, frame, now)
            for s in (a, b):
                d = s.deadline
                if d is not None and d <= now:
                    s.timeout(now)
            for app in self.apps:
                app()
            self.flush()
        raise RuntimeError("event limit reached")


_BLOCK_LEN = 1_000_003  # prime: misplaced segments change the stream's hash


class BulkTransfer:
    """Stream ``nbytes`` from ``tx`` to ``rx`` through ``net``; check them byte for byte."""

    def __init__(self, net: TcpLinkNet, tx, rx, nbytes: int, seed: int = 0,
                 close: bool = True) -> None:
        rng = random.Random(seed)
        self.block = rng.randbytes(_BLOCK_LEN) * 2
        self.net, self.tx, self.rx, self.nbytes, self.close = net, tx, rx, nbytes, close
        self.sent = self.received = 0
        self.tx_hash = hashlib.sha256()
        self.rx_hash = hashlib.sha256()
        self.eof = False
        self.closed = False
        self.error: Errno | None = None
        net.apps.append(self.step)

    def step(self) -> None:
        now = self.net.now
        tx, rx = self.tx, self.rx
        while self.sent < self.nbytes and (tx.sndbuf.free or tx.so_error is not None):
            off = self.sent % _BLOCK_LEN
            chunk = memoryview(self.block)[off:off + min(self.nbytes - self.sent, 262144)]
            try:
                n = tx.send(chunk, now)
            except KernelError as e:
                if e.errno != Errno.EAGAIN:
                    self.error = e.errno
                break
            self.tx_hash.update(chunk[:n])
            self.sent += n
        if self.sent >= self.nbytes and self.close and not self.closed:
            self.closed = True
            tx.shutdown(SHUT_WR, now)
        while not self.eof and (rx.events & EV_READABLE):
            try:
                data = rx.recv(1 << 20, now)
            except KernelError as e:
                if e.errno != Errno.EAGAIN:
                    self.error = e.errno
                break
            if not data:
                self.eof = True
                break
            self.rx_hash.update(data)
            self.received += len(data)

    @property
    def done(self) -> bool:
        return self.received >= self.nbytes and (self.eof or not self.close)

    @property
    def exact(self) -> bool:
        return self.received == self.sent == self.nbytes and \
            self.tx_hash.digest() == self.rx_hash.digest()
