"""IPv6 and ICMPv6 formats: every frame of a real Linux capture (ND, MLD with a hop-by-hop
header, an RA from dnsmasq, fragments, ICMPv6 errors) parses, verifies and re-emits byte for
byte; fields hand-checked against tshark's decode; scapy as a second oracle; hypothesis round
trips; hostile chains and ND options raise only FormatError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.net.wire import icmp6, ipv6, udp, udp6
from rumpkernel.net.wire.base import FormatError, mac
from rumpkernel.net.wire.checksum import pseudo_header_sum_v6
from rumpkernel.net.wire.ipv6 import ip6, ip6str
from tests.net6.captures import frames, ipv6_packet

CAP = "linux-v6.pcap"
A_LL, R_LL = ip6("fe80::ff:fe00:a01"), ip6("fe80::ff:fe00:a02")
A_GLOBAL = ip6("2001:db8:1::ff:fe00:a01")


def _icmp(n: int):
    p = ipv6_packet(CAP, n)
    ch = ipv6.parse_chain(p.payload, p.next_header)
    assert ch.upper == ipv6.NH_ICMPV6
    m = icmp6.parse(p.payload[ch.offset:], p.src, p.dst)
    return p, ch, m, icmp6.decode(m)


def test_every_captured_frame_round_trips() -> None:
    for i, fr in enumerate(frames(CAP), 1):
        p = ipv6_packet(CAP, i)
        assert p.emit() == fr[14:], i
        ch = ipv6.parse_chain(p.payload, p.next_header)
        first, raw = ipv6.emit_chain(ch.headers, ch.upper)
        assert first == p.next_header and raw == p.payload[: ch.offset], i
        if ch.upper == ipv6.NH_ICMPV6 and not any(
                isinstance(h, ipv6.FragmentHeader) for h in ch.headers):
            body = p.payload[ch.offset:]
            m = icmp6.parse(body, p.src, p.dst)            # checksum verified
            assert m.emit(p.src, p.dst) == body
            t = icmp6.decode(m)
            if t is not m:
                assert t.message() == m and t.emit(p.src, p.dst) == body, i


def test_mld_report_hop_by_hop_router_alert() -> None:
    p = ipv6_packet(CAP, 1)
    assert (ip6str(p.src), ip6str(p.dst), p.hop_limit, p.next_header) == ("::", "ff02::16", 1, 0)
    ch = ipv6.parse_chain(p.payload, p.next_header)
    assert ch.headers == (ipv6.OptionsHeader(ipv6.NH_HOPOPTS, (ipv6.Option(5, b"\0\0"),)),)
    assert (ch.upper, ch.offset) == (ipv6.NH_ICMPV6, 8)
    m = icmp6.parse(p.payload[8:], p.src, p.dst)
    assert (m.type, p.payload[8 + 2: 8 + 4]) == (icmp6.MLDV2_REPORT, b"\x5d\x36")   # tshark


def test_dad_solicitation_and_router_solicitation() -> None:
    p, _ch, _m, ns = _icmp(10)
    assert (p.src, ip6str(p.dst), p.hop_limit) == (ipv6.UNSPECIFIED, "ff02::1:ff00:a01", 255)
    # DAD: no source lladdr option, a random nonce (RFC 7527; tshark: "Nonce")
    assert ns.target == A_LL and len(ns.options) == 1
    assert isinstance(ns.options[0], icmp6.Nonce) and len(ns.options[0].value) == 6
    assert p.dst == ipv6.solicited_node(A_LL)
    assert ipv6.multicast_mac(p.dst) == frames(CAP)[9][:6] == bytes.fromhex("3333ff000a01")
    p, _ch, _m, rs = _icmp(13)
    assert (p.src, p.dst) == (A_LL, ipv6.ALL_ROUTERS)
    assert rs == icmp6.RouterSolicitation(
        (icmp6.LinkAddr(icmp6.OPT_SOURCE_LLADDR, mac("02:00:00:00:0a:01")),))


def test_dnsmasq_router_advertisement_fields() -> None:
    p, _ch, m, ra = _icmp(15)
    assert (p.src, p.dst, p.traffic_class, p.flow_label) == (R_LL, ipv6.ALL_NODES, 0xC0, 0x60CF7)
    assert m.emit(p.src, p.dst)[2:4] == b"\x57\xc9"                      # tshark: 0x57c9
    assert isinstance(ra, icmp6.RouterAdvertisement)
    assert (ra.cur_hop_limit, ra.flags, ra.router_lifetime, ra.reachable_time,
            ra.retrans_timer) == (64, 0, 1800, 0, 0)
    assert ra.options == (
        icmp6.PrefixInfo(64, icmp6.PI_ONLINK | icmp6.PI_AUTO, 3600, 3600, ip6("2001:db8:1::")),
        icmp6.Mtu(1500),
        icmp6.LinkAddr(icmp6.OPT_SOURCE_LLADDR, mac("02:00:00:00:0a:02")),
        icmp6.Rdnss(3600, (R_LL,)))
    pi = icmp6.find(ra.options, icmp6.PrefixInfo)
    assert pi.onlink and pi.autonomous
    assert icmp6.find(ra.options, icmp6.LinkAddr, icmp6.OPT_TARGET_LLADDR) is None


def test_neighbor_solicitation_and_solicited_advertisement() -> None:
    _p, _ch, _m, ns = _icmp(19)
    assert ns == icmp6.NeighborSolicitation(
        ip6("2001:db8:1::1"), (icmp6.LinkAddr(icmp6.OPT_SOURCE_LLADDR, mac("02:00:00:00:0a:01")),))
    _p, _ch, _m, na = _icmp(20)
    assert na.target == ip6("2001:db8:1::1") and na.router and na.solicited and na.override
    assert na.options == (icmp6.LinkAddr(icmp6.OPT_TARGET_LLADDR, mac("02:00:00:00:0a:02")),)


def test_echo_and_fragments() -> None:
    p, _ch, _m, e = _icmp(17)
    assert (p.src, p.dst) == (A_LL, R_LL)
    assert e.request and (e.ident, e.seq, len(e.data)) == (0x5038, 1, 56)
    _p, _ch, _m, r = _icmp(18)
    assert not r.request and (r.ident, r.seq, r.data) == (e.ident, e.seq, e.data)
    for n, off, more in ((21, 0, True), (22, 1448, True), (23, 2896, False)):
        p = ipv6_packet(CAP, n)
        ch = ipv6.parse_chain(p.payload, p.next_header)
        assert ch.headers == (ipv6.FragmentHeader(off, more, 0x66FFA8B9),)
        assert ch.upper == ipv6.NH_ICMPV6 and ch.offset == 8
    assert len(ipv6_packet(CAP, 21).payload) - 8 == 1448


def test_icmp6_errors_from_linux_router() -> None:
    p, _ch, _m, te = _icmp(28)
    assert isinstance(te, icmp6.TimeExceeded) and te.code == icmp6.TIMXCEED_HOPLIMIT
    inner = ipv6.parse(te.invoking)
    assert (inner.src, ip6str(inner.dst), inner.hop_limit) == (A_GLOBAL, "2001:db8:2::b", 1)
    _p, _ch, _m, ptb = _icmp(30)
    assert isinstance(ptb, icmp6.PacketTooBig) and ptb.mtu == 1280
    assert len(ptb.emit(p.src, p.dst)) == 1280 - 40          # as much as fits in the min MTU
    _p, _ch, _m, du = _icmp(32)
    assert isinstance(du, icmp6.DestUnreachable) and du.code == icmp6.UNREACH_PORT
    inner = ipv6.parse(du.invoking)
    assert inner.next_header == ipv6.NH_UDP and inner.payload[8:] == b"hello\n"


def test_udp_pseudo_header_as_linux_offload_leaves_it() -> None:
    """veth hands the frame over with CHECKSUM_PARTIAL: the UDP checksum field holds the folded
    IPv6 pseudo-header sum, which checks pseudo_header_sum_v6 against Linux's own."""
    p = ipv6_packet(CAP, 31)
    assert p.next_header == ipv6.NH_UDP
    n = len(p.payload)
    assert p.payload[6:8] == pseudo_header_sum_v6(p.src, p.dst, ipv6.NH_UDP, n).to_bytes(2, "big")
    zeroed = p.payload[:6] + b"\0\0" + p.payload[8:]
    c = ipv6.checksum(p.src, p.dst, ipv6.NH_UDP, zeroed)
    full = zeroed[:6] + c.to_bytes(2, "big") + zeroed[8:]
    assert ipv6.checksum(p.src, p.dst, ipv6.NH_UDP, full) == 0
    scapy = pytest.importorskip("scapy.all")
    ref = bytes(scapy.IPv6(src=ip6str(p.src), dst=ip6str(p.dst))
                / scapy.UDP(sport=0xC546, dport=9999) / b"hello\n")
    assert ref[40:] == full


