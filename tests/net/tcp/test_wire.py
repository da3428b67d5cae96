"""TCP wire format and the Internet checksum: Linux-captured vectors, hand-checked vectors,
hostile bytes, hypothesis round trips, and tcpdump as an oracle for what we emit."""

from __future__ import annotations

import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.net.wire import checksum as ck
from rumpkernel.net.wire.tcp import (
    NOP,
    SACK_PERMITTED,
    Mss,
    Sack,
    TcpFlags,
    TcpFormatError,
    TcpHeaderView,
    TcpOptions,
    TcpSegment,
    Timestamps,
    UnknownOption,
    WindowScale,
    emit,
    emit_for,
    emit_options,
    parse,
    parse_for,
    parse_options,
    pseudo_sum,
)

A = bytes.fromhex("0a630701")  # 10.99.7.1 (Linux client)
B = bytes.fromhex("0a630702")  # 10.99.7.2 (Linux server)
S, F, P, AK = TcpFlags.SYN, TcpFlags.FIN, TcpFlags.PSH, TcpFlags.ACK

# Segments captured with tcpdump between two Linux 6.18 network namespaces over a veth pair
# (checksum offload off), with tcpdump's decoding of each (all "cksum ... (correct)").
LINUX = [
    # 10.99.7.1.55944 > 10.99.7.2.8080: Flags [S], cksum 0x0590, seq 3842702644, win 64240,
    # options [mss 1460,sackOK,TS val 2617224283 ecr 0,nop,wscale 10]
    (A, B, "da881f90e50afd3400000000a002faf005900000020405b40402080a9bffac5b000000000103030a",
     TcpSegment(55944, 8080, 3842702644, 0, S, 64240, 0,
                TcpOptions([Mss(1460), SACK_PERMITTED, Timestamps(2617224283, 0), NOP,
                            WindowScale(10)])), 0x0590),
    # 8080 > 55944: Flags [S.], cksum 0x6681, seq 128552562, ack 3842702645, win 65160,
    # options [mss 1460,sackOK,TS val 2562944134 ecr 2617224283,nop,wscale 10]
    (B, A, "1f90da8807a98e72e50afd35a012fe8866810000020405b40402080a98c36c869bffac5b0103030a",
     TcpSegment(8080, 55944, 128552562, 3842702645, S | AK, 65160, 0,
                TcpOptions([Mss(1460), SACK_PERMITTED, Timestamps(2562944134, 2617224283),
                            NOP, WindowScale(10)])), 0x6681),
    # 55944 > 8080: Flags [.], cksum 0x939a, ack 1, win 63,
    # options [nop,nop,TS val 2617224283 ecr 2562944134]
    (A, B, "da881f90e50afd3507a98e738010003f939a00000101080a9bffac5b98c36c86",
     TcpSegment(3842702645 - 3842702645 + 55944, 8080, 3842702645, 128552563, AK, 63, 0,
                TcpOptions.data_options(2617224283, 2562944134)), 0x939A),
    # 55944 > 8080: Flags [F.], cksum 0x8d4d, seq 1601, ack 1, win 63,
    # options [nop,nop,TS val 2617224289 ecr 2562944140]
    (A, B, "da881f90e50b037507a98e738011003f8d4d00000101080a9bffac6198c36c8c",
     TcpSegment(55944, 8080, 3842704245, 128552563, F | AK, 63, 0,
                TcpOptions.data_options(2617224289, 2562944140)), 0x8D4D),
    # 8080 > 55944: Flags [P.], cksum 0xcfc1, seq 1:11, ack 1602, win 70,
    # options [nop,nop,TS val 2562944140 ecr 2617224289], length 10 ("reply:1600")
    (B, A, "1f90da8807a98e73e50b037680180046cfc100000101080a98c36c8c9bffac617265706c793a31363030",
     TcpSegment(8080, 55944, 128552563, 3842704246, P | AK, 70, 0,
                TcpOptions.data_options(2562944140, 2617224289), b"reply:1600"), 0xCFC1),
]
# 55944 > 8080: Flags [P.], cksum 0x6b11, seq 1449:1601 (152 bytes of "hello linux tcp ")
LINUX_DATA = ("da881f90e50b02dd07a98e738018003f6b1100000101080a9bffac6198c36c866e7578207463702068"
              "656c6c6f206c696e7578207463702068656c6c6f206c696e7578207463702068656c6c6f206c696e"
              "7578207463702068656c6c6f206c696e7578207463702068656c6c6f206c696e7578207463702068"
              "656c6c6f206c696e7578207463702068656c6c6f206c696e7578207463702068656c6c6f206c696e"
              "7578207463702068656c6c6f206c696e75782074637020")


