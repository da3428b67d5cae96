"""The neighbour cache of one interface (RFC 4861 7.3), a sans-IO state machine (DESIGN
rule 7): addresses, received ND facts and time in; link addresses, solicitations to send,
packets to release or drop and the next deadline out.  The interface layer does the I/O and
arms a callout for ``deadline``.

Interface:
    NeighborCache(reachable_ns=30 s, retrans_ns=1 s, delay_ns=5 s, max_multicast=3,
                  max_unicast=3, maxhold=16, maxentries=1024)
    fast(ip, now) -> bytes | None             the link address of a REACHABLE neighbour (nothing
                                              else changes: the per-packet fast path), or None
    resolve(ip, pkt, now) -> bytes | None     the link address to send ``pkt`` to, or None when
                                              ``pkt`` is held until resolution (at most
                                              ``maxhold`` per neighbour; the oldest is dropped)
    take_solicitations() -> [(target, lladdr | None)]
                                              NS to send now: None -> multicast to the target's
                                              solicited-node group; else unicast to ``lladdr``
    advertised(target, lladdr, router, solicited, override, now) -> [pkt]
                                              a received NA (RFC 4861 7.2.5); returns the
                                              packets that were waiting for it
    learn(ip, lladdr, now, router=None) -> [pkt]
                                              a source link-layer option in an NS, RS, RA or
                                              redirect (7.2.3, 6.2.6, 6.3.4); ``router``
                                              True/False sets IsRouter
    confirm(ip, now)                          upper-layer reachability hint (TCP progress)
    timeout(now) -> [pkt]                     run the state timers; returns packets of
                                              neighbours that never answered (the caller
                                              sends ICMPv6 address unreachable for them)
    deadline -> int | None
    take_lost_routers() -> [ip]               neighbours whose IsRouter went from true to false
                                              (remove them from the default router list)
    set_reachable(base_ns, rand) / set_retrans(ns)   RA parameters; ReachableTime is base *
                                              uniform(0.5, 1.5) from ``rand(n) -> [0, n)``
    add(ip, lladdr, now, permanent=True) / delete(ip) (ENXIO) / flush() -> [pkt] /
    entries() -> [NeighborInfo]; state(ip) -> str | None; is_router(ip) -> bool
    counters: dropped (held packets dropped), failed (resolutions that failed), evicted

States: INCOMPLETE, REACHABLE, STALE, DELAY, PROBE (RFC 4861) and PERMANENT (static).
Rules: an NA for an address with no entry is ignored; an NA without a target link-layer
option never completes an INCOMPLETE entry; REACHABLE decays to STALE after ReachableTime;
sending to a STALE neighbour moves it to DELAY, then PROBE (unicast NS every RetransTimer,
``max_unicast`` times) unless confirmed; a full table evicts STALE entries least recently
used first, never INCOMPLETE entries that hold packets unless nothing else is left.
Times are integer nanoseconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rumpkernel.kern.errno import Errno, KernelError

INCOMPLETE, REACHABLE, STALE, DELAY, PROBE, PERMANENT = (
    "incomplete", "reachable", "stale", "delay", "probe", "permanent")
SEC = 10**9
Rand = Callable[[int], int]


@dataclass(frozen=True, slots=True)
class NeighborInfo:
    ip: bytes
    lladdr: bytes | None
    state: str
    router: bool
    expires: int | None


class _Entry:
    __slots__ = ("expires", "held", "ip", "lladdr", "probes", "router", "state", "used")

    def __init__(self, ip: bytes, state: str, now: int) -> None:
        self.ip = ip
        self.state = state
        self.lladdr: bytes | None = None
        self.router = False
        self.expires = 0
        self.probes = 0
        self.used = now
        self.held: deque[bytes] = deque()


class NeighborCache:
    def __init__(self, reachable_ns: int = 30 * SEC, retrans_ns: int = SEC,
                 delay_ns: int = 5 * SEC, max_multicast: int = 3, max_unicast: int = 3,
                 maxhold: int = 16, maxentries: int = 1024) -> None:
        self.base_reachable_ns = reachable_ns
        self.reachable_ns = reachable_ns
        self.retrans_ns = retrans_ns
        self.delay_ns = delay_ns
        self.max_multicast = max_multicast
        self.max_unicast = max_unicast
        self.maxhold = maxhold
        self.maxentries = maxentries
        self.table: dict[bytes, _Entry] = {}
        self.solicits: list[tuple[bytes, bytes | None]] = []
        self.lost_routers: list[bytes] = []
        self.held_bytes = 0
        self.dropped = self.failed = self.evicted = 0

    # ---- parameters --------------------------------------------------------------------------
    def set_reachable(self, base_ns: int, rand: Rand) -> None:
        """BaseReachableTime from an RA; ReachableTime = base * uniform(0.5, 1.5) (6.3.4)."""
        self.base_reachable_ns = base_ns
        self.reachable_ns = base_ns // 2 + rand(base_ns + 1)

    def set_retrans(self, ns: int) -> None:
        self.retrans_ns = ns

    # ---- sending -----------------------------------------------------------------------------
    def fast(self, ip: bytes, now: int) -> bytes | None:
        e = self.table.get(ip)
        if e is None or e.state != REACHABLE or now >= e.expires:
            return None
        e.used = now
        return e.lladdr

    def resolve(self, ip: bytes, pkt: bytes, now: int) -> bytes | None:
        e = self.table.get(ip)
        if e is None:
            e = self._create(ip, INCOMPLETE, now)
            e.probes = 1
            e.expires = now + self.retrans_ns
            self.solicits.append((ip, None))
        e.used = now
        if e.state == INCOMPLETE:
            self._hold(e, pkt)
            return None
        if e.state == REACHABLE and now >= e.expires:
            e.state = STALE
        if e.state == STALE:
            e.state, e.expires = DELAY, now + self.delay_ns
        return e.lladdr

    def _hold(self, e: _Entry, pkt: bytes) -> None:
        if len(e.held) >= self.maxhold:
            old = e.held.popleft()
            self.held_bytes -= len(old)
            self.dropped += 1
        e.held.append(pkt)
        self.held_bytes += len(pkt)

    def _release(self, e: _Entry) -> list[bytes]:
        pkts = list(e.held)
        e.held.clear()
        self.held_bytes -= sum(len(p) for p in pkts)
        return pkts

    def _create(self, ip: bytes, state: str, now: int) -> _Entry:
        if len(self.table) >= self.maxentries:
            self._evict()
        e = self.table[ip] = _Entry(ip, state, now)
        return e

    def _evict(self) -> None:
        order = {STALE: 0, REACHABLE: 1, DELAY: 2, PROBE: 2, INCOMPLETE: 3}
        victims = sorted((e for e in self.table.values() if e.state != PERMANENT),
                         key=lambda e: (order[e.state], e.used))
        for e in victims[: max(1, len(victims) // 8)]:
            self.dropped += len(self._release(e))
            del self.table[e.ip]
            self.evicted += 1

    def take_solicitations(self) -> list[tuple[bytes, bytes | None]]:
        s, self.solicits = self.solicits, []
        return s

    def take_lost_routers(self) -> list[bytes]:
        r, self.lost_routers = self.lost_routers, []
        return r

    # ---- receiving ---------------------------------------------------------------------------
    def advertised(self, target: bytes, lladdr: bytes | None, router: bool, solicited: bool,
                   override: bool, now: int) -> list[bytes]:
        e = self.table.get(target)
        if e is None or e.state == PERMANENT:
            return []
        if e.state == INCOMPLETE:
            if lladdr is None:
                return []
            e.lladdr = lladdr
            self._set_router(e, router)
            self._reach(e, now) if solicited else self._stale(e)
            return self._release(e)
        changed = lladdr is not None and lladdr != e.lladdr
        if not override and changed:
            if e.state == REACHABLE:
                self._stale(e)
            return []
        if changed:
            e.lladdr = lladdr
        if solicited:
            self._reach(e, now)
        elif changed:
            self._stale(e)
        self._set_router(e, router)
        return []

    def learn(self, ip: bytes, lladdr: bytes, now: int, router: bool | None = None) -> list[bytes]:
        e = self.table.get(ip)
        if e is not None and e.state == PERMANENT:
            return []
        out: list[bytes] = []
        if e is None:
            e = self._create(ip, STALE, now)
            e.lladdr = lladdr
        elif e.state == INCOMPLETE:
            e.lladdr = lladdr
            self._stale(e)
            out = self._release(e)
        elif lladdr != e.lladdr:
            e.lladdr = lladdr
            self._stale(e)
        if router is not None:
            self._set_router(e, router)
        return out

    def confirm(self, ip: bytes, now: int) -> None:
        e = self.table.get(ip)
        if e is not None and e.lladdr is not None and e.state != PERMANENT:
            self._reach(e, now)

    def _reach(self, e: _Entry, now: int) -> None:
        e.state, e.expires, e.probes = REACHABLE, now + self.reachable_ns, 0

    @staticmethod
    def _stale(e: _Entry) -> None:
        e.state, e.probes = STALE, 0

    def _set_router(self, e: _Entry, router: bool) -> None:
        if e.router and not router:
            self.lost_routers.append(e.ip)
        e.router = router

    # ---- time --------------------------------------------------------------------------------
    def timeout(self, now: int) -> list[bytes]:
        failed: list[bytes] = []
        for e in list(self.table.values()):
            if e.state in (STALE, PERMANENT) or e.expires > now:
                continue
            if e.state == REACHABLE:
                self._stale(e)
            elif e.state == DELAY:
                e.state, e.probes, e.expires = PROBE, 1, now + self.retrans_ns
                self.solicits.append((e.ip, e.lladdr))
            elif e.probes < (self.max_multicast if e.state == INCOMPLETE else self.max_unicast):
                e.probes += 1
                e.expires = now + self.retrans_ns
                self.solicits.append((e.ip, e.lladdr if e.state == PROBE else None))
            else:
                failed += self._release(e)
                del self.table[e.ip]
                self.failed += 1
        return failed

    @property
    def deadline(self) -> int | None:
        return min((e.expires for e in self.table.values()
                    if e.state not in (STALE, PERMANENT)), default=None)

    # ---- administration ----------------------------------------------------------------------
    def add(self, ip: bytes, lladdr: bytes, now: int, permanent: bool = True) -> list[bytes]:
        e = self.table.get(ip) or self._create(ip, PERMANENT, now)
        e.lladdr = lladdr
        if permanent:
            e.state = PERMANENT
        else:
            self._reach(e, now)
        return self._release(e)

    def delete(self, ip: bytes) -> list[bytes]:
        e = self.table.pop(ip, None)
        if e is None:
            raise KernelError(Errno.ENXIO, "no neighbour entry for that address")
        return self._release(e)

    def flush(self) -> list[bytes]:
        out: list[bytes] = []
        for e in self.table.values():
            out += self._release(e)
        self.table.clear()
        return out

    def state(self, ip: bytes) -> str | None:
        e = self.table.get(ip)
        return e.state if e is not None else None

    def is_router(self, ip: bytes) -> bool:
        e = self.table.get(ip)
        return e is not None and e.router

    def probably_reachable(self, ip: bytes) -> bool:
        """For default router selection (6.3.6): known and not INCOMPLETE."""
        e = self.table.get(ip)
        return e is not None and e.state != INCOMPLETE

    def entries(self) -> list[NeighborInfo]:
        return [NeighborInfo(e.ip, e.lladdr, e.state, e.router,
                             None if e.state in (STALE, PERMANENT) else e.expires)
                for e in self.table.values()]