def test_matches_scapy() -> None:
    scapy = pytest.importorskip("scapy.all")
    src, dst = "2001:db8::1", "2001:db8::2"
    ref = bytes(scapy.IPv6(src=src, dst=dst, hlim=7, tc=3, fl=0x12345)
                / scapy.IPv6ExtHdrHopByHop(options=[scapy.RouterAlert()])
                / scapy.IPv6ExtHdrDestOpt(options=[scapy.HBHOptUnknown(otype=0x1E, optdata=b"ab")])
                / scapy.IPv6ExtHdrFragment(offset=3, m=1, id=77)
                / scapy.ICMPv6EchoRequest(id=9, seq=4, data=b"payload"))
    first, chain = ipv6.emit_chain((
        ipv6.OptionsHeader(ipv6.NH_HOPOPTS, (ipv6.Option(5, b"\0\0"),)),
        ipv6.OptionsHeader(ipv6.NH_DSTOPTS, (ipv6.Option(0x1E, b"ab"),)),
        ipv6.FragmentHeader(24, True, 77)), ipv6.NH_ICMPV6)
    body = icmp6.Echo(True, 9, 4, b"payload").emit(ip6(src), ip6(dst))
    ours = ipv6.Ipv6Packet(ip6(src), ip6(dst), first, chain + body, 7, 3, 0x12345).emit()
    assert ours == ref
    ns = bytes(scapy.ICMPv6ND_NS(tgt="fe80::1")
               / scapy.ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:09"))
    t = icmp6.decode(icmp6.parse(ns, ipv6.UNSPECIFIED, ipv6.ALL_NODES, verify=False))
    assert t == icmp6.NeighborSolicitation(ip6("fe80::1"), (
        icmp6.LinkAddr(icmp6.OPT_SOURCE_LLADDR, mac("02:00:00:00:00:09")),))


def test_address_helpers() -> None:
    assert ip6str(ip6("2001:0db8:0000:0000:0000:0000:0000:0001")) == "2001:db8::1"
    assert ip6str(ip6("::ffff:10.0.0.1")) == "::ffff:10.0.0.1"
    for bad in ("fe80::1%eth0", "1::2::3", "12345::", "", "10.0.0.1", ":" * 50, 5):
        with pytest.raises(FormatError):
            ip6(bad)
    assert ipv6.is_linklocal(A_LL) and not ipv6.is_linklocal(A_GLOBAL)
    assert ipv6.is_multicast(ipv6.ALL_NODES) and ipv6.is_unspecified(ipv6.UNSPECIFIED)
    assert ipv6.prefix_of(A_GLOBAL, 64) == ip6("2001:db8:1::")
    assert ipv6.prefix_of(A_GLOBAL, 0) == ipv6.UNSPECIFIED
    assert ipv6.prefix_match(A_GLOBAL, ip6("2001:db8:1::99"), 64)
    assert not ipv6.prefix_match(A_GLOBAL, ip6("2001:db8:2::99"), 64)


# ---- hostile input ---------------------------------------------------------------------------
def test_header_checks() -> None:
    raw = ipv6.Ipv6Packet(A_LL, R_LL, 59, b"abc").emit()
    assert ipv6.parse(raw + bytes(20)).payload == b"abc"           # link padding dropped
    for bad, reason in ((raw[:39], "short"), (raw[:-1], "short"), (b"\x40" + raw[1:], "version")):
        with pytest.raises(FormatError) as e:
            ipv6.parse(bad)
        assert e.value.reason == reason


def test_chain_limits_and_parameter_problem_pointers() -> None:
    hop = ipv6.OptionsHeader(ipv6.NH_HOPOPTS)
    dst = ipv6.OptionsHeader(ipv6.NH_DSTOPTS)
    first, raw = ipv6.emit_chain((dst, hop), ipv6.NH_NONE)
    with pytest.raises(ipv6.ChainError) as e:
        ipv6.parse_chain(raw, first)
    assert (e.value.code, e.value.pointer) == (ipv6.PP_NEXT_HEADER, 40)
    first, raw = ipv6.emit_chain((dst, dst, hop), ipv6.NH_NONE)
    with pytest.raises(ipv6.ChainError) as e:
        ipv6.parse_chain(raw, first)
    assert e.value.pointer == 48
    first, raw = ipv6.emit_chain((dst,) * 9, ipv6.NH_NONE)
    with pytest.raises(FormatError) as e:
        ipv6.parse_chain(raw, first)
    assert e.value.reason == "chain"
    assert len(ipv6.parse_chain(raw, first, max_count=9).headers) == 9
    big = ipv6.OptionsHeader(ipv6.NH_DSTOPTS, (ipv6.Option(0x1E, bytes(250)),) * 5)
    first, raw = ipv6.emit_chain((big,), ipv6.NH_TCP)
    with pytest.raises(FormatError) as e:
        ipv6.parse_chain(raw, first)
    assert e.value.reason == "chain"
    with pytest.raises(ipv6.ChainError) as e:       # header says 16 bytes, 8 present
        ipv6.parse_chain(b"\x3b\x01" + bytes(6), ipv6.NH_DSTOPTS)
    assert (e.value.code, e.value.pointer) == (ipv6.PP_INCOMPLETE_CHAIN, 40)
    with pytest.raises(ipv6.ChainError) as e:       # option runs past the header
        ipv6.parse_chain(b"\x3b\x00\x1e\x09" + bytes(4), ipv6.NH_DSTOPTS)
    assert (e.value.code, e.value.pointer) == (ipv6.PP_HEADER, 42)
    assert ipv6.option_action(0xC2) == ipv6.DISCARD_ICMP_UNICAST
    assert ipv6.option_action(0x05) == ipv6.SKIP


def test_nd_validation() -> None:
    na = icmp6.NeighborAdvertisement(ipv6.ALL_NODES, icmp6.NA_SOLICITED).message()
    with pytest.raises(FormatError):
        icmp6.decode(na)                             # multicast target
    ns = icmp6.NeighborSolicitation(A_LL).message()
    for bad in (icmp6.Icmp6Message(ns.type, 1, 0, ns.body),          # code not 0
                icmp6.Icmp6Message(ns.type, 0, 0, ns.body[:15]),     # short
                icmp6.Icmp6Message(ns.type, 0, 0, ns.body + b"\x01\x00" + bytes(6)),  # len 0
                icmp6.Icmp6Message(ns.type, 0, 0, ns.body + b"\x01\x02" + bytes(6)),  # past end
                icmp6.Icmp6Message(ns.type, 0, 0, ns.body + b"\x05\x02" + bytes(14))):  # MTU 16
        with pytest.raises(FormatError) as e:
            icmp6.decode(bad)
        assert e.value.reason == "nd"
    with pytest.raises(FormatError) as e:
        icmp6.parse(b"\x80\0\0\0\0\0\0", A_LL, R_LL)
    assert e.value.reason == "short"
    good = icmp6.Echo(True, 1, 2, b"x").emit(A_LL, R_LL)
    with pytest.raises(FormatError) as e:
        icmp6.parse(good, A_LL, A_LL)
    assert e.value.reason == "checksum"


# ---- hypothesis ------------------------------------------------------------------------------
addr = st.binary(min_size=16, max_size=16)
u8, u16, u32 = st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1)
options = st.lists(st.builds(ipv6.Option, st.integers(2, 255), st.binary(max_size=20)),
                   max_size=4).map(tuple)
