"""IPv6 address autoconfiguration of one interface, sans-IO (DESIGN rule 7): link-local address
generation, duplicate address detection (RFC 4862 5.4, with RFC 7527 nonces), router
solicitation, SLAAC from router advertisements with lifetimes (RFC 4862 5.5), the prefix list
and default router list (RFC 4861 6.3.4-6.3.6), RDNSS (RFC 8106) and answering neighbour
solicitations for our addresses.  Time (integer ns) and randomness (``rand(n) -> [0, n)``)
are arguments; what to do comes back as action records from ``take_actions()``.

Interface:
    Addrconf(lladdr, secret, ifname=b"", mode=STABLE, dad_transmits=1, router=False,
             max_addresses=16, max_prefixes=16, max_routers=8, max_dns=3)
    start(now, rand)                 bring the interface up: a tentative link-local address,
                                     DAD, then router solicitations once it is usable
    stop() -> actions                everything removed (interface down)
    add_static(addr, plen, now, rand)    a manually configured address (DAD'd too)
    remove(addr)                     ENXIO if it is not ours
    input_ns(src, dst, hop_limit, ns, now) -> NeighborAdvertisement to send (and its
                                     destination) or None; detects DAD collisions
    input_na(na, hop_limit, now)     DAD collisions
    input_ra(src, hop_limit, ra, now, rand)    routers, prefixes, SLAAC, link parameters
    timeout(now, rand); deadline -> int | None
    take_actions() -> [Action]
    addresses() -> [AddressInfo]; usable(addr) -> bool (assigned, not tentative/duplicate);
    onlink(dst) -> bool; select_router(probably_reachable) -> router address | None;
    routers() / prefixes() / dns_servers()
    link-local generation: eui64_iid(lladdr); stable_iid(prefix, ifname, network_id,
                           dad_counter, secret) (RFC 7217)

Actions (frozen records): SendNS(src, dst, target, nonce), SendRS(src, slla) (to all-routers),
    SendNA(src, dst, target, flags), JoinGroup(group), LeaveGroup(group),
    AddressAdded(addr, plen, tentative), AddressReady(addr, plen), AddressDeprecated(addr),
    AddressRemoved(addr, plen, reason), AddressDuplicate(addr), RouterAdded(addr),
    RouterRemoved(addr), PrefixAdded(prefix, plen), PrefixRemoved(prefix, plen),
    LinkParams(hop_limit, mtu, reachable_ns, retrans_ns) (0: unchanged), DnsServers(servers)

Why stable privacy (RFC 7217) by default: RFC 8064 recommends it over EUI-64 -- the address
does not reveal the NIC's MAC or let a host be tracked across networks, it stays the same on
one network (so logs and ACLs keep working), and the DAD counter gives a different address
after a collision where EUI-64 would collide again.  ``mode=EUI64`` gives Linux's default
(checked against a capture).  Rules: an RA counts only from a link-local source with hop limit
255; SLAAC needs a /64 (64-bit interface identifiers); the "two hours" rule (5.5.3 e) limits
how far an unauthenticated RA can shorten a valid lifetime; tables are bounded (extra
prefixes/routers/servers are ignored and counted in ``ignored``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.net.wire import icmp6
from rumpkernel.net.wire.ipv6 import (
    ALL_NODES,
    UNSPECIFIED,
    is_linklocal,
    is_multicast,
    prefix_match,
    prefix_of,
    solicited_node,
)

SEC = 10**9
STABLE, EUI64 = "stable", "eui64"
TENTATIVE, PREFERRED, DEPRECATED, DUPLICATE = "tentative", "preferred", "deprecated", "duplicate"
LINKLOCAL_PREFIX = bytes.fromhex("fe80000000000000") + bytes(8)
MAX_RTR_SOLICITATION_DELAY = SEC
RTR_SOLICITATION_INTERVAL = 4 * SEC
MAX_RTR_SOLICITATIONS = 3
RETRANS_TIMER = SEC
TWO_HOURS = 7200 * SEC
IDGEN_RETRIES = 3
Rand = Callable[[int], int]


# ---- actions -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendNS:
    src: bytes
    dst: bytes
    target: bytes
    nonce: bytes | None = None


@dataclass(frozen=True, slots=True)
class SendRS:
    src: bytes
    slla: bool                       # include the source link-layer option (not from ::)


@dataclass(frozen=True, slots=True)
class SendNA:
    src: bytes
    dst: bytes
    target: bytes
    flags: int


@dataclass(frozen=True, slots=True)
class JoinGroup:
    group: bytes


@dataclass(frozen=True, slots=True)
class LeaveGroup:
    group: bytes


@dataclass(frozen=True, slots=True)
class AddressAdded:
    addr: bytes
    plen: int
    tentative: bool


@dataclass(frozen=True, slots=True)
class AddressReady:
    addr: bytes
    plen: int


@dataclass(frozen=True, slots=True)
class AddressDeprecated:
    addr: bytes


@dataclass(frozen=True, slots=True)
class AddressRemoved:
    addr: bytes
    plen: int
    reason: str


@dataclass(frozen=True, slots=True)
class AddressDuplicate:
    addr: bytes


@dataclass(frozen=True, slots=True)
class RouterAdded:
    addr: bytes


@dataclass(frozen=True, slots=True)
class RouterRemoved:
    addr: bytes


@dataclass(frozen=True, slots=True)
class PrefixAdded:
    prefix: bytes
    plen: int


@dataclass(frozen=True, slots=True)
class PrefixRemoved:
    prefix: bytes
    plen: int


@dataclass(frozen=True, slots=True)
class LinkParams:
    hop_limit: int = 0
    mtu: int = 0
    reachable_ns: int = 0
    retrans_ns: int = 0


@dataclass(frozen=True, slots=True)
class DnsServers:
    servers: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class AddressInfo:
    addr: bytes
    plen: int
    state: str
    origin: str                      # "linklocal", "static", "slaac"
    valid_until: int | None          # None: forever
    preferred_until: int | None


# ---- interface identifiers ---------------------------------------------------------------------
def eui64_iid(lladdr: bytes) -> bytes:
    """Modified EUI-64 (RFC 4291 appendix A): ff:fe in the middle, the U/L bit flipped."""
    if len(lladdr) != 6:
        raise KernelError(Errno.EINVAL, "EUI-64 needs a 6-byte link address")
    return bytes((lladdr[0] ^ 0x02,)) + lladdr[1:3] + b"\xff\xfe" + lladdr[3:6]


def stable_iid(prefix: bytes, ifname: bytes, network_id: bytes, dad_counter: int,
               secret: bytes) -> bytes:
    """RFC 7217 F(Prefix, Net_Iface, Network_ID, DAD_Counter, secret_key) with SHA-256, the
    first 64 bits; a reserved identifier (RFC 5453) takes the next counter value."""
    for counter in range(dad_counter, dad_counter + 16):
        h = hashlib.sha256(b"".join((prefix[:8], len(ifname).to_bytes(2, "big"), ifname,
                                     len(network_id).to_bytes(2, "big"), network_id,
                                     counter.to_bytes(4, "big"), secret))).digest()[:8]
        if not _reserved_iid(h):
            return h
    raise KernelError(Errno.EADDRNOTAVAIL, "no usable interface identifier")  # pragma: no cover


def _reserved_iid(iid: bytes) -> bool:
    return (iid == bytes(8) or (iid[:7] == b"\xfd\xff\xff\xff\xff\xff\xff" and iid[7] >= 0x80)
            or iid[:5] == b"\x02\x00\x5e\xfe\x00" or iid[:5] == b"\x00\x00\x5e\xfe\x00")


# ---- records -----------------------------------------------------------------------------------
class _Addr:
    __slots__ = ("addr", "counter", "dad_left", "dad_next", "nonce", "origin", "plen",
                 "preferred_until", "state", "valid_until")

    def __init__(self, addr: bytes, plen: int, origin: str, counter: int = 0) -> None:
        self.addr = addr
        self.plen = plen
        self.origin = origin
        self.counter = counter
        self.state = TENTATIVE
        self.dad_left = 0
        self.dad_next = 0
        self.nonce = b""
        self.valid_until: int | None = None
        self.preferred_until: int | None = None


def _until(now: int, seconds: int) -> int | None:
    return None if seconds == icmp6.INFINITY else now + seconds * SEC


class Addrconf:
    def __init__(self, lladdr: bytes, secret: bytes, ifname: bytes = b"", mode: str = STABLE,
                 dad_transmits: int = 1, router: bool = False, network_id: bytes = b"",
                 max_addresses: int = 16, max_prefixes: int = 16, max_routers: int = 8,
                 max_dns: int = 3) -> None:
        if mode not in (STABLE, EUI64):
            raise KernelError(Errno.EINVAL, f"address generation mode {mode!r}")
        self.lladdr = lladdr
        self.secret = secret
        self.ifname = ifname
        self.network_id = network_id
        self.mode = mode
        self.dad_transmits = dad_transmits
        self.is_router = router
        self.retrans_ns = RETRANS_TIMER
        self.max_addresses, self.max_prefixes = max_addresses, max_prefixes
        self.max_routers, self.max_dns = max_routers, max_dns
        self.addrs: dict[bytes, _Addr] = {}
        self.prefix_list: dict[tuple[bytes, int], int | None] = {}   # -> invalidation time
        self.router_list: dict[bytes, int] = {}                      # -> expiry
        self.dns: dict[bytes, int | None] = {}
        self.actions: list = []
        self.rs_left = 0
        self.rs_next: int | None = None
        self.rr = 0
        self.ignored = 0
        self.running = False

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, now: int, rand: Rand) -> None:
        self.running = True
        self.actions.append(JoinGroup(ALL_NODES))
        self._new_address(self._iid_address(LINKLOCAL_PREFIX, 0), 64, "linklocal", now, rand,
                          counter=0)

    def stop(self) -> list:
        for a in list(self.addrs.values()):
            self._drop_address(a, "down")
        for r in list(self.router_list):
            self._drop_router(r)
        for p in list(self.prefix_list):
            del self.prefix_list[p]
            self.actions.append(PrefixRemoved(*p))
        self._set_dns({})
        self.running = False
        self.rs_next = None
        return self.take_actions()

    def take_actions(self) -> list:
        a, self.actions = self.actions, []
        return a

    def _iid_address(self, prefix: bytes, counter: int) -> bytes:
        if self.mode == EUI64:
            iid = eui64_iid(self.lladdr)
        else:
            iid = stable_iid(prefix, self.ifname, self.network_id, counter, self.secret)
        return prefix[:8] + iid

    # ---- addresses ---------------------------------------------------------------------------
    def add_static(self, addr: bytes, plen: int, now: int, rand: Rand) -> None:
        if addr in self.addrs:
            raise KernelError(Errno.EEXIST, "address already configured")
        if is_multicast(addr) or addr == UNSPECIFIED or not 0 < plen <= 128:
            raise KernelError(Errno.EINVAL, "not a unicast address/prefix length")
        self._new_address(addr, plen, "static", now, rand)

    def remove(self, addr: bytes) -> None:
        a = self.addrs.get(addr)
        if a is None:
            raise KernelError(Errno.EADDRNOTAVAIL, "not an address of this interface")
        self._drop_address(a, "removed")

    def _new_address(self, addr: bytes, plen: int, origin: str, now: int, rand: Rand,
                     counter: int = 0) -> _Addr | None:
        if len(self.addrs) >= self.max_addresses:
            self.ignored += 1
            return None
        a = self.addrs[addr] = _Addr(addr, plen, origin, counter)
        self.actions += [JoinGroup(solicited_node(addr)), AddressAdded(addr, plen,
                                                                       self.dad_transmits > 0)]
        if self.dad_transmits > 0:
            a.dad_left = self.dad_transmits
            a.dad_next = now + rand(MAX_RTR_SOLICITATION_DELAY)
            a.nonce = rand(1 << 48).to_bytes(6, "big")
        else:
            self._ready(a, now)
        return a

    def _ready(self, a: _Addr, now: int) -> None:
        deprecated = a.preferred_until is not None and a.preferred_until <= now
        a.state = DEPRECATED if deprecated else PREFERRED
        self.actions.append(AddressReady(a.addr, a.plen))
        if a.origin == "linklocal" and not self.is_router and self.rs_next is None:
            self.rs_left = MAX_RTR_SOLICITATIONS
            self.rs_next = now           # the DAD wait already was a random delay

    def _drop_address(self, a: _Addr, reason: str) -> None:
        del self.addrs[a.addr]
        self.actions += [AddressRemoved(a.addr, a.plen, reason),
                         LeaveGroup(solicited_node(a.addr))]

    def _duplicate(self, a: _Addr, now: int, rand: Rand | None) -> None:
        """RFC 4862 5.4.5; with stable identifiers, retry with the next DAD counter (7217)."""
        self._drop_address(a, "duplicate")
        self.actions.append(AddressDuplicate(a.addr))
        if self.mode == STABLE and a.origin != "static" and a.counter < IDGEN_RETRIES \
                and rand is not None:
            prefix = prefix_of(a.addr, 64)
            n = self._new_address(self._iid_address(prefix, a.counter + 1), a.plen, a.origin,
                                  now, rand, a.counter + 1)
            if n is not None:
                n.valid_until, n.preferred_until = a.valid_until, a.preferred_until

    def usable(self, addr: bytes) -> bool:
        a = self.addrs.get(addr)
        return a is not None and a.state in (PREFERRED, DEPRECATED)

    def addresses(self) -> list[AddressInfo]:
        return [AddressInfo(a.addr, a.plen, a.state, a.origin, a.valid_until, a.preferred_until)
                for a in self.addrs.values()]

    def linklocal(self) -> bytes | None:
        for a in self.addrs.values():
            if a.origin == "linklocal" and a.state in (PREFERRED, DEPRECATED):
                return a.addr
        return None

    # ---- neighbour solicitations and advertisements (DAD and answering) -----------------------
    def input_ns(self, src: bytes, dst: bytes, hop_limit: int,
                 ns: icmp6.NeighborSolicitation, now: int, rand: Rand | None = None
                 ) -> SendNA | None:
        if hop_limit != 255:
            return None
        slla = icmp6.find(ns.options, icmp6.LinkAddr, icmp6.OPT_SOURCE_LLADDR)
        if src == UNSPECIFIED and (dst != solicited_node(ns.target) or slla):
            return None                                           # RFC 4861 7.1.1
        a = self.addrs.get(ns.target)
        if a is None:
            return None
        if a.state == TENTATIVE:
            if src == UNSPECIFIED:
                nonce = icmp6.find(ns.options, icmp6.Nonce)
                if nonce is not None and nonce.value == a.nonce:
                    return None                                   # our own probe looped back
                self._duplicate(a, now, rand)
            return None
        flags = icmp6.NA_SOLICITED | icmp6.NA_OVERRIDE | (icmp6.NA_ROUTER if self.is_router
                                                          else 0)
        if src == UNSPECIFIED:                                    # answer DAD: all-nodes
            return SendNA(ns.target, ALL_NODES, ns.target, flags & ~icmp6.NA_SOLICITED)
        return SendNA(ns.target, src, ns.target, flags)

    def input_na(self, na: icmp6.NeighborAdvertisement, hop_limit: int, now: int,
                 rand: Rand | None = None) -> bool:
        """True when the advertisement was for one of our addresses (a collision)."""
        if hop_limit != 255:
            return False
        a = self.addrs.get(na.target)
        if a is None:
            return False
        if a.state == TENTATIVE:
            self._duplicate(a, now, rand)
        return True

    # ---- router advertisements ---------------------------------------------------------------
    def input_ra(self, src: bytes, hop_limit: int, ra: icmp6.RouterAdvertisement, now: int,
                 rand: Rand) -> bool:
        """Process a valid RA (RFC 4861 6.1.2 checks here: link-local source, hop limit 255).
        Returns False when it was ignored."""
        if hop_limit != 255 or not is_linklocal(src) or self.is_router or not self.running:
            return False
        self.rs_next = None                                       # solicitation answered
        self._router(src, ra.router_lifetime, now)
        params = LinkParams(
            ra.cur_hop_limit,
            self._mtu(icmp6.find(ra.options, icmp6.Mtu)),
            ra.reachable_time * 10**6 if ra.reachable_time else 0,
            ra.retrans_timer * 10**6 if ra.retrans_timer else 0)
        if params.retrans_ns:
            self.retrans_ns = params.retrans_ns
        if params != LinkParams():
            self.actions.append(params)
        for o in ra.options:
            if isinstance(o, icmp6.PrefixInfo):
                self._prefix(o, now, rand)
        self._rdnss([o for o in ra.options if isinstance(o, icmp6.Rdnss)], now)
        return True

    @staticmethod
    def _mtu(o: icmp6.NdOption | None) -> int:
        if o is None or not 1280 <= o.mtu <= 65535:
            return 0
        return o.mtu

    def _router(self, src: bytes, lifetime: int, now: int) -> None:
        if lifetime == 0:
            if src in self.router_list:
                self._drop_router(src)
            return
        if src not in self.router_list:
            if len(self.router_list) >= self.max_routers:
                self.ignored += 1
                return
            self.actions.append(RouterAdded(src))
        self.router_list[src] = now + lifetime * SEC

    def _drop_router(self, r: bytes) -> None:
        del self.router_list[r]
        self.actions.append(RouterRemoved(r))

    def router_unreachable(self, r: bytes) -> None:
        """The neighbour cache saw IsRouter turn false (RFC 4861 7.2.5)."""
        if r in self.router_list:
            self._drop_router(r)

    def _prefix(self, pi: icmp6.PrefixInfo, now: int, rand: Rand) -> None:
        if is_linklocal(pi.prefix) or pi.prefix_len > 128:
            return
        prefix = prefix_of(pi.prefix, pi.prefix_len)
        if pi.onlink:
            self._onlink(prefix, pi.prefix_len, pi.valid_lifetime, now)
        if pi.autonomous and pi.preferred_lifetime <= pi.valid_lifetime:
            self._slaac(prefix, pi, now, rand)

    def _onlink(self, prefix: bytes, plen: int, valid: int, now: int) -> None:
        key = (prefix, plen)
        if valid == 0:
            if key in self.prefix_list:
                del self.prefix_list[key]
                self.actions.append(PrefixRemoved(prefix, plen))
            return
        if key not in self.prefix_list:
            if len(self.prefix_list) >= self.max_prefixes:
                self.ignored += 1
                return
            self.actions.append(PrefixAdded(prefix, plen))
        self.prefix_list[key] = _until(now, valid)

    def _slaac(self, prefix: bytes, pi: icmp6.PrefixInfo, now: int, rand: Rand) -> None:
        mine = [a for a in self.addrs.values()
                if a.origin == "slaac" and a.plen == pi.prefix_len
                and prefix_match(a.addr, prefix, 64)]
        if not mine:
            if pi.valid_lifetime == 0 or pi.prefix_len != 64:
                if pi.prefix_len != 64:
                    self.ignored += 1
                return
            a = self._new_address(self._iid_address(prefix, 0), 64, "slaac", now, rand)
            if a is not None:
                a.valid_until = _until(now, pi.valid_lifetime)
                a.preferred_until = _until(now, pi.preferred_lifetime)
            return
        for a in mine:
            self._update_lifetimes(a, pi, now)

    def _update_lifetimes(self, a: _Addr, pi: icmp6.PrefixInfo, now: int) -> None:
        a.preferred_until = _until(now, pi.preferred_lifetime)
        if a.state == DEPRECATED and (a.preferred_until is None or a.preferred_until > now):
            a.state = PREFERRED
        new = _until(now, pi.valid_lifetime)
        remaining = None if a.valid_until is None else a.valid_until - now
        if new is None or (new - now) > TWO_HOURS or (remaining is not None
                                                       and new - now > remaining):
            a.valid_until = new
        elif remaining is None or remaining > TWO_HOURS:
            a.valid_until = now + TWO_HOURS                       # 5.5.3 e: at most shorten to 2h
        if a.preferred_until is not None and a.valid_until is not None:
            a.preferred_until = min(a.preferred_until, a.valid_until)

    def _rdnss(self, opts: list[icmp6.Rdnss], now: int) -> None:
        if not opts:
            return
        dns = dict(self.dns)
        for o in opts:
            for s in o.servers:
                if o.lifetime == 0:
                    dns.pop(s, None)
                elif s in dns or len(dns) < self.max_dns:
                    dns[s] = _until(now, o.lifetime)
                else:
                    self.ignored += 1
        self._set_dns(dns)

    def _set_dns(self, dns: dict[bytes, int | None]) -> None:
        changed = list(dns) != list(self.dns)
        self.dns = dns
        if changed:
            self.actions.append(DnsServers(tuple(dns)))

    # ---- lookups -----------------------------------------------------------------------------
    def onlink(self, dst: bytes) -> bool:
        if is_linklocal(dst):
            return True
        return any(prefix_match(dst, p, n) for (p, n) in self.prefix_list) or any(
            prefix_match(dst, a.addr, a.plen) for a in self.addrs.values() if a.origin == "static")

    def select_router(self, probably_reachable: Callable[[bytes], bool]) -> bytes | None:
        """RFC 4861 6.3.6: a reachable router first, else round-robin over the list."""
        routers = list(self.router_list)
        if not routers:
            return None
        for r in routers:
            if probably_reachable(r):
                return r
        self.rr = (self.rr + 1) % len(routers)
        return routers[self.rr]

    def routers(self) -> list[tuple[bytes, int]]:
        return list(self.router_list.items())

    def prefixes(self) -> list[tuple[bytes, int, int | None]]:
        return [(p, n, t) for (p, n), t in self.prefix_list.items()]

    def dns_servers(self) -> tuple[bytes, ...]:
        return tuple(self.dns)

    # ---- time --------------------------------------------------------------------------------
    def timeout(self, now: int, rand: Rand) -> None:
        for a in list(self.addrs.values()):
            self._address_timer(a, now)
        for r, t in list(self.router_list.items()):
            if t <= now:
                self._drop_router(r)
        for (p, n), t in list(self.prefix_list.items()):
            if t is not None and t <= now:
                del self.prefix_list[(p, n)]
                self.actions.append(PrefixRemoved(p, n))
        dns = {s: t for s, t in self.dns.items() if t is None or t > now}
        if len(dns) != len(self.dns):
            self._set_dns(dns)
        self._rs_timer(now)

    def _address_timer(self, a: _Addr, now: int) -> None:
        if a.valid_until is not None and a.valid_until <= now:
            self._drop_address(a, "expired")
            return
        if a.state == TENTATIVE and a.dad_next <= now:
            if a.dad_left > 0:
                a.dad_left -= 1
                a.dad_next = now + self.retrans_ns
                self.actions.append(SendNS(UNSPECIFIED, solicited_node(a.addr), a.addr, a.nonce))
            else:
                self._ready(a, now)
        if a.state == PREFERRED and a.preferred_until is not None and a.preferred_until <= now:
            a.state = DEPRECATED
            self.actions.append(AddressDeprecated(a.addr))

    def _rs_timer(self, now: int) -> None:
        if self.rs_next is None or self.rs_next > now:
            return
        if self.rs_left <= 0:
            self.rs_next = None
            return
        self.rs_left -= 1
        src = self.linklocal()
        self.actions.append(SendRS(src or UNSPECIFIED, src is not None))
        self.rs_next = now + RTR_SOLICITATION_INTERVAL if self.rs_left else None

    @property
    def deadline(self) -> int | None:
        times: list[int] = []
        for a in self.addrs.values():
            if a.state == TENTATIVE:
                times.append(a.dad_next)
            if a.valid_until is not None:
                times.append(a.valid_until)
            if a.state == PREFERRED and a.preferred_until is not None:
                times.append(a.preferred_until)
        times += self.router_list.values()
        times += [t for t in self.prefix_list.values() if t is not None]
        times += [t for t in self.dns.values() if t is not None]
        if self.rs_next is not None:
            times.append(self.rs_next)
        return min(times, default=None)

