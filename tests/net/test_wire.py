"""Packet formats: hand-checked vectors, scapy as an independent oracle, hypothesis round trips
(DESIGN rule 8: parse(emit(x)) == x), and hostile input raising only FormatError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.hypercall.dev import pcap
from rumpkernel.kern.errno import KernelError
from rumpkernel.kern.syscall import structs as S
from rumpkernel.net.wire import arp, ethernet, icmp, ipv4, udp
from rumpkernel.net.wire.base import FormatError, ip4, ip4str, mac, macstr, mask_len, prefix_mask

# The worked example of the IPv4 header checksum (RFC 1071 style; Wikipedia "IPv4 header
# checksum"): 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7
IP_VECTOR = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
IP_VECTOR_SUM = 0xB861


def test_ipv4_header_checksum_vector() -> None:
    payload = bytes(0x73 - 20)
    pkt = ipv4.Ipv4Packet(ip4("192.168.0.1"), ip4("192.168.0.199"), 17, payload, ttl=64,
                          flags=ipv4.FLAG_DF)
    raw = pkt.emit()
    assert raw[:20] == IP_VECTOR[:10] + IP_VECTOR_SUM.to_bytes(2, "big") + IP_VECTOR[12:]
    back = ipv4.parse(raw)
    assert back == pkt and back.flags == ipv4.FLAG_DF


def test_ipv4_rejects_bad_checksum_version_and_lengths() -> None:
    raw = bytearray(ipv4.Ipv4Packet(ip4("10.0.0.1"), ip4("10.0.0.2"), 1, b"x" * 8).emit())
    bad = bytearray(raw)
    bad[10] ^= 1
    with pytest.raises(FormatError) as e:
        ipv4.parse(bad)
    assert e.value.reason == "checksum"
    assert ipv4.parse(bad, verify=False).payload == b"x" * 8
    for mutate, reason in ((lambda b: b.__setitem__(0, 0x65), "version"),
                           (lambda b: b.__setitem__(0, 0x44), "length"),
                           (lambda b: b.__setitem__(3, 200), "short")):
        b = bytearray(raw)
        mutate(b)
        with pytest.raises(FormatError) as e:
            ipv4.parse(b, verify=False)
        assert e.value.reason == reason
    with pytest.raises(FormatError):
        ipv4.parse(raw[:19])
    # link padding past the total length is not payload
    assert ipv4.parse(bytes(raw) + bytes(10)).payload == b"x" * 8


def test_udp_checksum_matches_scapy() -> None:
    scapy = pytest.importorskip("scapy.all")
    src, dst = "10.99.0.1", "10.99.0.2"
    ref = bytes(scapy.UDP(sport=5000, dport=53, chksum=None) / b"hello world")
    ip_ref = bytes(scapy.IP(src=src, dst=dst) / scapy.UDP(sport=5000, dport=53) / b"hello world")
    ours = udp.emit(udp.UdpDatagram(5000, 53, b"hello world"), ip4(src), ip4(dst))
    assert ours == ip_ref[20:]
    assert ref[:6] == ours[:6]
    assert udp.parse(ours, ip4(src), ip4(dst)).payload == b"hello world"
    with pytest.raises(FormatError) as e:
        udp.parse(ours[:-1] + b"X", ip4(src), ip4(dst))
    assert e.value.reason == "checksum"


def test_udp_zero_checksum_means_none_and_all_ones_sent_for_zero() -> None:
    d = udp.UdpDatagram(1, 2, b"")
    raw = udp.emit(d)
    assert raw[6:8] == b"\0\0" and udp.parse(raw, b"\1\2\3\4", b"\5\6\7\x08") == d
    # find a payload whose checksum computes to 0: it must go out as 0xffff
    for i in range(70000):
        p = i.to_bytes(3, "big")
        out = udp.emit_raw(7, 7, p, b"\0\0\0\0", b"\0\0\0\0")
        if out[6:8] == b"\xff\xff":
            assert udp.parse(out, b"\0\0\0\0", b"\0\0\0\0").payload == p
            break
    else:  # pragma: no cover
        pytest.fail("no zero-sum payload found")


def test_icmp_echo_matches_scapy_and_linux_layout() -> None:
    scapy = pytest.importorskip("scapy.all")
    ref = bytes(scapy.ICMP(type=8, id=0x1234, seq=7) / b"abcdefgh")
    ours = icmp.echo(icmp.ECHO, 0x1234, 7, b"abcdefgh").emit()
    assert ours == ref
    m = icmp.parse(ours)
    assert (m.type, m.ident, m.seq, m.payload) == (8, 0x1234, 7, b"abcdefgh")
    with pytest.raises(FormatError):
        icmp.parse(ours[:-1] + b"!")


def test_arp_vector() -> None:
    # who-has 10.0.0.2 tell 10.0.0.1, from 02:00:00:00:00:01 (hand-assembled)
    raw = bytes.fromhex("0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002"
                        .replace(" ", ""))
    p = arp.parse(raw + bytes(18))          # Ethernet padding ignored
    assert p == arp.ArpPacket(arp.OP_REQUEST, mac("02:00:00:00:00:01"), ip4("10.0.0.1"),
                              bytes(6), ip4("10.0.0.2"))
    assert p.emit() == raw
    with pytest.raises(FormatError):
        arp.parse(raw[:27])
    with pytest.raises(FormatError):
        arp.parse(b"\0\6" + raw[2:])            # IEEE 802 hardware type: not ours


def test_ethernet_vector_and_padding() -> None:
    raw = bytes.fromhex("ffffffffffff02000000000108060001")
    f = ethernet.parse(raw)
    assert (f.dst, macstr(f.src), f.ethertype, f.payload) == (ethernet.BROADCAST,
                                                               "02:00:00:00:00:01", 0x0806,
                                                               b"\x00\x01")
    assert f.emit() == raw
    assert len(ethernet.pad(raw)) == 60 and ethernet.pad(raw)[:16] == raw
    v = ethernet.EthernetView(raw)
    assert (v.dst, v.src, v.ethertype, bytes(v.payload)) == (f.dst, f.src, 0x0806, b"\0\1")
    with pytest.raises(FormatError):
        ethernet.parse(raw[:13])


def test_address_helpers() -> None:
    assert ip4str(ip4("10.99.0.255")) == "10.99.0.255"
    for bad in ("10.0.0", "10.0.0.256", "a.b.c.d", "1.2.3.4.5", ""):
        with pytest.raises(FormatError):
            ip4(bad)
    assert prefix_mask(24) == b"\xff\xff\xff\x00" and mask_len(prefix_mask(17)) == 17
    assert prefix_mask(0) == bytes(4) and mask_len(bytes(4)) == 0
    with pytest.raises(FormatError):
        mask_len(b"\xff\x00\xff\x00")
    assert mac("02-00-00-00-00-0A") == bytes([2, 0, 0, 0, 0, 10])
    with pytest.raises(FormatError):
        mac("02:00:00")


def test_pcap_round_trip_and_tshark_layout() -> None:
    frames = [(1_700_000_000_123_456_000, b"\x01" * 60), (1_700_000_001_000_000_000, b"\2" * 100)]
    raw = pcap.file_header(pcap.LINKTYPE_ETHERNET) + b"".join(pcap.record(t, f)
                                                              for t, f in frames)
    h = pcap.parse_header(raw)
    assert (h.linktype, h.snaplen, h.nanoseconds) == (1, 65535, False)
    assert [(t, d) for t, _n, d in pcap.iter_records(raw, h)] == frames
    assert struct.unpack_from("<I", raw)[0] == 0xA1B2C3D4
    with pytest.raises(pcap.FormatError):
        list(pcap.iter_records(raw[:-1], h))
    with pytest.raises(pcap.FormatError):
        pcap.parse_header(b"\0" * 24)


# ---- hypothesis round trips ------------------------------------------------------------------
addr4 = st.binary(min_size=4, max_size=4)
addr6 = st.binary(min_size=6, max_size=6)
u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 255)


@given(addr6, addr6, u16, st.binary(max_size=200))
def test_ethernet_round_trip(dst: bytes, src: bytes, et: int, payload: bytes) -> None:
    f = ethernet.EthernetFrame(dst, src, et, payload)
    assert ethernet.parse(f.emit()) == f


@given(u16, addr6, addr4, addr6, addr4)
def test_arp_round_trip(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    p = arp.ArpPacket(op, sha, spa, tha, tpa)
    assert arp.parse(p.emit()) == p


@settings(max_examples=200)
@given(addr4, addr4, u8, st.binary(max_size=300), u8, u8, u16, st.integers(0, 7),
       st.integers(0, 0x1FFF).map(lambda x: x * 8),
       st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)))
def test_ipv4_round_trip(src, dst, proto, payload, ttl, tos, ident, flags, off, opts) -> None:
    p = ipv4.Ipv4Packet(src, dst, proto, payload, ttl, tos, ident, flags, off, opts)
    raw = p.emit()
    assert ipv4.parse(raw) == p
    v = ipv4.Ipv4View(raw)
    assert (v.src, v.dst, v.proto, v.ttl, v.tos, v.ident, v.flags, v.frag_offset,
            bytes(v.payload), v.options) == (src, dst, proto, ttl, tos, ident, flags, off,
                                             payload, opts)


@given(u8, u8, st.integers(0, 2**32 - 1), st.binary(max_size=300))
def test_icmp_round_trip(t: int, c: int, rest: int, payload: bytes) -> None:
    m = icmp.IcmpMessage(t, c, rest, payload)
    assert icmp.parse(m.emit()) == m


@given(u16, u16, st.binary(max_size=1500), addr4, addr4)
def test_udp_round_trip(sp: int, dp: int, payload: bytes, src: bytes, dst: bytes) -> None:
    d = udp.UdpDatagram(sp, dp, payload)
    assert udp.parse(udp.emit(d, src, dst), src, dst) == d
    assert udp.parse(udp.emit(d)) == d


@given(addr4, u16)
def test_sockaddr_in_round_trip(a: bytes, port: int) -> None:
    raw = S.pack_sockaddr_in(a, port)
    assert len(raw) == 16 and S.unpack_sockaddr(raw)[1:] == (a, port)


@given(st.binary(max_size=S.SOCKADDR_UN_PATH_MAX).filter(lambda b: b"\0" not in b))
def test_sockaddr_un_round_trip(path: bytes) -> None:
    assert S.unpack_sockaddr(S.pack_sockaddr_un(path))[1] == path
    abstract = (b"\0" + path)[: S.SOCKADDR_UN_PATH_MAX]
    assert S.unpack_sockaddr(S.pack_sockaddr_un(abstract))[1] == abstract


@given(st.lists(st.tuples(st.integers(-5, 70000), st.integers(0, 40), st.binary(max_size=40)),
                max_size=5))
def test_cmsg_round_trip(msgs: list) -> None:
    assert list(S.iter_cmsgs(S.pack_cmsgs(msgs))) == msgs


# ---- hostile input: only FormatError (a KernelError), whatever the bytes ----------------------
@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_garbage_gives_format_errors_only(buf: bytes) -> None:
    for fn in (ethernet.parse, arp.parse, ipv4.parse, icmp.parse, udp.parse,
               lambda b: udp.parse(b, b"\0" * 4, b"\1" * 4), S.unpack_sockaddr,
               lambda b: list(S.iter_cmsgs(b))):
        try:
            fn(buf)
        except KernelError:
            pass
    try:
        pcap.parse_header(buf)
    except pcap.FormatError:
        pass
