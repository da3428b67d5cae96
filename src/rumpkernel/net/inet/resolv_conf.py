"""Parsers for ``/etc/resolv.conf`` (resolv.conf(5)) and ``/etc/hosts`` (hosts(5)), bounded.

Interface:
    ResolvConf(nameservers, search, ndots=1, timeout_s=5, attempts=2, rotate=False,
               use_tcp=False)          frozen; ``nameservers`` are 4- or 16-byte addresses
    parse_resolv_conf(text) -> ResolvConf
            "nameserver ADDR" (at most MAXNS = 3; a scope id "%if" is dropped), "search D..."
            (the last search/domain line wins; at most 6 domains, 256 characters), "domain D",
            "options ndots:N timeout:N attempts:N rotate use-vc" (clamped to 15 / 30 / 5 as
            glibc does); no nameserver -> 127.0.0.1 and ::1 (glibc's default is 127.0.0.1)
    Hosts(entries)                     ``lookup(name) -> [(family, addr)]`` in file order,
                                       ``canonical(name)`` -> the first name of its line,
                                       ``reverse(addr) -> name | None``
    parse_hosts(text) -> Hosts         "ADDR NAME [ALIAS...]" lines, "#" comments
    AF_INET, AF_INET6 (re-exported from kern.abi)

Rules: input beyond MAX_FILE bytes is ignored, as are lines longer than MAX_LINE and unparsable
lines (never an error: a resolver with a bad line still works); names compare ASCII
case-insensitively; at most MAX_HOSTS entries are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rumpkernel.kern.abi import AF_INET, AF_INET6
from rumpkernel.net.wire.base import FormatError, ip4
from rumpkernel.net.wire.ipv6 import ip6

MAXNS, MAXDNSRCH, MAX_SEARCH_CHARS = 3, 6, 256
MAX_FILE = 1 << 20
MAX_LINE = 4096
MAX_HOSTS = 16384
LOCALHOST = (b"\x7f\0\0\x01", bytes(15) + b"\x01")


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[bytes, ...] = LOCALHOST
    search: tuple[str, ...] = ()
    ndots: int = 1
    timeout_s: int = 5
    attempts: int = 2
    rotate: bool = False
    use_tcp: bool = False


def parse_addr(text: str) -> tuple[int, bytes] | None:
    """(family, address bytes) for an IPv4 or IPv6 literal, else None."""
    text = text.split("%", 1)[0]
    try:
        return (AF_INET6, ip6(text)) if ":" in text else (AF_INET, ip4(text))
    except FormatError:
        return None


def _lines(text: str):
    """Words of each line, "#"/";" comment lines and "#" tails dropped, bounded."""
    for line in text[:MAX_FILE].splitlines():
        if len(line) > MAX_LINE or line.lstrip()[:1] in ("#", ";"):
            continue
        words = line.split("#", 1)[0].split()
        if words:
            yield words


def parse_resolv_conf(text: str) -> ResolvConf:
    servers: list[bytes] = []
    search: tuple[str, ...] = ()
    opts: dict = {}
    for w in _lines(text):
        key, args = w[0], w[1:]
        if key == "nameserver" and args and len(servers) < MAXNS:
            a = parse_addr(args[0])
            if a is not None:
                servers.append(a[1])
        elif key == "domain" and args:
            search = (args[0].rstrip("."),)
        elif key == "search":
            search = _search(args)
        elif key == "options":
            _options(args, opts)
    return ResolvConf(tuple(servers) or LOCALHOST, search, **opts)


def _search(args: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    chars = 0
    for d in args[:MAXDNSRCH]:
        d = d.rstrip(".")
        chars += len(d) + 1
        if not d or chars > MAX_SEARCH_CHARS:
            break
        out.append(d)
    return tuple(out)


def _options(args: list[str], opts: dict) -> None:
    limits = {"ndots": ("ndots", 15), "timeout": ("timeout_s", 30),
              "attempts": ("attempts", 5)}
    for a in args:
        k, _, v = a.partition(":")
        if k in limits and v.isdigit() and len(v) < 6:
            name, hi = limits[k]
            lo = 0 if k == "ndots" else 1
            opts[name] = max(lo, min(int(v), hi))
        elif a == "rotate":
            opts["rotate"] = True
        elif a in ("use-vc", "usevc", "tcp"):
            opts["use_tcp"] = True


@dataclass(frozen=True, slots=True)
class Hosts:
    entries: tuple[tuple[int, bytes, tuple[str, ...]], ...] = ()
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for i, (_f, _a, names) in enumerate(self.entries):
            for n in names:
                self._index.setdefault(n.lower().rstrip("."), []).append(i)

    def lookup(self, name: str) -> list[tuple[int, bytes]]:
        return [self.entries[i][:2] for i in self._index.get(name.lower().rstrip("."), ())]

    def canonical(self, name: str) -> str | None:
        idx = self._index.get(name.lower().rstrip("."))
        return self.entries[idx[0]][2][0] if idx else None

    def reverse(self, addr: bytes) -> str | None:
        for _f, a, names in self.entries:
            if a == addr:
                return names[0]
        return None


def parse_hosts(text: str) -> Hosts:
    out: list[tuple[int, bytes, tuple[str, ...]]] = []
    for w in _lines(text):
        if len(out) >= MAX_HOSTS:
            break
        a = parse_addr(w[0]) if "%" not in w[0] else None
        if a is not None and len(w) > 1:
            out.append((a[0], a[1], tuple(w[1:])))
    return Hosts(tuple(out))
