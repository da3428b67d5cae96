"""The stub resolver's core, sans-IO (DESIGN rule 7): one name lookup as a state machine that
says which query to send to which server over UDP or TCP, takes the replies, and decides on
retries, server rotation, TCP fallback, the search list and CNAME chains.  The thin loop around
it owns the sockets and the clock.

Interface:
    Lookup(name, conf, families=(AF_INET, AF_INET6), hosts=None)
        ``conf`` a resolv_conf.ResolvConf; ``hosts`` a resolv_conf.Hosts consulted first
    start(now, rand)                          ``rand(n) -> [0, n)`` picks query ids
    take_output() -> [Send(server, port, payload, tcp, id)]
        ``payload`` is the DNS message; over TCP the caller frames it (dns.tcp_frame), opens
        the connection and hands back the whole reply; a new Send for the same query means the
        old one is abandoned
    input(server, port, payload, now, rand, tcp=False) -> bool
        a reply; False when it does not answer our outstanding query (wrong server, id or
        question, not a response, unparsable) -- such replies are ignored and counted
    timeout(now, rand);  deadline -> int | None
    done -> bool;  result -> Result | None
    Result(error, canonical, addresses, ttl)  ``error`` one of OK, NONAME (NXDOMAIN everywhere,
        or no such name in hosts and no server had it), NODATA (the name exists, no address of
        the asked families), AGAIN (every server timed out or failed temporarily), FAIL
        (a server refused or the answer was malformed); ``addresses`` [(family, bytes)] with
        IPv4 first when both were asked for
    candidates(name, conf) -> [Name]   the search-list expansion (ndots, trailing dot)

Rules: each (name, type) query goes to each server in turn, ``conf.attempts`` rounds, the
per-try timeout ``conf.timeout_s`` doubling each round (capped at 30 s); a truncated UDP reply
is retried over TCP to the same server (the TC answer is not used); SERVFAIL/REFUSED/NOTIMP
move to the next server; NXDOMAIN moves to the next search candidate; a CNAME chain is
followed inside the answer for at most MAX_CNAME links (a loop ends it); at most MAX_ADDRS
addresses are returned.  Names are compared ASCII case-insensitively.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rumpkernel.kern.abi import AF_INET, AF_INET6
from rumpkernel.net.inet.resolv_conf import Hosts, ResolvConf
from rumpkernel.net.wire import dns
from rumpkernel.net.wire.base import FormatError

SEC = 10**9
OK, NONAME, NODATA, AGAIN, FAIL = "ok", "noname", "nodata", "again", "fail"
MAX_CNAME = 8
MAX_ADDRS = 64
DNS_PORT = 53
Rand = Callable[[int], int]
_QTYPE = {AF_INET: dns.A, AF_INET6: dns.AAAA}


@dataclass(frozen=True, slots=True)
class Send:
    server: bytes
    port: int
    payload: bytes
    tcp: bool
    id: int


@dataclass(frozen=True, slots=True)
class Result:
    error: str
    canonical: str = ""
    addresses: tuple[tuple[int, bytes], ...] = ()
    ttl: int = 0


def candidates(name: str, conf: ResolvConf) -> list[dns.Name]:
    """The names to try, in order (resolv.conf(5) ndots and search)."""
    if name.endswith("."):
        return [dns.name(name)]
    base = dns.name(name)
    searched = []
    for d in conf.search:
        try:
            searched.append(dns.name(f"{name}.{d}"))
        except FormatError:
            continue
    if name.count(".") >= conf.ndots:
        return [base, *searched]
    return [*searched, base]


class Lookup:
    def __init__(self, name: str, conf: ResolvConf,
                 families: tuple[int, ...] = (AF_INET, AF_INET6),
                 hosts: Hosts | None = None) -> None:
        self.name = name
        self.conf = conf
        self.families = tuple(f for f in (AF_INET, AF_INET6) if f in families)
        self.hosts = hosts
        self.output: list[Send] = []
        self.result: Result | None = None
        self.ignored = 0
        self.names: list[dns.Name] = []
        self.ni = 0                      # candidate index
        self.fi = 0                      # family index within the candidate
        self.found: list[tuple[int, bytes]] = []
        self.canonical = ""
        self.ttl = 0
        self.exists = False              # some candidate answered NOERROR
        self.errors: set[str] = set()
        self.si = 0                      # server index
        self.round = 0
        self.tries = 0                   # sends of the current query that went unanswered
        self.tcp = False
        self.qid = -1
        self.expires: int | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def deadline(self) -> int | None:
        return None if self.done else self.expires

    def take_output(self) -> list[Send]:
        o, self.output = self.output, []
        return o

    # ---- driving -----------------------------------------------------------------------------
    def start(self, now: int, rand: Rand) -> None:
        if self.hosts is not None and self._from_hosts():
            return
        try:
            self.names = candidates(self.name, self.conf)
        except FormatError:
            self.result = Result(NONAME)
            return
        if not self.families or not self.conf.nameservers:
            self.result = Result(NONAME)
            return
        self.si = rand(len(self.conf.nameservers)) if self.conf.rotate else 0
        self._send(now, rand)

    def _from_hosts(self) -> bool:
        assert self.hosts is not None
        found = [a for a in self.hosts.lookup(self.name) if a[0] in self.families]
        if not found:
            return False
        found.sort(key=lambda a: self.families.index(a[0]))
        self.result = Result(OK, self.hosts.canonical(self.name) or self.name,
                             tuple(found[:MAX_ADDRS]))
        return True

    def _qtype(self) -> int:
        return _QTYPE[self.families[self.fi]]

    def _send(self, now: int, rand: Rand) -> None:
        self.qid = rand(0x10000)
        msg = dns.query(self.qid, self.names[self.ni], self._qtype()).emit()
        server = self.conf.nameservers[self.si]
        tcp = self.tcp or self.conf.use_tcp
        self.output.append(Send(server, DNS_PORT, msg, tcp, self.qid))
        self.expires = now + min(self.conf.timeout_s << self.round, 30) * SEC

    def timeout(self, now: int, rand: Rand) -> None:
        if self.done or self.expires is None or now < self.expires:
            return
        self.errors.add(AGAIN)
        self._next_server(now, rand)

    def _next_server(self, now: int, rand: Rand) -> None:
        """Try the same query on the next server; after every server, the next round."""
        self.tcp = False
        n = len(self.conf.nameservers)
        self.si = (self.si + 1) % n
        self.tries += 1
        if self.tries >= n * self.conf.attempts:
            self._query_failed(now, rand)
            return
        if self.tries % n == 0:
            self.round += 1
        self._send(now, rand)

    def _query_failed(self, now: int, rand: Rand) -> None:
        """No server answered this (name, type): the lookup ends (OK if something was found)."""
        self._finish(FAIL if FAIL in self.errors and AGAIN not in self.errors else AGAIN)

    # ---- replies -----------------------------------------------------------------------------
    def input(self, server: bytes, port: int, payload: bytes, now: int, rand: Rand,
              tcp: bool = False) -> bool:
        if self.done or server != self.conf.nameservers[self.si] or port != DNS_PORT:
            self.ignored += 1
            return False
        try:
            m = dns.parse(payload)
        except FormatError:
            self.ignored += 1
            return False
        q = dns.Question(self.names[self.ni], self._qtype())
        if not m.qr or m.id != self.qid or len(m.questions) != 1 \
                or not dns.name_eq(m.questions[0].name, q.name) \
                or (m.questions[0].qtype, m.questions[0].qclass) != (q.qtype, q.qclass):
            self.ignored += 1
            return False
        if m.tc and not tcp:
            self.tcp = True                  # retry this query over TCP, same server
            self._send(now, rand)
            return True
        self._answer(m, now, rand)
        return True

    def _answer(self, m: dns.Message, now: int, rand: Rand) -> None:
        rc = m.rcode
        if rc == dns.NXDOMAIN:
            self._next_name(now, rand)
        elif rc == dns.NOERROR:
            self.exists = True
            self._collect(m)
            self._next_family(now, rand)
        else:                                 # SERVFAIL, REFUSED, NOTIMP, FORMERR ...
            self.errors.add(FAIL if rc in (dns.REFUSED, dns.NOTIMP, dns.FORMERR) else AGAIN)
            self._next_server(now, rand)

    def _collect(self, m: dns.Message) -> None:
        want = self._qtype()
        target = self.names[self.ni]
        seen = [target]
        for _ in range(MAX_CNAME):
            nxt = next((r.data for r in m.answers if r.rtype == dns.CNAME
                        and dns.name_eq(r.name, target)), None)
            if nxt is None or any(dns.name_eq(nxt, s) for s in seen):
                break
            target = nxt
            seen.append(nxt)
        fam = self.families[self.fi]
        for r in m.answers:
            if r.rtype == want and r.rclass == dns.IN and dns.name_eq(r.name, target) \
                    and len(self.found) < MAX_ADDRS:
                self.found.append((fam, r.data))
                self.ttl = r.ttl if not self.ttl else min(self.ttl, r.ttl)
                self.canonical = self.canonical or dns.name_text(target)

    def _next_family(self, now: int, rand: Rand) -> None:
        self._reset_tries()
        self.fi += 1
        if self.fi < len(self.families):
            self._send(now, rand)
        elif self.found:
            self._finish(OK)
        else:
            self._finish(NODATA)

    def _next_name(self, now: int, rand: Rand) -> None:
        self._reset_tries()
        if self.found:                        # e.g. A found, AAAA said NXDOMAIN
            self._finish(OK)
            return
        self.ni += 1
        self.fi = 0
        if self.ni < len(self.names):
            self._send(now, rand)
        else:
            self._finish(NODATA if self.exists else NONAME)

    def _reset_tries(self) -> None:
        self.tries = 0
        self.round = 0
        self.tcp = False

    def _finish(self, error: str) -> None:
        if self.found:
            error = OK
        self.result = Result(error, self.canonical or (dns.name_text(self.names[self.ni])
                                                        if self.ni < len(self.names) else ""),
                             tuple(self.found), self.ttl)
        self.expires = None
