"""Name lookups for client programs: the thin loop around the sans-IO stub resolver
(net/inet/resolv.py) over the kernel's own sockets -- UDP, and TCP when an answer comes back
truncated -- with the kernel's /etc/resolv.conf and /etc/hosts.  As in NetBSD, the resolver is
the client's (libc's) business; the kernel only carries its packets.

Interface:
    lookup(mod, name, families=(AF_INET,)) -> resolv.Result | None
        ``mod`` a client.socket.SocketModule; ``families`` the kernel's AF_INET / AF_INET6
        (A and AAAA queries).  None when no resolver is configured: the kernel has no
        /etc/resolv.conf and learned no DNS servers from router advertisements (RDNSS) -- the
        caller reports "unknown name".  Blocks the calling thread for at most the resolver's
        timeouts (resolv.conf ``timeout``/``attempts``), measured on the kernel's clock.
    AF_INET, AF_INET6               the kernel's values ``families`` takes

Rules: IPv4 and IPv6 name servers alike: one dual-stack AF_INET6 UDP socket reaches both
(IPv4 servers through v4-mapped addresses); a kernel without IPv6 gets an AF_INET socket and
its IPv4 servers only.  Without /etc/resolv.conf the RDNSS servers the kernel's interfaces
learned are used (netinfo "rdnss").  Query ids come from the kernel's /dev/urandom when it has
one (else a hash of the clock and a counter); a server that cannot be reached (EHOSTUNREACH,
ENETUNREACH ...) simply never answers, so the resolver's timeout moves on to the next one;
both configuration files are read bounded (1 MiB).
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from rumpkernel.client import abi as H
from rumpkernel.kern import abi as K
from rumpkernel.kern.errno import KernelError
from rumpkernel.net.inet import resolv
from rumpkernel.net.inet.resolv_conf import (
    AF_INET,
    AF_INET6,
    MAX_FILE,
    ResolvConf,
    parse_hosts,
    parse_resolv_conf,
)
from rumpkernel.net.wire import dns
from rumpkernel.net.wire.base import ip4str
from rumpkernel.net.wire.ipv6 import ip6, ip6str

__all__ = ["AF_INET", "AF_INET6", "lookup"]
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


def _rdnss(mod: Any, zones: dict[bytes, int]) -> tuple[bytes, ...]:
    """DNS servers the kernel learned from router advertisements (RFC 8106); link-local ones
    get the zone of the interface that learned them."""
    try:
        entries = mod.config.info("rdnss")
    except OSError:
        return ()
    out: list[bytes] = []
    for e in entries:
        for text in e.get("servers", ()):
            a = ip6(text)
            if a not in out:
                out.append(a)
                if a[:2] == b"\xfe\x80":
                    zones[a] = mod.if_nametoindex(e["interface"])
    return tuple(out[:3])


def _conf_zones(mod: Any, text: str, zones: dict[bytes, int]) -> None:
    """Zones of "nameserver fe80::1%virt0" lines (the parser keeps only the address)."""
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver" and "%" in words[1]:
            addr, _, zone = words[1].partition("%")
            try:
                zones[ip6(addr)] = int(zone) if zone.isdigit() else mod.if_nametoindex(zone)
            except (OSError, ValueError, KernelError):
                pass


def _config(mod: Any, zones: dict[bytes, int]) -> ResolvConf | None:
    text = _read(mod._sys, "/etc/resolv.conf")
    if text is not None:
        _conf_zones(mod, text, zones)
        return parse_resolv_conf(text)
    servers = _rdnss(mod, zones)
    return ResolvConf(servers) if servers else None


def _socket(mod: Any) -> tuple[Any, bool]:
    """A dual-stack UDP socket (True), or an IPv4 one on a kernel without IPv6 (False)."""
    try:
        sock = mod.socket(mod.AF_INET6, mod.SOCK_DGRAM)
    except OSError:
        return mod.socket(mod.AF_INET, mod.SOCK_DGRAM), False
    try:
        sock.setsockopt(mod.IPPROTO_IPV6, mod.IPV6_V6ONLY, 0)
    except OSError:
        pass
    return sock, True


def lookup(mod: Any, name: str, families: tuple[int, ...] = (AF_INET,)) -> resolv.Result | None:
    sys = mod._sys
    zones: dict[bytes, int] = {}
    conf = _config(mod, zones)
    if conf is None:
        return None
    hosts = parse_hosts(_read(sys, "/etc/hosts") or "")

    def now() -> int:
        return int(sys.clock_gettime(H.CLOCK_MONOTONIC) * 1e9)

    rand = _Rand(sys, now())
    sock, dual = _socket(mod)
    try:
        if not dual:
            v4 = tuple(a for a in conf.nameservers if len(a) == 4)
            if not v4:
                return resolv.Result(resolv.AGAIN)
            conf = ResolvConf(v4, conf.search, conf.ndots, conf.timeout_s, conf.attempts,
                              conf.rotate, conf.use_tcp)
        lk = resolv.Lookup(name, conf, families, hosts)
        lk.start(now(), rand)
        if not lk.done:
            _loop(mod, lk, sock, dual, now, rand, zones)
    finally:
        sock.close()
    return lk.result


def _sockaddr(server: bytes, port: int, dual: bool, zones: dict[bytes, int]) -> tuple:
    if len(server) == 16:
        return (ip6str(server), port, 0, zones.get(server, 0))
    return ("::ffff:" + ip4str(server), port, 0, 0) if dual else (ip4str(server), port)


def _server(host: str) -> bytes:
    if host.startswith("::ffff:") and "." in host:
        return bytes(int(x) for x in host[7:].split("."))
    if ":" in host:
        return ip6(host.partition("%")[0])
    return bytes(int(x) for x in host.split("."))


def _loop(mod: Any, lk: resolv.Lookup, sock: Any, dual: bool, now: Any,
          rand: _Rand, zones: dict[bytes, int]) -> None:
    while not lk.done:
        for s in lk.take_output():
            if s.tcp:
                _tcp(mod, lk, s, now, rand)
            else:
                try:
                    sock.sendto(s.payload, _sockaddr(s.server, s.port, dual, zones))
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
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            lk.timeout(now(), rand)
            continue
        except OSError:                         # e.g. ICMP port unreachable reported
            continue
        lk.input(_server(addr[0]), addr[1], data, now(), rand)


def _tcp(mod: Any, lk: resolv.Lookup, s: resolv.Send, now: Any, rand: _Rand) -> None:
    """One query over a kernel TCP connection; a failure leaves the query to its timeout."""
    left = max(0.001, ((lk.deadline or now()) - now()) / 1e9)
    try:
        host = ip4str(s.server) if len(s.server) == 4 else ip6str(s.server)
        c = mod.create_connection((host, s.port), timeout=left)
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
