"""Address autoconfiguration: link-local generation (EUI-64 checked against Linux's address for
the same MAC, RFC 7217 stable identifiers), DAD with nonces, router solicitation, SLAAC from
the RA dnsmasq sent (we derive the address Linux derived), lifetimes and the two-hour rule,
router/prefix/RDNSS lists, NS answering, bounded tables, hostile RAs."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.net.inet6 import addrconf as ac
from rumpkernel.net.wire import icmp6, ipv6
from rumpkernel.net.wire.base import FormatError, mac
from rumpkernel.net.wire.ipv6 import ip6
from tests.net6.captures import ipv6_packet

S = ac.SEC
A_MAC = mac("02:00:00:00:0a:01")
SECRET = bytes(range(16))


def _rand(seed: int = 7):
    return random.Random(seed).randrange


def _up(mode: str = ac.EUI64, **kw) -> tuple[ac.Addrconf, bytes]:
    """An interface whose link-local address passed DAD; returns it and the address."""
    a = ac.Addrconf(A_MAC, SECRET, b"eth0", mode=mode, **kw)
    r = _rand()
    a.start(0, r)
    a.timeout(a.deadline, r)
    a.timeout(a.deadline, r)
    ll = a.linklocal()
    assert ll is not None
    return a, ll


def _captured_ra() -> tuple[bytes, icmp6.RouterAdvertisement, int]:
    p = ipv6_packet("linux-v6.pcap", 15)
    return p.src, icmp6.decode(icmp6.parse(p.payload, p.src, p.dst)), p.hop_limit


def test_eui64_link_local_matches_linux() -> None:
    assert ac.eui64_iid(A_MAC) == bytes.fromhex("000000fffe000a01")
    _a, ll = _up()
    assert ll == ip6("fe80::ff:fe00:a01")              # what Linux configured for this MAC


def test_start_dad_then_router_solicitation() -> None:
    a = ac.Addrconf(A_MAC, SECRET, b"eth0", mode=ac.EUI64)
    r = _rand()
    a.start(0, r)
    ll = ip6("fe80::ff:fe00:a01")
    assert a.take_actions() == [ac.JoinGroup(ipv6.ALL_NODES),
                                ac.JoinGroup(ipv6.solicited_node(ll)),
                                ac.AddressAdded(ll, 64, True)]
    assert not a.usable(ll) and 0 <= a.deadline < S              # random initial delay
    a.timeout(a.deadline, r)
    (ns,) = a.take_actions()
    assert (ns.src, ns.dst, ns.target) == (ipv6.UNSPECIFIED, ipv6.solicited_node(ll), ll)
    assert len(ns.nonce) == 6
    t = a.deadline
    a.timeout(t - 1, r)
    assert a.take_actions() == []                                 # RetransTimer not yet over
    a.timeout(t, r)
    assert a.take_actions() == [ac.AddressReady(ll, 64), ac.SendRS(ll, True)]
    for k in (1, 2):
        a.timeout(t + k * ac.RTR_SOLICITATION_INTERVAL, r)
        assert a.take_actions() == [ac.SendRS(ll, True)]
    a.timeout(t + 10 * ac.RTR_SOLICITATION_INTERVAL, r)
    assert a.take_actions() == [] and a.deadline is None          # MAX_RTR_SOLICITATIONS


def test_stable_identifiers() -> None:
    p = ip6("2001:db8:1::")
    i0 = ac.stable_iid(p, b"eth0", b"", 0, SECRET)
    assert i0 == ac.stable_iid(p, b"eth0", b"", 0, SECRET)                  # stable
    assert len({i0, ac.stable_iid(p, b"eth1", b"", 0, SECRET),
                ac.stable_iid(ip6("2001:db8:2::"), b"eth0", b"", 0, SECRET),
                ac.stable_iid(p, b"eth0", b"", 1, SECRET),
                ac.stable_iid(p, b"eth0", b"", 0, bytes(16))}) == 5
    _a, ll = _up(ac.STABLE)
    assert ll[:8] == ac.LINKLOCAL_PREFIX[:8] and ll[8:] == ac.stable_iid(
        ac.LINKLOCAL_PREFIX, b"eth0", b"", 0, SECRET)
    assert A_MAC[3:] not in ll                                    # the MAC does not leak


def _dad_probe(a: ac.Addrconf):
    r = _rand()
    a.timeout(a.deadline, r)
    (ns,) = [x for x in a.take_actions() if isinstance(x, ac.SendNS)]
    return ns


def test_dad_collision_regenerates_stable_address_and_ignores_own_nonce() -> None:
    a = ac.Addrconf(A_MAC, SECRET, b"eth0")
    r = _rand()
    a.start(0, r)
    a.take_actions()
    ns = _dad_probe(a)
    ll = ns.target
    own = icmp6.NeighborSolicitation(ll, (icmp6.Nonce(ns.nonce),))
    assert a.input_ns(ipv6.UNSPECIFIED, ns.dst, 255, own, 5, r) is None
    assert a.addresses()[0].state == ac.TENTATIVE                 # looped back: not a duplicate
    other = icmp6.NeighborSolicitation(ll, (icmp6.Nonce(b"\1" * 6),))
    a.input_ns(ipv6.UNSPECIFIED, ns.dst, 255, other, 6, r)
    acts = a.take_actions()
    assert ac.AddressDuplicate(ll) in acts and ac.AddressRemoved(ll, 64, "duplicate") in acts
    (new,) = a.addresses()
    assert new.addr != ll and new.state == ac.TENTATIVE
    assert new.addr[8:] == ac.stable_iid(ac.LINKLOCAL_PREFIX, b"eth0", b"", 1, SECRET)


def test_dad_collision_by_advertisement_eui64_gives_up() -> None:
    a = ac.Addrconf(A_MAC, SECRET, mode=ac.EUI64)
    r = _rand()
    a.start(0, r)
    ll = a.addresses()[0].addr
    assert not a.input_na(icmp6.NeighborAdvertisement(ll, icmp6.NA_OVERRIDE), 254, 1, r)
    assert a.input_na(icmp6.NeighborAdvertisement(ll, icmp6.NA_OVERRIDE), 255, 1, r)
    assert a.addresses() == [] and ac.AddressDuplicate(ll) in a.take_actions()


def test_answering_neighbor_solicitations() -> None:
    a, ll = _up()
    peer = ip6("fe80::2")
    ns = icmp6.NeighborSolicitation(ll, (icmp6.LinkAddr(1, b"\2" * 6),))
    assert a.input_ns(peer, ipv6.solicited_node(ll), 255, ns, 10) == ac.SendNA(
        ll, peer, ll, icmp6.NA_SOLICITED | icmp6.NA_OVERRIDE)
    assert a.input_ns(peer, ipv6.solicited_node(ll), 64, ns, 10) is None        # hop limit
    assert a.input_ns(peer, ll, 255, icmp6.NeighborSolicitation(ip6("fe80::77")), 10) is None
    dad = icmp6.NeighborSolicitation(ll)
    assert a.input_ns(ipv6.UNSPECIFIED, ipv6.solicited_node(ll), 255, dad, 10) == ac.SendNA(
        ll, ipv6.ALL_NODES, ll, icmp6.NA_OVERRIDE)
    assert a.input_ns(ipv6.UNSPECIFIED, ipv6.ALL_NODES, 255, dad, 10) is None  # 7.1.1
    other_group = ipv6.solicited_node(ip6("fe80::12:3456"))
    assert a.input_ns(ipv6.UNSPECIFIED, other_group, 255, dad, 10) is None


def test_slaac_from_dnsmasq_advertisement_matches_linux() -> None:
    src, ra, hlim = _captured_ra()
    a, _ll = _up()
    a.take_actions()
    now = 10 * S
    assert a.input_ra(src, hlim, ra, now, _rand())
    g = ip6("2001:db8:1::ff:fe00:a01")                    # the address Linux formed from it
    acts = a.take_actions()
    assert acts[:3] == [ac.RouterAdded(src), ac.LinkParams(64, 1500, 0, 0),
                        ac.PrefixAdded(ip6("2001:db8:1::"), 64)]
    assert ac.AddressAdded(g, 64, True) in acts and ac.DnsServers((src,)) in acts
    info = {i.addr: i for i in a.addresses()}[g]
    assert (info.origin, info.valid_until, info.preferred_until) == ("slaac", now + 3600 * S,
                                                                     now + 3600 * S)
    assert a.onlink(ip6("2001:db8:1::77")) and not a.onlink(ip6("2001:db8:9::1"))
    assert a.select_router(lambda r: False) == src and a.routers() == [(src, now + 1800 * S)]
    r = _rand()
    a.timeout(a.deadline, r)
    a.timeout(a.deadline, r)
    assert a.usable(g)
    a.timeout(now + 1800 * S, r)
    assert ac.RouterRemoved(src) in a.take_actions() and a.select_router(lambda r: True) is None
    a.timeout(now + 3600 * S, r)
    acts = a.take_actions()
    assert ac.AddressRemoved(g, 64, "expired") in acts and ac.DnsServers(()) in acts
    assert ac.PrefixRemoved(ip6("2001:db8:1::"), 64) in acts and not a.usable(g)


def _ra(valid: int, preferred: int, lifetime: int = 1800, flags: int = 0xC0, plen: int = 64,
        prefix: str = "2001:db8:5::") -> icmp6.RouterAdvertisement:
    return icmp6.RouterAdvertisement(64, 0, lifetime, 0, 0, (
        icmp6.PrefixInfo(plen, flags, valid, preferred, ip6(prefix)),))


def test_lifetimes_deprecation_and_two_hour_rule() -> None:
    a, _ll = _up()
    rt = ip6("fe80::1")
    r = _rand()
    a.input_ra(rt, 255, _ra(10000, 100), 0, r)
    g = next(i.addr for i in a.addresses() if i.origin == "slaac")
    a.timeout(a.deadline, r)
    a.timeout(a.deadline, r)
    assert a.usable(g)
    a.timeout(100 * S, r)
    assert ac.AddressDeprecated(g) in a.take_actions()
    assert {i.addr: i.state for i in a.addresses()}[g] == ac.DEPRECATED and a.usable(g)
    a.input_ra(rt, 255, _ra(60, 60), 200 * S, r)          # cannot cut 9800 s left to 60 s
    info = {i.addr: i for i in a.addresses()}[g]
    assert info.valid_until == 200 * S + ac.TWO_HOURS and info.state == ac.PREFERRED
    a.input_ra(rt, 255, _ra(60, 60), 300 * S, r)          # now 2 h left or less: ignored
    assert {i.addr: i for i in a.addresses()}[g].valid_until == 200 * S + ac.TWO_HOURS
    a.input_ra(rt, 255, _ra(9000, 60), 400 * S, r)        # longer than 2 h: taken
    assert {i.addr: i for i in a.addresses()}[g].valid_until == 9400 * S


def test_ignored_advertisements_and_options() -> None:
    a, _ll = _up()
    r = _rand()
    assert not a.input_ra(ip6("2001:db8::1"), 255, _ra(100, 100), 0, r)   # not link-local
    assert not a.input_ra(ip6("fe80::1"), 64, _ra(100, 100), 0, r)        # hop limit
    a.input_ra(ip6("fe80::1"), 255, _ra(100, 200), 0, r)          # preferred > valid
    a.input_ra(ip6("fe80::1"), 255, _ra(100, 100, plen=48, prefix="2001:db8:7::"), 0, r)
    a.input_ra(ip6("fe80::1"), 255, _ra(100, 100, flags=icmp6.PI_ONLINK,
                                        prefix="2001:db8:8::"), 0, r)
    a.input_ra(ip6("fe80::1"), 255, _ra(100, 100, prefix="fe80::"), 0, r)
    assert [i.origin for i in a.addresses()] == ["linklocal"]
    assert a.onlink(ip6("2001:db8:8::1")) and a.onlink(ip6("2001:db8:7::1"))
    a.input_ra(ip6("fe80::1"), 255, _ra(0, 0, lifetime=0, flags=icmp6.PI_ONLINK,
                                        prefix="2001:db8:8::"), 1, r)
    assert not a.onlink(ip6("2001:db8:8::1")) and a.routers() == []
    ra = icmp6.RouterAdvertisement(64, 0, 0, 0, 0, (icmp6.Mtu(1000),))
    a.take_actions()
    a.input_ra(ip6("fe80::1"), 255, ra, 2, r)
    assert a.take_actions() == [ac.LinkParams(64, 0, 0, 0)]          # MTU below 1280 ignored


def test_tables_are_bounded() -> None:
    a, _ll = _up(max_addresses=4, max_prefixes=3, max_routers=2, max_dns=2)
    r = _rand()
    for i in range(20):
        ra = _ra(1000, 1000, prefix=f"2001:db8:{i + 100:x}::")
        dns = icmp6.Rdnss(100, (ip6(f"2001:db8::{i + 1:x}"),))
        ra = icmp6.RouterAdvertisement(64, 0, 100, 0, 0, (*ra.options, dns))
        a.input_ra(ip6(f"fe80::{i + 1:x}"), 255, ra, i, r)
    assert len(a.addresses()) == 4 and len(a.prefixes()) == 3 and len(a.routers()) == 2
    assert len(a.dns_servers()) == 2 and a.ignored > 0
    assert a.stop()[-1] == ac.DnsServers(()) and a.addresses() == []


def test_router_selection_prefers_reachable() -> None:
    a, _ll = _up()
    r = _rand()
    r1, r2 = ip6("fe80::1"), ip6("fe80::2")
    for rt in (r1, r2):
        a.input_ra(rt, 255, icmp6.RouterAdvertisement(64, 0, 100), 0, r)
    assert a.select_router(lambda x: x == r2) == r2
    picks = {a.select_router(lambda x: False) for _ in range(4)}
    assert picks == {r1, r2}                                      # round robin
    a.router_unreachable(r2)
    assert a.select_router(lambda x: True) == r1


@settings(max_examples=200)
@given(st.binary(max_size=200), st.integers(0, 2**32 - 1))
def test_hostile_router_advertisements(body: bytes, rest: int) -> None:
    a, _ll = _up(max_addresses=4)
    r = _rand()
    try:
        ra = icmp6.decode(icmp6.Icmp6Message(icmp6.ROUTER_ADVERT, 0, rest, body))
    except FormatError:
        return
    for t in range(3):
        a.input_ra(ip6("fe80::1"), 255, ra, t * 1000 * S, r)
        a.timeout(t * 1000 * S, r)
    assert len(a.addresses()) <= 4 and len(a.routers()) <= 8 and len(a.dns_servers()) <= 3
    d = a.deadline
    assert d is None or d >= 0
