"""Frames from the real captures in tests/net6/data (made by data/make_captures.sh: Linux
ping6/ND/MLD and dnsmasq RA, DHCPv4 and DNS in network namespaces), read with our pcap reader."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from rumpkernel.hypercall.dev import pcap
from rumpkernel.net.wire import ethernet, ipv4, ipv6, udp

DATA = Path(__file__).parent / "data"


@cache
def frames(name: str) -> tuple[bytes, ...]:
    raw = (DATA / name).read_bytes()
    h = pcap.parse_header(raw)
    assert h.linktype == pcap.LINKTYPE_ETHERNET
    return tuple(bytes(d) for _t, _n, d in pcap.iter_records(raw, h))


def ipv6_packet(name: str, number: int) -> ipv6.Ipv6Packet:
    """Frame ``number`` (1-based, as tshark counts) as an IPv6 packet."""
    f = ethernet.parse(frames(name)[number - 1])
    assert f.ethertype == ethernet.ETHERTYPE_IPV6
    return ipv6.parse(f.payload)


def udp_payloads(name: str) -> list[tuple[int, int, bytes]]:
    """(source port, destination port, payload) of every IPv4 UDP datagram in a capture.  UDP
    checksums are not verified: veth hands frames over with CHECKSUM_PARTIAL (offload)."""
    out = []
    for fr in frames(name):
        f = ethernet.parse(fr)
        p = ipv4.parse(f.payload)
        d = udp.parse(p.payload)
        out.append((d.sport, d.dport, d.payload))
    return out