ext = st.one_of(
    st.builds(ipv6.OptionsHeader, st.sampled_from([ipv6.NH_HOPOPTS, ipv6.NH_DSTOPTS]), options),
    st.builds(ipv6.RoutingHeader, u8, u8, st.integers(0, 5).map(lambda n: bytes(4 + 8 * n))),
    st.builds(ipv6.FragmentHeader, st.integers(0, 0x1FFF).map(lambda x: 8 * x), st.booleans(),
              u32))
lladdr = st.builds(icmp6.LinkAddr, st.sampled_from([1, 2]), st.binary(min_size=6, max_size=6))
nd_opt = st.one_of(
    lladdr, st.builds(icmp6.Mtu, u32), st.builds(icmp6.PrefixInfo, u8, u8, u32, u32, addr, u32),
    st.builds(icmp6.Rdnss, u32, st.lists(addr, min_size=1, max_size=3).map(tuple)),
    st.builds(icmp6.RedirectedHeader, st.integers(0, 4).map(lambda n: bytes(8 * n))),
    st.builds(icmp6.Nonce, st.binary(min_size=6, max_size=6)),
    st.builds(icmp6.UnknownOption, st.integers(26, 255),
              st.integers(0, 3).map(lambda n: bytes(6 + 8 * n))))
nd_opts = st.lists(nd_opt, max_size=5).map(tuple)
typed = st.one_of(
    st.builds(icmp6.Echo, st.booleans(), u16, u16, st.binary(max_size=64)),
    st.builds(icmp6.PacketTooBig, u32, st.binary(max_size=64)),
    st.builds(icmp6.ParamProblem, u8, u32, st.binary(max_size=64)),
    st.builds(icmp6.RouterSolicitation, nd_opts),
    st.builds(icmp6.RouterAdvertisement, u8, u8, u16, u32, u32, nd_opts),
    st.builds(icmp6.NeighborSolicitation, addr.filter(lambda a: a[0] != 0xFF), nd_opts),
    st.builds(icmp6.NeighborAdvertisement, addr.filter(lambda a: a[0] != 0xFF), u32, nd_opts),
    st.builds(icmp6.Redirect, addr, addr.filter(lambda a: a[0] != 0xFF), nd_opts))


