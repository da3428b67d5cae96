"""The neighbour cache (RFC 4861 7.3): every state and transition, bounded holding and
eviction, hostile sequences of events leaving it consistent."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.kern.errno import KernelError
from rumpkernel.net.inet6 import nd
from rumpkernel.net.inet6.nd import DELAY, INCOMPLETE, PERMANENT, PROBE, REACHABLE, STALE
from rumpkernel.net.wire.ipv6 import ip6

S = nd.SEC
IP = ip6("2001:db8::2")
MAC, MAC2 = b"\x02\0\0\0\0\x02", b"\x02\0\0\0\0\x03"


def test_resolution_incomplete_to_reachable_releases_held_packets() -> None:
    c = nd.NeighborCache()
    assert c.resolve(IP, b"p1", 0) is None and c.resolve(IP, b"p2", 1) is None
    assert c.state(IP) == INCOMPLETE and c.take_solicitations() == [(IP, None)]
    assert c.held_bytes == 4 and c.deadline == S
    assert c.advertised(IP, None, False, True, True, 2) == []      # no lladdr: not complete
    assert c.advertised(IP, MAC, False, True, True, 3) == [b"p1", b"p2"]
    assert c.state(IP) == REACHABLE and c.held_bytes == 0
    assert c.resolve(IP, b"p3", 4) == MAC


def test_unanswered_resolution_retries_then_fails() -> None:
    c = nd.NeighborCache()
    c.resolve(IP, b"x", 0)
    c.take_solicitations()
    for k in (1, 2):
        assert c.timeout(k * S) == [] and c.take_solicitations() == [(IP, None)]
    assert c.timeout(3 * S) == [b"x"] and c.state(IP) is None and c.failed == 1
    assert c.deadline is None


def test_reachable_stale_delay_probe_cycle() -> None:
    c = nd.NeighborCache(reachable_ns=30 * S)
    c.resolve(IP, b"x", 0)
    c.advertised(IP, MAC, False, True, False, 0)
    c.timeout(30 * S)
    assert c.state(IP) == STALE and c.deadline is None
    assert c.resolve(IP, b"y", 40 * S) == MAC and c.state(IP) == DELAY
    assert c.deadline == 45 * S
    c.take_solicitations()
    c.timeout(45 * S)
    assert c.state(IP) == PROBE and c.take_solicitations() == [(IP, MAC)]   # unicast probe
    c.timeout(46 * S)
    c.timeout(47 * S)
    assert c.take_solicitations() == [(IP, MAC), (IP, MAC)]
    c.timeout(48 * S)
    assert c.state(IP) is None                                      # gave up


def test_delay_confirmed_by_upper_layer_or_solicited_na() -> None:
    c = nd.NeighborCache()
    c.learn(IP, MAC, 0)
    assert c.state(IP) == STALE
    c.resolve(IP, b"x", 1)
    c.confirm(IP, 2)
    assert c.state(IP) == REACHABLE
    c.timeout(10**12)
    c.resolve(IP, b"x", 10**12)
    c.advertised(IP, None, False, True, False, 10**12 + 1)           # solicited, same address
    assert c.state(IP) == REACHABLE


def test_na_override_rules() -> None:
    c = nd.NeighborCache()
    c.learn(IP, MAC, 0)
    c.confirm(IP, 0)
    c.advertised(IP, MAC2, False, True, False, 1)                   # no override, different
    assert c.state(IP) == STALE and c.resolve(IP, b"", 2) == MAC      # address kept
    c.advertised(IP, MAC2, False, False, True, 3)                   # override, unsolicited
    assert c.state(IP) == STALE and c.resolve(IP, b"", 4) == MAC2
    c.advertised(ip6("2001:db8::99"), MAC, False, True, True, 5)    # no entry: ignored
    assert c.state(ip6("2001:db8::99")) is None


def test_router_flag_loss_is_reported() -> None:
    c = nd.NeighborCache()
    c.learn(IP, MAC, 0, router=True)
    assert c.is_router(IP)
    c.advertised(IP, MAC, False, True, True, 1)
    assert c.take_lost_routers() == [IP] and not c.is_router(IP)


def test_unsolicited_learning_completes_incomplete_entry() -> None:
    c = nd.NeighborCache()
    c.resolve(IP, b"held", 0)
    assert c.learn(IP, MAC, 1) == [b"held"] and c.state(IP) == STALE
    assert c.learn(IP, MAC, 2) == [] and c.state(IP) == STALE
    c.confirm(IP, 3)
    c.learn(IP, MAC2, 4)
    assert c.state(IP) == STALE and c.resolve(IP, b"", 5) == MAC2


def test_hold_queue_and_table_are_bounded() -> None:
    c = nd.NeighborCache(maxhold=3, maxentries=16)
    for i in range(10):
        c.resolve(IP, bytes([i]), 0)
    assert c.dropped == 7 and c.held_bytes == 3
    for i in range(100):
        c.learn(ip6(f"2001:db8::{i + 10:x}"), MAC, i)
    assert len(c.table) <= 16 and c.evicted > 0
    assert c.state(IP) == INCOMPLETE                    # kept while STALE entries were there


def test_permanent_entries_and_admin() -> None:
    c = nd.NeighborCache()
    c.resolve(IP, b"w", 0)
    assert c.add(IP, MAC, 0) == [b"w"] and c.state(IP) == PERMANENT
    c.advertised(IP, MAC2, False, True, True, 1)
    c.learn(IP, MAC2, 2)
    c.timeout(10**15)
    assert c.resolve(IP, b"", 10**15) == MAC and c.entries()[0].expires is None
    c.delete(IP)
    with pytest.raises(KernelError):
        c.delete(IP)
    c.resolve(IP, b"q", 0)
    assert c.flush() == [b"q"] and c.held_bytes == 0


def test_reachable_time_randomised_between_half_and_one_and_half() -> None:
    c = nd.NeighborCache()
    r = random.Random(1)
    seen = set()
    for _ in range(200):
        c.set_reachable(30 * S, r.randrange)
        assert 15 * S <= c.reachable_ns <= 45 * S
        seen.add(c.reachable_ns // S)
    assert len(seen) > 20


addrs = st.sampled_from([ip6(f"fe80::{i}") for i in range(1, 6)])
event = st.one_of(
    st.tuples(st.just("resolve"), addrs, st.binary(max_size=4)),
    st.tuples(st.just("na"), addrs, st.sampled_from([None, MAC, MAC2]), st.booleans(),
              st.booleans(), st.booleans()),
    st.tuples(st.just("learn"), addrs, st.sampled_from([MAC, MAC2]), st.sampled_from([None,
                                                                                       True])),
    st.tuples(st.just("confirm"), addrs),
    st.tuples(st.just("tick"), st.integers(0, 40 * S)))


@settings(max_examples=150)
@given(st.lists(event, max_size=60))
def test_random_event_sequences_keep_invariants(events) -> None:
    c = nd.NeighborCache(maxhold=2, maxentries=4)
    now = 0
    for ev in events:
        if ev[0] == "tick":
            now += ev[1]
            c.timeout(now)
        elif ev[0] == "resolve":
            c.resolve(ev[1], ev[2], now)
        elif ev[0] == "na":
            c.advertised(ev[1], ev[2], ev[3], ev[4], ev[5], now)
        elif ev[0] == "learn":
            c.learn(ev[1], ev[2], now, ev[3])
        else:
            c.confirm(ev[1], now)
        assert len(c.table) <= 4
        assert c.held_bytes == sum(len(p) for e in c.table.values() for p in e.held)
        for e in c.table.values():
            assert len(e.held) <= 2
            assert (e.lladdr is None) == (e.state == INCOMPLETE)
            assert not e.held or e.state == INCOMPLETE
        d = c.deadline
        assert d is None or all(e.expires >= d for e in c.table.values()
                                if e.state not in (STALE, PERMANENT))