@pytest.mark.parametrize("src,dst,hexbytes,expected,csum", LINUX)
def test_linux_segments_parse_and_reemit_byte_for_byte(src, dst, hexbytes, expected, csum):
    raw = bytes.fromhex(hexbytes)
    seg = parse_for(raw, src, dst)
    assert seg == expected
    assert TcpHeaderView(raw).checksum == csum
    assert emit_for(seg, src, dst) == raw


def test_linux_data_segment() -> None:
    raw = bytes.fromhex(LINUX_DATA)
    seg = parse_for(raw, A, B)
    assert (seg.seq, seg.ack, seg.flags, seg.window) == (3842704093, 128552563, P | AK, 63)
    assert len(seg.payload) == 152 and seg.payload.startswith(b"nux tcp hello linux")
    assert emit_for(seg, A, B) == raw
    corrupt = bytearray(raw)
    corrupt[100] ^= 0x20
    with pytest.raises(TcpFormatError) as e:
        parse_for(bytes(corrupt), A, B)
    assert e.value.reason == "checksum"


def test_hand_checked_sack_and_unknown_options() -> None:
    # nop nop | SACK len 18: 1000-2000, 3000-4000 | kind 254 len 6 "\x12\x34\xab\xcd" | mss 536
    # | EOL + padding
    raw_opts = bytes.fromhex("0101" "0512" "000003e8000007d0" "00000bb800000fa0"
                             "fe061234abcd" "02040218" "0000")
    opts = parse_options(raw_opts)
    assert opts.items == (NOP, NOP, Sack(((1000, 2000), (3000, 4000))),
                          UnknownOption(254, b"\x12\x34\xab\xcd"), Mss(536))
    assert opts.sack == ((1000, 2000), (3000, 4000)) and opts.mss == 536
    assert emit_options(opts) == raw_opts
    # a known kind with the wrong length is kept as unknown (Linux ignores such options)
    odd = parse_options(bytes.fromhex("020500000001"))
    assert odd.items == (UnknownOption(2, b"\x00\x00\x00"), NOP) and odd.mss is None


def test_header_view_reads_fields_in_place() -> None:
    raw = bytes.fromhex(LINUX[1][2])
    v = TcpHeaderView(raw)
    assert (v.src_port, v.dst_port, v.seq, v.ack, v.flags, v.window, v.urgent) == \
        (8080, 55944, 128552562, 3842702645, 0x12, 65160, 0)
    assert v.data_offset == 40 and len(v.raw_options) == 20 and v.payload == b""


@pytest.mark.parametrize("raw,reason", [
    (b"", "short"),
    (b"\x00" * 19, "short"),
    (bytes.fromhex("00010002000000000000000040020000" "00000000"), "offset"),  # offset 16
    (bytes.fromhex("00010002000000000000000060020000" "00000000"), "offset"),  # past the end
    (bytes.fromhex("00010002000000000000000060020000" "00000000" "02000000"), "option"),
    (bytes.fromhex("00010002000000000000000060020000" "00000000" "01010102"), "option"),
    (bytes.fromhex("00010002000000000000000060020000" "00000000" "01010208"), "option"),
    (bytes.fromhex("00010002000000000000000060020000" "00000000" "080a0000"), "option"),
])
def test_malformed_segments_raise_only_format_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(TcpFormatError) as e:
        parse(raw)
    assert e.value.reason == reason
    assert e.value.errno == 22 and "tcp:" in str(e.value)


