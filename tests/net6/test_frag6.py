"""IPv6 fragmentation and reassembly: Linux's own fragments (from the capture) reassemble in any
order and our fragmenter cuts the same datagram exactly as Linux did; RFC 5722 overlaps, RFC
6946 atomic fragments, parameter problems, timeouts and bounded memory; fragment/reassemble is
the identity (hypothesis).  The ICMPv6 error policy and its rate limit."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.kern.errno import KernelError
from rumpkernel.net.inet6 import frag6, icmp6_error
from rumpkernel.net.inet6.frag6 import ParamProblemNeeded, Reassembled, Reassembler6, fragment
from rumpkernel.net.wire import icmp6, ipv6
from rumpkernel.net.wire.ipv6 import FragmentHeader, Ipv6Packet, ip6
from tests.net6.captures import frames, ipv6_packet

S = frag6.SEC
CAP = "linux-v6.pcap"
SRC, DST = ip6("2001:db8::1"), ip6("2001:db8::2")


def _add(r: Reassembler6, p: Ipv6Packet, now: int = 0):
    return r.add(p, ipv6.parse_chain(p.payload, p.next_header), now)


def _frag(ident: int, off: int, more: bool, data: bytes, nh: int = 17) -> Ipv6Packet:
    first, chain = ipv6.emit_chain((FragmentHeader(off, more, ident),), nh)
    return Ipv6Packet(SRC, DST, first, chain + data)


def test_linux_fragments_reassemble_in_any_order() -> None:
    for numbers in ((21, 22, 23), (24, 25, 26)):
        pkts = [ipv6_packet(CAP, n) for n in numbers]
        for order in itertools.permutations(pkts):
            r = Reassembler6()
            results = [_add(r, p) for p in order]
            assert results[:2] == [None, None] and isinstance(results[2], Reassembled)
            whole = results[2].packet
            assert whole.next_header == ipv6.NH_ICMPV6 and len(whole.payload) == 3008
            m = icmp6.parse(whole.payload, whole.src, whole.dst)        # checksum good
            assert icmp6.decode(m).seq == 1 and r.held_bytes == 0 and not r.queues


def test_our_fragments_are_linuxs_fragments() -> None:
    pkts = [ipv6_packet(CAP, n) for n in (21, 22, 23)]
    r = Reassembler6()
    whole = next(x for x in (_add(r, p) for p in pkts) if x).packet
    ours = fragment(whole, 1500, 0x66FFA8B9)
    assert [p.emit() for p in ours] == [f[14:] for f in frames(CAP)[20:23]]
    assert fragment(whole, 65535, 1) == [whole]


def test_unfragmentable_headers_repeat_and_reassemble_to_the_original() -> None:
    hop = ipv6.OptionsHeader(ipv6.NH_HOPOPTS, (ipv6.Option(5, b"\0\0"),))
    rt = ipv6.RoutingHeader(0, 0, bytes(4))
    dst = ipv6.OptionsHeader(ipv6.NH_DSTOPTS, (ipv6.Option(0x1E, b"zz"),))
    first, chain = ipv6.emit_chain((hop, rt, dst), ipv6.NH_UDP)
    data = bytes(random.Random(3).randbytes(4000))
    p = Ipv6Packet(SRC, DST, first, chain + data, 9)
    parts = fragment(p, 1280, 77)
    assert len(parts) == 4 and all(len(x.emit()) <= 1280 for x in parts)
    for x in parts:
        ch = ipv6.parse_chain(x.payload, x.next_header)
        assert ch.headers[:2] == (hop, rt) and isinstance(ch.headers[2], FragmentHeader)
    r = Reassembler6()
    out = [_add(r, x) for x in reversed(parts)]
    assert out[-1] == Reassembled(p) and out[:-1] == [None] * 3


def test_atomic_fragment_is_returned_at_once() -> None:
    r = Reassembler6()
    assert _add(r, _frag(5, 0, False, b"whole")) == Reassembled(Ipv6Packet(SRC, DST, 17,
                                                                           b"whole"))
    assert r.atomic == 1 and not r.queues


def test_overlap_drops_datagram_duplicate_ignored() -> None:
    r = Reassembler6()
    assert _add(r, _frag(1, 0, True, bytes(16))) is None
    assert _add(r, _frag(1, 0, True, bytes(16))) is None           # exact duplicate
    assert len(r.queues) == 1 and r.overlaps == 0
    assert _add(r, _frag(1, 8, True, bytes(16))) is None           # overlaps 8..16
    assert r.overlaps == 1 and not r.queues and r.held_bytes == 0
    assert _add(r, _frag(1, 16, False, bytes(3))) is None           # the rest is gone
    assert r.queues                                                 # (a new queue, waiting)


def test_parameter_problems_and_inconsistent_ends() -> None:
    r = Reassembler6()
    assert _add(r, _frag(2, 0, True, bytes(13))) == ParamProblemNeeded(0, 4)
    assert _add(r, _frag(2, 65528, False, bytes(16))) == ParamProblemNeeded(0, 42)
    _add(r, _frag(3, 0, True, bytes(16)))
    _add(r, _frag(3, 32, False, bytes(8)))
    assert _add(r, _frag(3, 40, False, bytes(8))) is None and r.bad == 3 and not r.queues
    _add(r, _frag(4, 64, False, bytes(8)))
    assert _add(r, _frag(4, 72, True, bytes(8))) is None and r.bad == 4   # past the end


def test_timeout_reports_first_fragment_only() -> None:
    r = Reassembler6(timeout_ns=60 * S)
    first = _frag(7, 0, True, bytes(8))
    _add(r, first, 0)
    _add(r, _frag(8, 8, True, bytes(8)), 0)
    assert r.deadline == 60 * S and r.timeout(60 * S - 1) == []
    assert r.timeout(60 * S) == [first.emit()] and r.timeouts == 2 and r.held_bytes == 0


def test_fragment_flood_is_bounded() -> None:
    r = Reassembler6(max_bytes=64 * 1024, max_queues=16, max_frags=8)
    rnd = random.Random(5)
    for i in range(3000):
        _add(r, _frag(rnd.randrange(100), rnd.randrange(100) * 8, True, bytes(1024)), i)
        assert r.held_bytes <= 64 * 1024 and len(r.queues) <= 16
        assert all(len(q.pieces) <= 8 for q in r.queues.values())
    assert r.overflows > 0
    assert r.drop_all() > 0 and r.held_bytes == 0


def test_fragment_refuses_headers_with_no_room() -> None:
    big = ipv6.OptionsHeader(ipv6.NH_HOPOPTS, (ipv6.Option(0x1E, bytes(250)),) * 5)
    first, chain = ipv6.emit_chain((big,), ipv6.NH_UDP)
    with pytest.raises(KernelError):
        fragment(Ipv6Packet(SRC, DST, first, chain + bytes(2000)), 1280, 1)


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=5000), st.integers(1280, 3000), st.randoms())
def test_fragment_then_reassemble_is_identity(data, mtu, rnd) -> None:
    p = Ipv6Packet(SRC, DST, ipv6.NH_UDP, data)
    parts = fragment(p, mtu, 99)
    assert all(len(x.emit()) <= max(mtu, 1280) for x in parts)
    if parts == [p]:
        assert 40 + len(data) <= mtu
        return
    rnd.shuffle(parts)
    r = Reassembler6()
    out = [_add(r, x) for x in parts]
    assert out[-1] == Reassembled(p) and r.held_bytes == 0


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40), st.booleans(),
                          st.integers(0, 70)), max_size=30))
def test_hostile_fragments_keep_accounting(frags) -> None:
    r = Reassembler6(max_bytes=2048, max_queues=3, max_frags=4)
    for ident, off, more, n in frags:
        res = _add(r, _frag(ident, off * 8, more, bytes(n)))
        assert res is None or isinstance(res, (Reassembled, ParamProblemNeeded))
        assert r.held_bytes == sum(q.bytes for q in r.queues.values()) <= 2048
        assert len(r.queues) <= 3


# ---- ICMPv6 error policy ---------------------------------------------------------------------
def test_may_answer_rules() -> None:
    udp = Ipv6Packet(SRC, DST, ipv6.NH_UDP, bytes(8)).emit()
    assert icmp6_error.may_answer(udp, icmp6.DEST_UNREACH, icmp6.UNREACH_PORT)
    assert not icmp6_error.may_answer(udp, icmp6.DEST_UNREACH, 4, link_multicast=True)
    mcast = Ipv6Packet(SRC, ipv6.ALL_NODES, ipv6.NH_UDP, bytes(8)).emit()
    assert not icmp6_error.may_answer(mcast, icmp6.DEST_UNREACH, icmp6.UNREACH_PORT)
    assert icmp6_error.may_answer(mcast, icmp6.PACKET_TOO_BIG, 0)
    assert icmp6_error.may_answer(mcast, icmp6.PARAM_PROBLEM, ipv6.PP_OPTION)
    for src in (ipv6.UNSPECIFIED, ipv6.ALL_NODES):
        assert not icmp6_error.may_answer(Ipv6Packet(src, DST, 17, bytes(8)).emit(), 1, 4)
    err = icmp6.DestUnreachable(4, udp).emit(SRC, DST)
    assert not icmp6_error.may_answer(Ipv6Packet(SRC, DST, 58, err).emit(), 1, 4)
    redirect = icmp6.Redirect(SRC, DST).emit(SRC, DST)
    assert not icmp6_error.may_answer(Ipv6Packet(SRC, DST, 58, redirect).emit(), 1, 4)
    echo = icmp6.Echo(True, 1, 1).emit(SRC, DST)
    assert icmp6_error.may_answer(Ipv6Packet(SRC, DST, 58, echo).emit(), 1, 4)
    assert not icmp6_error.may_answer(b"garbage", 1, 4)


def test_error_message_fits_minimum_mtu() -> None:
    big = Ipv6Packet(SRC, DST, ipv6.NH_UDP, bytes(3000)).emit()
    m = icmp6_error.error_message(icmp6.PACKET_TOO_BIG, 0, 1280, big)
    assert 40 + len(m.emit(DST, SRC)) == 1280 and m.rest == 1280
    assert icmp6.decode(m) == icmp6.PacketTooBig(1280, big[:1232])


def test_rate_limit_token_bucket() -> None:
    rl = icmp6_error.RateLimit(per_second=10, burst=3)
    assert [rl.allow(0) for _ in range(5)] == [True, True, True, False, False]
    assert rl.allow(S // 10) and not rl.allow(S // 10) and rl.limited == 3
    assert sum(rl.allow(S + k * S // 100) for k in range(100)) <= 3 + 10
    assert not icmp6_error.RateLimit(0).allow(0) and icmp6_error.RateLimit(-1).allow(0)
