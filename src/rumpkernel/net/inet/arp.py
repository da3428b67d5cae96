"""The ARP cache of one interface as a sans-IO state machine (DESIGN rule 7): addresses, time
and received packets in; link addresses, requests to send, packets to release and the next
deadline out.  ``if_ether`` does the I/O and arms a callout for ``deadline``.

Interface:
    ArpCache(keep_ns=20 min, down_ns=20 s, retry_ns=1 s, maxtries=5, maxhold=100)
    resolve(ip, pkt, now) -> bytes | None   the link address, or None when ``pkt`` was held
                                            (EHOSTDOWN for an address that did not answer
                                            ``maxtries`` requests, until ``down_ns`` passed)
    take_requests() -> [ip]                 addresses to send a request for now
    learn(ip, mac, now, create) -> [pkt]    a sender seen in an ARP packet: update the entry
                                            (create it when the packet was for us) and return
                                            the packets it held
    timeout(now) -> [dropped packets]       retries, expiry of entries and of "down" marks
    deadline -> int | None                  when ``timeout`` has work
    add(ip, mac, permanent) / delete(ip) (ENXIO) / entries() -> [(ip, mac, state, expires)]
    held_bytes                              bytes of packets waiting for resolution

Rules: at most ``maxhold`` packets (Linux's unres_qlen: a 60 KB datagram's fragments fit) and
``MAX_HOLD_BYTES`` wait per address (the oldest are dropped beyond them); an
incomplete entry is asked ``maxtries`` times, ``retry_ns`` apart, then marked down and its
packets dropped; a resolved entry lives ``keep_ns`` after it was last confirmed; permanent
entries never expire and are never overwritten by traffic.
"""

from __future__ import annotations

from collections import deque

from rumpkernel.kern.errno import Errno, KernelError

INCOMPLETE, REACHABLE, PERMANENT, DOWN = "incomplete", "reachable", "permanent", "down"
MAX_HOLD_BYTES = 256 * 1024


class ArpEntry:
    __slots__ = ("expires", "held", "ip", "mac", "next_try", "state", "tries")

    def __init__(self, ip: bytes, state: str) -> None:
        self.ip = ip
        self.mac: bytes | None = None
        self.state = state
        self.expires = 0
        self.tries = 0
        self.next_try = 0
        self.held: deque[bytes] = deque()


class ArpCache:
    def __init__(self, keep_ns: int = 1200 * 10**9, down_ns: int = 20 * 10**9,
                 retry_ns: int = 10**9, maxtries: int = 5, maxhold: int = 100,
                 maxentries: int = 4096) -> None:
        self.keep_ns = keep_ns
        self.down_ns = down_ns
        self.retry_ns = retry_ns
        self.maxtries = maxtries
        self.maxhold = maxhold
        self.maxentries = maxentries
        self.table: dict[bytes, ArpEntry] = {}
        self.requests: list[bytes] = []
        self.held_bytes = 0
        self.dropped = 0

    # ---- resolution ------------------------------------------------------------------------
    def resolve(self, ip: bytes, pkt: bytes, now: int) -> bytes | None:
        e = self.table.get(ip)
        if e is not None:
            if e.state in (REACHABLE, PERMANENT) and (e.state == PERMANENT or e.expires > now):
                return e.mac
            if e.state == DOWN:
                if e.expires > now:
                    raise KernelError(Errno.EHOSTDOWN, "host did not answer ARP")
                del self.table[ip]
                e = None
            elif e.state == REACHABLE:          # expired: ask again, keep using nothing
                e.state, e.tries, e.mac = INCOMPLETE, 0, None
        if e is None:
            if len(self.table) >= self.maxentries:
                self._evict(now)
            e = self.table[ip] = ArpEntry(ip, INCOMPLETE)
        self._hold(e, pkt)
        if e.tries == 0 or e.next_try <= now:
            self._ask(e, now)
        return None

    def _hold(self, e: ArpEntry, pkt: bytes) -> None:
        e.held.append(pkt)
        self.held_bytes += len(pkt)
        while len(e.held) > self.maxhold or (len(e.held) > 1 and sum(map(len, e.held))
                                             > MAX_HOLD_BYTES):
            old = e.held.popleft()
            self.held_bytes -= len(old)
            self.dropped += 1

    def _ask(self, e: ArpEntry, now: int) -> None:
        e.tries += 1
        e.next_try = now + self.retry_ns
        self.requests.append(e.ip)

    def take_requests(self) -> list[bytes]:
        r, self.requests = self.requests, []
        return r

    def _evict(self, now: int) -> None:
        victims = sorted((e for e in self.table.values() if e.state != PERMANENT),
                         key=lambda e: e.expires)
        for e in victims[: max(1, len(victims) // 8)]:
            self._release(e)
            del self.table[e.ip]

    def _release(self, e: ArpEntry) -> list[bytes]:
        pkts = list(e.held)
        e.held.clear()
        self.held_bytes -= sum(len(p) for p in pkts)
        return pkts

    # ---- learning --------------------------------------------------------------------------
    def learn(self, ip: bytes, mac: bytes, now: int, create: bool) -> list[bytes]:
        e = self.table.get(ip)
        if e is None:
            if not create:
                return []
            if len(self.table) >= self.maxentries:
                self._evict(now)
            e = self.table[ip] = ArpEntry(ip, REACHABLE)
        if e.state == PERMANENT:
            return []
        e.mac = mac
        e.state = REACHABLE
        e.expires = now + self.keep_ns
        e.tries = 0
        return self._release(e)

    # ---- time --------------------------------------------------------------------------------
    def timeout(self, now: int) -> list[bytes]:
        dropped: list[bytes] = []
        for e in list(self.table.values()):
            if e.state == INCOMPLETE and e.next_try <= now:
                if e.tries >= self.maxtries:
                    dropped += self._release(e)
                    e.state = DOWN
                    e.expires = now + self.down_ns
                else:
                    self._ask(e, now)
            elif e.state in (REACHABLE, DOWN) and e.expires <= now:
                del self.table[e.ip]
        self.dropped += len(dropped)
        return dropped

    @property
    def deadline(self) -> int | None:
        times = [e.next_try if e.state == INCOMPLETE else e.expires
                 for e in self.table.values() if e.state != PERMANENT]
        return min(times) if times else None

    # ---- administration --------------------------------------------------------------------
    def add(self, ip: bytes, mac: bytes, permanent: bool, now: int) -> list[bytes]:
        e = self.table.get(ip)
        if e is None:
            e = self.table[ip] = ArpEntry(ip, REACHABLE)
        e.mac = mac
        e.state = PERMANENT if permanent else REACHABLE
        e.expires = now + self.keep_ns
        return self._release(e)

    def delete(self, ip: bytes) -> list[bytes]:
        e = self.table.pop(ip, None)
        if e is None:
            raise KernelError(Errno.ENXIO, "no ARP entry for that address")
        return self._release(e)

    def flush(self) -> list[bytes]:
        out: list[bytes] = []
        for e in self.table.values():
            out += self._release(e)
        self.table.clear()
        return out

    def entries(self) -> list[tuple[bytes, bytes | None, str, int]]:
        return [(e.ip, e.mac, e.state, e.expires) for e in self.table.values()]