@pytest.mark.parametrize("bad", [
    lambda: Mss(70000), lambda: WindowScale(-1), lambda: Sack(()),
    lambda: Sack(((1, 2),) * 5), lambda: Timestamps(2**32, 0), lambda: UnknownOption(2, b"ab"),
    lambda: UnknownOption(1, b""), lambda: TcpOptions([Sack(((1, 2),) * 4), Mss(1), Mss(2)]),
    lambda: TcpOptions(["mss"]),
    lambda: TcpSegment(70000, 1, 0, 0, 0, 0), lambda: TcpSegment(1, 1, 2**32, 0, 0, 0),
    lambda: TcpSegment(1, 1, 0, 0, 0x100, 0), lambda: TcpSegment(1, 1, 0, 0, 0, 0, options=()),
])
def test_reprs_validate_on_construction(bad) -> None:
    with pytest.raises(TcpFormatError):
        bad()


def test_reprs_are_immutable() -> None:
    seg = LINUX[0][3]
    with pytest.raises(AttributeError):
        seg.seq = 1
    with pytest.raises(AttributeError):
        seg.options.mss = 1


# --- hypothesis --------------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
option = st.one_of(
    st.just(NOP), st.just(SACK_PERMITTED), st.builds(Mss, st.integers(0, 65535)),
    st.builds(WindowScale, st.integers(0, 255)), st.builds(Timestamps, u32, u32),
    st.builds(Sack, st.lists(st.tuples(u32, u32), min_size=1, max_size=2).map(tuple)),
    st.builds(UnknownOption, st.integers(6, 255).filter(lambda k: k != 8),
              st.binary(max_size=6)),
)


@st.composite
def option_lists(draw) -> TcpOptions:
    items = []
    size = 0
    for o in draw(st.lists(option, max_size=8)):
        n = len(o.encode())
        if size + n <= 40:
            items.append(o)
            size += n
    return TcpOptions(items)


segments = st.builds(
    TcpSegment, st.integers(0, 65535), st.integers(0, 65535), u32, u32, st.integers(0, 255),
    st.integers(0, 65535), st.integers(0, 65535), option_lists(), st.binary(max_size=64),
    st.integers(0, 15))


@settings(max_examples=300, deadline=None)
@given(segments, st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4))
def test_roundtrip(seg: TcpSegment, src: bytes, dst: bytes) -> None:
    assert parse(emit(seg)) == seg
    assert parse_for(emit_for(seg, src, dst), src, dst) == seg


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_hostile_option_bytes_give_options_or_a_format_error(raw: bytes) -> None:
    try:
        opts = parse_options(raw[:40])
    except TcpFormatError as e:
        assert e.reason == "option"
        return
    assert parse_options(emit_options(opts)) == opts


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=100), st.integers(0, 15))
def test_hostile_segments_give_segments_or_a_format_error(raw: bytes, offset: int) -> None:
    raw = raw[:12] + bytes([(offset << 4) | (raw[12] & 15)]) + raw[13:]
    try:
        seg = parse(raw)
    except TcpFormatError as e:
        assert e.reason in ("short", "offset", "option")
        return
    assert parse(emit(seg)) == seg


# --- checksum ----------------------------------------------------------------------------------

def naive_sum(data: bytes, initial: int = 0) -> int:
    if len(data) % 2:
        data += b"\0"
    s = initial
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_rfc1071_example() -> None:
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ck.ones_complement_sum(data) == 0xDDF2
    assert ck.internet_checksum(data) == 0x220D
    assert ck.internet_checksum(data + b"\x22\x0d") == 0


