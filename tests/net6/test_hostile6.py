"""Hostile input into a running kernel's IPv6 (DESIGN rule 9): hypothesis-generated extension
header chains, fragments, router advertisements and neighbour discovery messages go in through
an interface's input path; each is dropped and counted or processed -- never an exception, a
panic, or memory that does not come back.  Hostile DNS replies reach the resolver through the
kernel's UDP from a server on another kernel and end in gaierror only.  (Hostile DHCP replies:
test_dhcp_sim.py.)"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rumpkernel.net.wire import ethernet, icmp6, udp6
from rumpkernel.net.wire.ipv6 import (
    NH_DSTOPTS,
    NH_FRAGMENT,
    NH_HOPOPTS,
    NH_ICMPV6,
    NH_ROUTING,
    NH_UDP,
    Ipv6Packet,
    ip6,
)
from rumpkernel.testing import netkit
from tests.net6.sim6 import linklocal, settle

PEER = ip6("fe80::99")
PEER_MAC = bytes.fromhex("020000000099")
ME = ip6("fd00:99::2")
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def k6() -> Iterator[tuple]:
    """One sim kernel with wire0 up (fd00:99::2/64, DAD done), UDP port 7 open."""
    _world, (k,) = netkit.sim_kernels(91, ["h"])
    netkit.plug(k, "wire0", "hostile6", None)
    k.socket.config.address6("wire0", "fd00:99::2/64")
    S = k.socket

    def setup():
        settle(k, "wire0")
        s = S.socket(S.AF_INET6, S.SOCK_DGRAM)
        s.bind(("::", 7))
        s.setblocking(False)
        return s, linklocal(k, "wire0")

    sock, ll = netkit.drive(k, setup)
    yield k, k.net.interfaces["wire0"], sock, ip6(ll)
    sock.close()
    k.halt()
    assert not k.panicked
    assert k.statistics()["memory"]["in_use"] == 0, k.statistics()["memory"]


def _frame(ifp, pkt: bytes, dst_mac: bytes | None = None) -> bytes:
    return ethernet.emit(dst_mac or ifp.lladdr, PEER_MAC, ethernet.ETHERTYPE_IPV6, pkt)


def _drain(sock) -> None:
    try:
        while True:
            sock.recv(70000)
    except BlockingIOError:
        pass


# ---- extension header chains --------------------------------------------------------------------
_option = st.tuples(st.integers(2, 255), st.binary(max_size=12))


def _opts_header(nh: int, opts: list[tuple[int, bytes]]) -> tuple[bytes, int]:
    body = b"".join(bytes((t, len(d))) + d for t, d in opts)
    pad = -(2 + len(body)) % 8
    body += (b"\x00" if pad == 1 else bytes((1, pad - 2)) + bytes(pad - 2)) if pad else b""
    return body, (2 + len(body)) // 8 - 1


@st.composite
def chains(draw) -> tuple[int, bytes]:
    """(first next header, bytes): 0-10 headers, honest or lying lengths, then an upper."""
    kinds = draw(st.lists(st.sampled_from([NH_HOPOPTS, NH_DSTOPTS, NH_ROUTING, NH_FRAGMENT]),
                          max_size=10))
    upper = draw(st.sampled_from([NH_UDP, NH_ICMPV6, 59, 253, 6]))
    nxt = [*kinds[1:], upper]
    out = b""
    for kind, nh in zip(kinds, nxt):
        if kind == NH_FRAGMENT:
            off = draw(st.integers(0, 0x1FFF)) * 8
            out += struct.pack("!BBHI", nh, 0, off | draw(st.integers(0, 1)),
                               draw(st.integers(0, 3)))
        elif kind == NH_ROUTING:
            out += bytes((nh, 0, draw(st.integers(0, 255)), draw(st.integers(0, 3)))) + bytes(4)
        else:
            body, hl = _opts_header(nh, draw(st.lists(_option, max_size=4)))
            out += bytes((nh, hl)) + body
        if draw(st.integers(0, 9)) == 0:                      # lie about a length
            out = out[:-2] + bytes((draw(st.integers(0, 255)),)) + out[-1:]
    if upper == NH_UDP:
        out += udp6.emit(1234, 7, draw(st.binary(max_size=64)), PEER, ME)
    elif upper == NH_ICMPV6:
        out += icmp6.Echo(True, 1, 2, b"x").emit(PEER, ME)
    else:
        out += draw(st.binary(max_size=32))
    if draw(st.integers(0, 4)) == 0:
        out = out[: draw(st.integers(0, len(out)))]           # truncate
    return (kinds[0] if kinds else upper), out


@SETTINGS
@given(chains())
def test_hostile_extension_header_chains(k6, chain) -> None:
    k, ifp, sock, _ll = k6
    first, payload = chain
    pkt = Ipv6Packet(PEER, ME, first, payload, 64).emit()
    before = ifp.ipackets

    def go():
        ifp.input(_frame(ifp, pkt))
        _drain(sock)

    netkit.drive(k, go)
    assert ifp.ipackets == before + 1 and not k.panicked


# ---- router advertisements and neighbour discovery ----------------------------------------------
_prefix = st.builds(lambda plen, flags, v, p, pre: icmp6.PrefixInfo(plen, flags, v, p, pre),
                    st.integers(0, 255), st.integers(0, 255),
                    st.sampled_from([0, 1, 30, 7200, icmp6.INFINITY]),
                    st.sampled_from([0, 1, 30, 7200, icmp6.INFINITY]),
                    st.sampled_from([ip6("fd00:aa::"), ip6("fe80::"), ip6("ff02::"),
                                     bytes(16), ip6("fd00:bb:cc::")]))
_ndopt = st.one_of(
    _prefix, st.builds(icmp6.Mtu, st.integers(0, 100000)),
    st.builds(icmp6.Rdnss, st.integers(0, 3600), st.lists(
        st.sampled_from([ip6("fd00::53"), ip6("fe80::53"), ip6("ff02::1")]), min_size=1,
        max_size=5).map(tuple)),
    st.builds(icmp6.LinkAddr, st.sampled_from([1, 2]), st.sampled_from([PEER_MAC,
                                                                          bytes(14)])),
    st.builds(icmp6.Nonce, st.binary(min_size=6, max_size=6)))


@st.composite
def nd_messages(draw) -> tuple[bytes, bytes, int, bytes]:
    """(source, destination, hop limit, ICMPv6 bytes): RAs, NS, NA, garbage options."""
    opts = tuple(draw(st.lists(_ndopt, max_size=6)))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        msg = icmp6.RouterAdvertisement(draw(st.integers(0, 255)), draw(st.integers(0, 255)),
                                        draw(st.integers(0, 0xFFFF)),
                                        draw(st.integers(0, 100000)),
                                        draw(st.integers(0, 100000)), opts).message()
    elif kind == 1:
        msg = icmp6.NeighborSolicitation(draw(st.sampled_from([ME, PEER, bytes(16)])),
                                         opts).message()
    elif kind == 2:
        msg = icmp6.NeighborAdvertisement(draw(st.sampled_from([ME, PEER])),
                                          draw(st.integers(0, 0xFFFFFFFF)), opts).message()
    else:
        msg = icmp6.Icmp6Message(draw(st.integers(128, 255)), draw(st.integers(0, 3)),
                                 draw(st.integers(0, 0xFFFFFFFF)), draw(st.binary(max_size=64)))
    src = draw(st.sampled_from([PEER, bytes(16), ip6("fd00:99::9")]))
    dst = draw(st.sampled_from([ip6("ff02::1"), ME, ip6("ff02::1:ff00:2")]))
    raw = msg.emit(src, dst)
    if draw(st.integers(0, 5)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return src, dst, draw(st.sampled_from([255, 255, 254, 1])), raw


@SETTINGS
@given(nd_messages())
def test_hostile_router_advertisements_and_nd(k6, m) -> None:
    k, ifp, _sock, _ll = k6
    src, dst, hlim, raw = m
    pkt = Ipv6Packet(src, dst, NH_ICMPV6, raw, hlim).emit()
    mac = b"\x33\x33" + dst[12:] if dst[0] == 0xFF else None

    def go():
        ifp.input(_frame(ifp, pkt, mac))
        k.sys.nanosleep(0.01)

    netkit.drive(k, go)
    assert not k.panicked
    t = k.socket.config.nd6()
    info = next(i for i in t["interfaces"] if i["interface"] == "wire0")
    assert len(info["routers"]) <= 8 and len(info["prefixes"]) <= 16
    assert len([a for i in k.socket.config.interfaces() if i["name"] == "wire0"
                for a in i["addrs6"]]) <= 16


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 8), st.booleans(), st.integers(0, 3),
                          st.integers(0, 200)), min_size=1, max_size=12))
def test_fragment_floods_stay_bounded(k6, frags) -> None:
    k, ifp, sock, _ll = k6

    def go():
        for off, more, ident, n in frags:
            fh = struct.pack("!BBHI", NH_UDP, 0, off * 8 | int(more), ident)
            ifp.input(_frame(ifp, Ipv6Packet(PEER, ME, NH_FRAGMENT, fh + bytes(n)).emit()))
        _drain(sock)

    netkit.drive(k, go)
    assert not k.panicked
    assert k.net.inet6.reass.held_bytes <= k.net.inet6.reass.max_bytes
    assert k.statistics()["memory"]["by_tag"].get("ip6reass", 0) == \
        k.net.inet6.reass.held_bytes


def test_counters_say_what_was_dropped(k6) -> None:
    k, ifp, _sock, _ll = k6
    bad = [
        Ipv6Packet(PEER, ME, NH_HOPOPTS, bytes((NH_UDP, 0, 0xC2, 4)) + bytes(4)).emit(),
        Ipv6Packet(PEER, ME, NH_ROUTING, bytes((NH_UDP, 0, 0, 1)) + bytes(4)).emit(),
        Ipv6Packet(PEER, ME, NH_DSTOPTS, bytes((NH_HOPOPTS, 0)) + bytes(6)
                   + bytes((NH_UDP, 0)) + bytes(6)).emit(),
        Ipv6Packet(PEER, ME, 253, b"unknown").emit(),
        b"\x60" + bytes(10),
        Ipv6Packet(PEER, ip6("fd00:1234::1"), NH_UDP, b"").emit(),
    ]
    before = dict(k.socket.config.stats().get("ip6", {}))
    netkit.drive(k, lambda: [ifp.input(_frame(ifp, p)) for p in bad])
    after = k.socket.config.stats()["ip6"]
    for name in ("badoptions", "badrouting", "noproto", "tooshort", "cantforward"):
        assert after.get(name, 0) > before.get(name, 0), name


# ---- hostile DNS replies through the kernel --------------------------------------------------
@pytest.fixture(scope="module")
def dns_pair() -> Iterator[tuple]:
    _world, (ka, kb) = netkit.sim_kernels(92, ["c", "d"])
    for k, n in ((ka, 1), (kb, 2)):
        netkit.plug(k, "wire0", "hostdns", None)
        k.socket.config.address6("wire0", f"fd00:53::{n}/64")
    ka.sys.mkdir("/etc", 0o755)
    fd = ka.sys.open("/etc/resolv.conf", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    ka.sys.write(fd, b"nameserver fd00:53::2\noptions timeout:1 attempts:1\n")
    ka.sys.close(fd)
    B = kb.socket

    def setup():
        settle(ka, "wire0")
        settle(kb, "wire0")
        s = B.socket(B.AF_INET6, B.SOCK_DGRAM)
        s.bind(("::", 53))
        s.settimeout(5)
        return s

    srv = netkit.drive(ka, setup)
    yield ka, kb, srv
    srv.close()
    for k in (ka, kb):
        k.halt()
        assert not k.panicked


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.binary(max_size=300), st.booleans())
def test_hostile_dns_replies_end_in_gaierror(dns_pair, reply, keep_id) -> None:
    ka, kb, srv = dns_pair
    A = ka.socket
    out: dict = {}

    def server():
        data, addr = srv.recvfrom(600)
        r = bytearray(reply)
        if keep_id and len(r) >= 2:
            r[:2] = data[:2]                                  # match the query's id
        srv.sendto(bytes(r), addr)

    def go():
        t = kb.host.world.thread_create(server, "dns")
        try:
            A.getaddrinfo("hostile.test", 80, A.AF_INET6)
            out["ok"] = True
        except A.gaierror as e:
            out["err"] = e.errno
        finally:
            kb.host.world.thread_join(t)

    netkit.drive(ka, go)
    assert "err" in out or "ok" in out
    assert not ka.panicked and not kb.panicked
