"""Host side of the in-process wire: an Ethernet hub joining kernels of one process, with
seeded fault injection (loss, duplication, reordering, delay, jitter, corruption, bandwidth).

On the sim host the hub belongs to the kernels' ``SimWorld``: its locks are the world's, its
clock the virtual clock, its randomness seeded from the world's seed and the hub's name, so a
run of kernels on a faulty wire replays exactly.  On the posix host it is a real-time hub.

Interface (``host.companion("wire", 1)``):
    attach(name) -> Port          join hub ``name`` (made on first use)
    configure(name, **faults)     Faults fields: loss, duplicate, reorder, corrupt
                                  (probabilities 0..1), delay_ns, jitter_ns, reorder_ns (extra
                                  delay of a reordered frame), bandwidth_bps (0: unlimited),
                                  seed (posix host; sim hubs derive theirs)
    hub(name) -> Hub              counters: sent, delivered, lost, duplicated, corrupted,
                                  reordered, overflows
    Port.send(frame) / Port.recv() -> bytes | None (None once closed) / Port.close()
    Port.info() -> dict

Rules: a frame goes to every other port of the hub (a hub, not a switch); a port holds at most
``PORT_QUEUE`` frames (more are dropped and counted); send never blocks.  A hub is forgotten
when its last port closes.
"""

from __future__ import annotations

import heapq
import random
import threading
from dataclasses import dataclass, fields
from typing import Any

VERSION = 1
HOSTS = ("posix", "sim")
PORT_QUEUE = 4096

_registry_lock = threading.Lock()
_HUBS: dict[tuple[Any, str], Hub] = {}


@dataclass
class Faults:
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay_ns: int = 0
    jitter_ns: int = 0
    reorder_ns: int = 2_000_000
    bandwidth_bps: int = 0
    seed: int | str | None = None


class Port:
    def __init__(self, hub: Hub, host: Any) -> None:
        self.hub = hub
        self.mtx = host.mutex_create()
        self.cv = host.cv_create()
        self.q: list[tuple[int, int, bytes]] = []
        self.closed = False
        self.received = 0
        self.overflows = 0

    def send(self, frame: bytes) -> None:
        self.hub.send(self, bytes(frame))

    def _push(self, at: int, seq: int, frame: bytes) -> None:
        self.mtx.enter()
        try:
            if self.closed:
                return
            if len(self.q) >= PORT_QUEUE:
                self.overflows += 1
                self.hub.overflows += 1
                return
            heapq.heappush(self.q, (at, seq, frame))
            self.cv.signal()
        finally:
            self.mtx.exit()

    def recv(self) -> bytes | None:
        clock = self.hub.clock
        self.mtx.enter()
        try:
            while True:
                if self.closed:
                    return None
                if self.q:
                    wait = self.q[0][0] - clock()
                    if wait <= 0:
                        self.received += 1
                        return heapq.heappop(self.q)[2]
                    self.cv.wait(self.mtx, wait)
                else:
                    self.cv.wait(self.mtx, None)
        finally:
            self.mtx.exit()

    def close(self) -> None:
        self.mtx.enter()
        try:
            self.closed = True
            self.q.clear()
            self.cv.broadcast()
        finally:
            self.mtx.exit()
        self.hub.leave(self)

    def info(self) -> dict[str, Any]:
        return {"hub": self.hub.name, "received": self.received, "overflows": self.overflows,
                "ports": len(self.hub.ports)}


class Hub:
    def __init__(self, key: Any, name: str, host: Any, seed: Any) -> None:
        self.key = key
        self.name = name
        self.clock = host.clock_monotonic_ns
        self.mtx = host.mutex_create()
        self.faults = Faults()
        self.ports: list[Port] = []
        self.rng = random.Random(seed)
        self.seq = 0
        self.busy_until = 0
        self.sent = self.delivered = self.lost = self.duplicated = 0
        self.corrupted = self.reordered = self.overflows = 0

    def configure(self, **kw: Any) -> None:
        known = {f.name for f in fields(Faults)}
        bad = set(kw) - known
        if bad:
            raise ValueError(f"unknown wire faults {sorted(bad)}; known: {sorted(known)}")
        for k, v in kw.items():
            setattr(self.faults, k, v)
        if kw.get("seed") is not None:
            self.rng = random.Random(kw["seed"])

    def leave(self, port: Port) -> None:
        self.mtx.enter()
        try:
            if port in self.ports:
                self.ports.remove(port)
            empty = not self.ports
        finally:
            self.mtx.exit()
        if empty:                      # the last kernel left: forget the hub
            with _registry_lock:
                if _HUBS.get(self.key) is self:
                    del _HUBS[self.key]

    def send(self, src: Port, frame: bytes) -> None:
        f = self.faults
        now = self.clock()
        self.mtx.enter()
        try:
            self.sent += 1
            rng = self.rng
            at = now
            if f.bandwidth_bps:
                start = max(now, self.busy_until)
                self.busy_until = start + len(frame) * 8 * 1_000_000_000 // f.bandwidth_bps
                at = self.busy_until
            plan = []
            for port in self.ports:
                if port is src:
                    continue
                if f.loss and rng.random() < f.loss:
                    self.lost += 1
                    continue
                copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
                self.duplicated += copies - 1
                for _ in range(copies):
                    data = frame
                    if f.corrupt and rng.random() < f.corrupt and data:
                        i = rng.randrange(len(data))
                        data = data[:i] + bytes((data[i] ^ (1 << rng.randrange(8)),)) \
                            + data[i + 1 :]
                        self.corrupted += 1
                    t = at + f.delay_ns
                    if f.jitter_ns:
                        t += rng.randrange(f.jitter_ns + 1)
                    if f.reorder and rng.random() < f.reorder:
                        t += f.reorder_ns
                        self.reordered += 1
                    self.seq += 1
                    plan.append((port, t, self.seq, data))
            self.delivered += len(plan)
        finally:
            self.mtx.exit()
        for port, t, seq, data in plan:
            port._push(t, seq, data)


def _key(host: Any) -> Any:
    return getattr(host, "world", None) or "posix"


class WireCompanion:
    def __init__(self, host: Any) -> None:
        self.host = host

    def hub(self, name: str) -> Hub:
        key = (_key(self.host), name)
        with _registry_lock:
            hub = _HUBS.get(key)
            if hub is None:
                world = getattr(self.host, "world", None)
                seed = f"{world.seed}/wire/{name}" if world is not None else f"wire/{name}"
                hub = _HUBS[key] = Hub(key, name, self.host, seed)
            return hub

    def attach(self, name: str) -> Port:
        hub = self.hub(name)
        port = Port(hub, self.host)
        hub.mtx.enter()
        try:
            hub.ports.append(port)
        finally:
            hub.mtx.exit()
        return port

    def configure(self, name: str, **faults: Any) -> None:
        self.hub(name).configure(**faults)


def companion(host: Any) -> WireCompanion:
    return WireCompanion(host)


def forget(host: Any, name: str) -> None:
    """Drop a hub from the registry (tests that reuse names)."""
    with _registry_lock:
        _HUBS.pop((_key(host), name), None)