@settings(max_examples=150)
@given(addr, addr, st.lists(ext, max_size=6), st.binary(max_size=64), u8, u8,
       st.integers(0, 0xFFFFF))
def test_packet_and_chain_round_trip(src, dst, headers, data, hlim, tc, fl) -> None:
    headers = [h for i, h in enumerate(headers)
               if not (isinstance(h, ipv6.OptionsHeader) and h.kind == 0 and i)]
    first, raw = ipv6.emit_chain(headers, ipv6.NH_UDP)
    p = ipv6.Ipv6Packet(src, dst, first, raw + data, hlim, tc, fl)
    back = ipv6.parse(p.emit())
    assert back == p
    v = ipv6.Ipv6View(p.emit())
    assert (v.src, v.dst, v.traffic_class, v.flow_label, v.hop_limit) == (src, dst, tc, fl, hlim)
    ch = ipv6.parse_chain(back.payload, back.next_header, max_bytes=65535)
    cut = next((k + 1 for k, h in enumerate(headers)
                if isinstance(h, ipv6.FragmentHeader) and h.offset), len(headers))
    assert list(ch.headers) == headers[:cut]          # a later fragment's data is not headers
    assert ch.upper == (ipv6._kind(headers[cut]) if cut < len(headers) else ipv6.NH_UDP)
    if cut == len(headers):
        assert back.payload[ch.offset:] == data


