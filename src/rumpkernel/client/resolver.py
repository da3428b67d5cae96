"""Name lookups for client programs: the thin loop around the sans-IO stub resolver
(net/inet/resolv.py) over the kernel's own sockets -- UDP, and TCP when an answer comes back
truncated -- with the kernel's /etc/resolv.conf and /etc/hosts.  As in NetBSD, the resolver is
the client's (libc's) business; the kernel only carries its packets.

Interface:
    lookup(mod, name, families=(AF_INET,)) -> resolv.Result | None
        ``mod`` a client.socket.SocketModule; None when the kernel has no /etc/resolv.conf
        (no resolver configured: the caller reports "unknown name").  Blocks the calling thread
        for at most the resolver's timeouts (resolv.conf ``timeout``/``attempts``), measured on
        the kernel's clock.

Rules: only IPv4 name servers are used until the kernel has AF_INET6 sockets; query ids come
from the kernel's /dev/urandom when it has one (else a hash of the clock and a counter);
a server that cannot be reached (EHOSTUNREACH, ENETUNREACH ...) simply never answers, so the
resolver's timeout moves on to the next one; both configuration files are read bounded (1 MiB).
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.kern import abi as K
from rumpkernel.net.inet import resolv
from rumpkernel.net.inet.resolv_conf import (
    AF_INET,
    MAX_FILE,
    ResolvConf,
    parse_hosts,
    parse_resolv_conf,
)
from rumpkernel.net.wire import dns
from rumpkernel.net.wire.base import ip4str

_counter = itertools.count()


def _read(sys: Any, path: str) -> str | None:
    try:
        fd = sys.open(path, H.open_flags_to_host(K.O_RDONLY))
    except OSError:
        return None
    try:
        raw = b""
        while len(raw) < MAX_FILE:
            chunk = sys.read(fd, 65536)
            if not chunk:
                break
            raw += chunk
    finally:
        sys.close(fd)
    return raw[:MAX_FILE].decode("utf-8", "replace")


class _Rand:
    """``rand(n)`` from the kernel's /dev/urandom, or a clock hash without one."""

    def __init__(self, sys: Any, now: int) -> None:
        try:
            fd = sys.open("/dev/urandom", H.open_flags_to_host(K.O_RDONLY))
            try:
                self.pool = sys.read(fd, 64)
            finally:
                sys.close(fd)
        except OSError:
            self.pool = hashlib.sha256(b"%d/%d" % (now, next(_counter))).digest() * 2

    def __call__(self, n: int) -> int:
        if len(self.pool) < 4:
            self.pool = hashlib.sha256(self.pool + b"x").digest()
        v, self.pool = int.from_bytes(self.pool[:4], "big"), self.pool[4:]
        return v % n if n > 0 else 0


def lookup(mod: Any, name: str, families: tuple[int, ...] = (AF_INET,)) -> resolv.Result | None:
    sys = mod._sys
    text = _read(sys, "/etc/resolv.conf")
    if text is None:
        return None
    conf = parse_resolv_conf(text)
    v4 = tuple(s for s in conf.nameservers if len(s) == 4)
    if not v4:
        return resolv.Result(resolv.AGAIN)
    conf = ResolvConf(v4, conf.search, conf.ndots, conf.timeout_s, conf.attempts, conf.rotate,
                      conf.use_tcp)
    hosts = parse_hosts(_read(sys, "/etc/hosts") or "")

    def now() -> int:
        return int(sys.clock_gettime(H.CLOCK_MONOTONIC) * 1e9)

    rand = _Rand(sys, now())
    lk = resolv.Lookup(name, conf, families, hosts)
    lk.start(now(), rand)
    if lk.done:
        return lk.result
    sock = mod.socket(mod.AF_INET, mod.SOCK_DGRAM)
    try:
        _loop(mod, lk, sock, now, rand)
    finally:
        sock.close()
    return lk.result


def _loop(mod: Any, lk: resolv.Lookup, sock: Any, now: Any, rand: _Rand) -> None:
    while not lk.done:
        for s in lk.take_output():
            if s.tcp:
                _tcp(mod, lk, s, now, rand)
            else:
                try:
                    sock.sendto(s.payload, (ip4str(s.server), s.port))
                except OSError:
                    pass                        # unreachable: it will time out
        if lk.done:
            return
        left = (lk.deadline or now()) - now()
        if left <= 0:
            lk.timeout(now(), rand)
            continue
        sock.settimeout(left / 1e9)
        try:
            data, (host, port) = sock.recvfrom(65535)
        except TimeoutError:
            lk.timeout(now(), rand)
            continue
        except OSError:                         # e.g. ICMP port unreachable reported
            continue
        lk.input(bytes(int(x) for x in host.split(".")), port, data, now(), rand)


def _tcp(mod: Any, lk: resolv.Lookup, s: resolv.Send, now: Any, rand: _Rand) -> None:
    """One query over a kernel TCP connection; a failure leaves the query to its timeout."""
    left = max(0.001, ((lk.deadline or now()) - now()) / 1e9)
    try:
        c = mod.create_connection((ip4str(s.server), s.port), timeout=left)
    except OSError:
        return
    try:
        c.sendall(dns.tcp_frame(s.payload))
        head = _recv_exactly(c, 2)
        reply = _recv_exactly(c, int.from_bytes(head, "big"))
    except OSError:
        return
    finally:
        c.close()
    lk.input(s.server, s.port, reply, now(), rand, tcp=True)


def _recv_exactly(c: Any, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = c.recv(n - len(out))
        if not chunk:
            raise OSError("connection closed")
        out += chunk
    return out