def test_all_zero_and_all_ones() -> None:
    assert ck.ones_complement_sum(b"\0" * 10) == 0 and ck.internet_checksum(b"\0" * 10) == 0xFFFF
    assert ck.ones_complement_sum(b"\xff\xff") == 0xFFFF and ck.internet_checksum(b"\xff\xff") == 0


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_checksum_matches_word_by_word_sum(data: bytes, initial: int) -> None:
    s = naive_sum(data, initial)
    assert ck.ones_complement_sum(data, initial) == s or (s == 0xFFFF and initial == 0
                                                           and not any(data))
    assert ck.internet_checksum(data, initial) == (~ck.ones_complement_sum(data, initial)) & 0xFFFF


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4),
       st.integers(0, 0xFFFF), st.binary(min_size=16, max_size=16),
       st.binary(min_size=16, max_size=16), st.integers(0, 2**32 - 1))
def test_pseudo_headers(src4, dst4, length, src6, dst6, length6) -> None:
    v4 = src4 + dst4 + struct.pack("!BBH", 0, 6, length)
    assert ck.pseudo_header_sum_v4(src4, dst4, 6, length) % 0xFFFF == naive_sum(v4) % 0xFFFF
    v6 = src6 + dst6 + struct.pack("!IxxxB", length6, 6)
    assert ck.pseudo_header_sum_v6(src6, dst6, 6, length6) % 0xFFFF == naive_sum(v6) % 0xFFFF
    assert pseudo_sum(src4, dst4, length) % 0xFFFF == \
        ck.pseudo_header_sum_v4(src4, dst4, 6, length) % 0xFFFF
    assert pseudo_sum(src6, dst6, length6 & 0xFFFF) % 0xFFFF == \
        ck.pseudo_header_sum_v6(src6, dst6, 6, length6 & 0xFFFF) % 0xFFFF


def test_ipv6_segment_checksum_verifies() -> None:
    src, dst = bytes(range(16)), bytes(range(16, 32))
    seg = TcpSegment(1, 2, 3, 4, AK, 5, 0, TcpOptions.data_options(7, 8), b"abc")
    raw = emit_for(seg, src, dst)
    assert parse_for(raw, src, dst) == seg
    with pytest.raises(TcpFormatError):
        parse_for(raw, src, bytes(16))


# --- tcpdump reads what we write ---------------------------------------------------------------

@pytest.mark.oracle("tcpdump")
def test_tcpdump_decodes_our_segments(tmp_path) -> None:
    segs = [
        TcpSegment(40000, 80, 1000, 0, S, 65535, 0,
                   TcpOptions.build(mss=1460, sack_permitted=True, ts=(123, 0), wscale=7)),
        TcpSegment(80, 40000, 5000, 1001, AK, 1024, 0,
                   TcpOptions.data_options(77, 123, ((6000, 7000), (8000, 9000))), b""),
        TcpSegment(80, 40000, 5000, 1001, P | AK | TcpFlags.URG, 1024, 3,
                   TcpOptions.data_options(78, 124), b"xyz"),
    ]
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    pcap = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))  # raw IPv4
    for seg in segs:
        tcp = emit_for(seg, src, dst)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", ck.internet_checksum(ip)) + ip[12:]
        pkt = ip + tcp
        pcap += struct.pack("<IIII", 0, 0, len(pkt), len(pkt)) + pkt
    path = tmp_path / "ours.pcap"
    path.write_bytes(bytes(pcap))
    out = subprocess.run(["tcpdump", "-nn", "-v", "-S", "-r", str(path)], capture_output=True,
                         text=True, timeout=30).stdout
    assert out.count("cksum") == out.count("(correct)") == len(segs), out
    assert "options [mss 1460,sackOK,TS val 123 ecr 0,nop,wscale 7]" in out
    assert "options [nop,nop,TS val 77 ecr 123,nop,nop,sack 2 {6000:7000}{8000:9000}]" in out
    assert "Flags [P.U]" in out and "urg 3" in out