@settings(max_examples=200)
@given(typed, addr, addr)
def test_icmp6_typed_round_trip(t, src, dst) -> None:
    raw = t.emit(src, dst)
    m = icmp6.parse(raw, src, dst)
    assert m == t.message() and icmp6.decode(m) == t


@settings(max_examples=300)
@given(st.binary(max_size=300), st.sampled_from(sorted(ipv6.EXTENSION_HEADERS | {6, 17, 58})))
def test_hostile_chain_only_format_error(buf: bytes, first: int) -> None:
    try:
        ch = ipv6.parse_chain(buf, first)
    except FormatError:
        return
    assert ch.offset <= len(buf) and len(ch.headers) <= ipv6.MAX_EXT_COUNT


@settings(max_examples=300)
@given(st.sampled_from([1, 2, 3, 4, 128, 129, 133, 134, 135, 136, 137]), u8,
       st.binary(max_size=200))
def test_hostile_icmp6_only_format_error(t: int, code: int, body: bytes) -> None:
    try:
        icmp6.decode(icmp6.Icmp6Message(t, code if code < 3 else 0, 0, body))
    except FormatError:
        pass


@given(st.binary(max_size=120))
def test_hostile_ipv6_header_only_format_error(buf: bytes) -> None:
    try:
        ipv6.parse(buf)
    except FormatError:
        pass


@given(addr, addr, u16, u16, st.binary(max_size=200))
def test_udp6_round_trip_and_mandatory_checksum(src, dst, sp, dp, payload) -> None:
    raw = udp6.emit(sp, dp, payload, src, dst)
    assert udp6.parse(raw, src, dst) == udp.UdpDatagram(sp, dp, payload)
    with pytest.raises(FormatError):
        udp6.parse(raw[:6] + b"\0\0" + raw[8:], src, dst)
    with pytest.raises(FormatError):
        udp6.parse(raw + b"", dst[:15] + bytes([dst[15] ^ 1]), src)


def test_udp6_matches_scapy() -> None:
    scapy = pytest.importorskip("scapy.all")
    ref = bytes(scapy.IPv6(src="2001:db8::1", dst="fe80::2") / scapy.UDP(sport=53, dport=999)
                / b"answer")
    assert udp6.emit(53, 999, b"answer", ip6("2001:db8::1"), ip6("fe80::2")) == ref[40:]
