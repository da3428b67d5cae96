"""DHCPv4: dnsmasq's real OFFER/ACK (captured) parse to tshark's fields and re-emit byte for
byte; the client state machine driven by those replies configures what Linux would, then renews,
rebinds, expires, handles NAK, DECLINE and RELEASE; retransmission timing; hypothesis round
trips and hostile messages (only FormatError, never a wrong state)."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.net.inet import dhcp_client as dc
from rumpkernel.net.wire import dhcp
from rumpkernel.net.wire.base import FormatError, ip4, mac
from tests.net6.captures import udp_payloads

S = dc.SEC
HW = mac("02:00:00:00:0a:01")
XID = 0x12345678
SERVER = ip4("10.99.1.1")


def _msgs() -> list[tuple[int, int, bytes]]:
    return udp_payloads("dhcp-dnsmasq.pcap")


def _rand(n: int) -> int:
    return XID if n == 1 << 32 else n // 2          # xid as captured; no jitter


def test_dnsmasq_offer_and_ack_fields() -> None:
    (sp, dp, disc), (_, _, offer), (_, _, req), (_, _, ack), (_, _, rel) = _msgs()
    assert (sp, dp) == (68, 67)
    o = dhcp.parse(offer)
    assert o.emit() == offer                                      # byte for byte, padding too
    assert (o.op, o.xid, o.msg_type, o.flags, o.hwaddr) == (2, XID, dhcp.OFFER, 0x8000, HW)
    assert (o.yiaddr, o.siaddr) == (ip4("10.99.1.122"), SERVER)
    assert [c for c, _ in o.options] == [53, 54, 51, 58, 59, 1, 28, 6, 15, 3]
    assert (o.u32(51), o.u32(58), o.u32(59)) == (3600, 1800, 3150)
    assert (o.addr(1), o.addr(28), o.addrs(6), o.option(15), o.addrs(3)) == (
        ip4("255.255.255.0"), ip4("10.99.1.255"), (SERVER,), b"test", (SERVER,))
    a = dhcp.parse(ack)
    assert a.emit() == ack and a.msg_type == dhcp.ACK
    d, r, x = dhcp.parse(disc), dhcp.parse(req), dhcp.parse(rel)
    assert (d.msg_type, r.msg_type, x.msg_type) == (dhcp.DISCOVER, dhcp.REQUEST, dhcp.RELEASE)
    assert r.addr(dhcp.OPT_REQUESTED_IP) == ip4("10.99.1.122") and x.ciaddr == ip4("10.99.1.122")
    assert d.option(dhcp.OPT_PARAMS) == bytes([1, 3, 6, 15, 51, 58, 59])


def _bound(now: int = 0) -> tuple[dc.DhcpClient, dc.Lease]:
    _, (_, _, offer), _, (_, _, ack), _ = _msgs()
    c = dc.DhcpClient(HW)
    c.start(now, _rand)
    (t,) = c.take_output()
    assert (t.src, t.dst, t.message.msg_type, t.message.xid) == (bytes(4), dc.BROADCAST,
                                                                 dhcp.DISCOVER, XID)
    assert dhcp.parse(t.message.emit()) == t.message
    assert c.input(dhcp.parse(offer), now + S, _rand) and c.state == dc.REQUESTING
    (t,) = c.take_output()
    m = t.message
    assert (m.msg_type, m.addr(dhcp.OPT_REQUESTED_IP), m.addr(dhcp.OPT_SERVER_ID), m.secs) == (
        dhcp.REQUEST, ip4("10.99.1.122"), SERVER, 1)
    assert c.input(dhcp.parse(ack), now + 2 * S, _rand) and c.state == dc.BOUND
    (cfg,) = c.take_output()
    assert isinstance(cfg, dc.Configure)
    return c, cfg.lease


def test_client_configures_from_dnsmasq() -> None:
    c, lease = _bound()
    assert lease == dc.Lease(ip4("10.99.1.122"), 24, (SERVER,), (SERVER,), b"test", SERVER,
                             3600 * S, 1800 * S, 3150 * S, S, 0, ip4("10.99.1.255"))
    assert c.deadline == S + 1800 * S and lease.expires == 3601 * S


def test_renew_rebind_expire() -> None:
    c, lease = _bound()
    t1, t2 = S + 1800 * S, S + 3150 * S
    c.timeout(t1 - 1, _rand)
    assert c.take_output() == [] and c.state == dc.BOUND
    c.timeout(t1, _rand)
    (t,) = c.take_output()
    assert c.state == dc.RENEWING and (t.src, t.dst) == (lease.address, SERVER)
    m = t.message
    assert m.ciaddr == lease.address and m.option(dhcp.OPT_SERVER_ID) is None
    assert m.option(dhcp.OPT_REQUESTED_IP) is None
    assert c.deadline == t1 + (t2 - t1) // 2                         # half the time to T2
    retries = 0
    while c.state == dc.RENEWING:
        c.timeout(c.deadline, _rand)
        retries += 1
    assert c.state == dc.REBINDING and retries <= 6
    out = c.take_output()
    assert out[-1].dst == dc.BROADCAST and all(
        b.message.xid == XID for b in out)
    last = 0
    while c.state == dc.REBINDING:
        assert c.deadline - last >= 60 * S or c.deadline == lease.expires
        last = c.deadline
        c.timeout(c.deadline, _rand)
    assert c.state == dc.INIT and dc.Deconfigure(lease) in c.take_output()
    c.timeout(c.deadline, _rand)
    (t,) = c.take_output()
    assert c.state == dc.SELECTING and t.message.msg_type == dhcp.DISCOVER


def test_renewal_ack_extends_without_reconfiguring() -> None:
    _, _, _, (_, _, ack), _ = _msgs()
    c, _lease = _bound()
    c.timeout(c.deadline, _rand)
    c.take_output()
    now = c.deadline - 5
    assert c.input(dhcp.parse(ack), now, _rand) and c.state == dc.BOUND
    assert c.take_output() == []                     # same address, same servers
    assert c.lease.start == S + 1800 * S and c.deadline == c.lease.start + 1800 * S


def test_nak_restarts_and_release_tells_the_server() -> None:
    c, lease = _bound()
    c.timeout(c.deadline, _rand)
    c.take_output()
    nak = dhcp.DhcpMessage(dhcp.BOOTREPLY, XID, HW + bytes(10), (
        (dhcp.OPT_MSG_TYPE, bytes([dhcp.NAK])), (dhcp.OPT_SERVER_ID, SERVER)))
    assert c.input(nak, 2000 * S, _rand)
    out = c.take_output()
    assert out[0] == dc.Deconfigure(lease) and out[1].message.msg_type == dhcp.DISCOVER
    c, lease = _bound()
    c.release(10 * S)
    t, dec = c.take_output()
    assert (t.message.msg_type, t.src, t.dst, t.message.ciaddr) == (
        dhcp.RELEASE, lease.address, SERVER, lease.address)
    assert dec == dc.Deconfigure(lease) and c.state == dc.STOPPED and c.deadline is None


def test_decline_then_restart_after_ten_seconds() -> None:
    c, lease = _bound()
    c.decline(5 * S, _rand)
    t, dec = c.take_output()
    assert t.message.msg_type == dhcp.DECLINE and dec == dc.Deconfigure(lease)
    assert t.message.addr(dhcp.OPT_REQUESTED_IP) == lease.address
    assert c.state == dc.INIT and c.deadline == 15 * S


def test_foreign_and_bad_replies_are_ignored() -> None:
    _, (_, _, offer), _, (_, _, ack), _ = _msgs()
    c = dc.DhcpClient(HW)
    c.start(0, _rand)
    c.take_output()
    o = dhcp.parse(offer)
    assert not c.input(dataclasses.replace(o, xid=XID + 1), 1, _rand)
    assert not c.input(dataclasses.replace(o, chaddr=bytes(16)), 1, _rand)
    assert not c.input(dhcp.parse(ack), 1, _rand)                       # ACK while selecting
    assert not c.input(dataclasses.replace(o, yiaddr=dc.BROADCAST), 1, _rand)
    assert c.state == dc.SELECTING and c.ignored == 4
    c.input(o, 1, _rand)
    a = dhcp.parse(ack)
    no_lease = dataclasses.replace(a, options=tuple(x for x in a.options if x[0] != 51))
    assert not c.input(no_lease, 2, _rand) and c.state == dc.REQUESTING
    other = dataclasses.replace(a, options=((53, b"\x05"), (54, ip4("10.99.1.9")),
                                            (51, b"\0\0\0\x10")))
    assert not c.input(other, 2, _rand)                                 # another server


def test_retransmission_backoff() -> None:
    c = dc.DhcpClient(HW)
    r = random.Random(4)
    c.start(0, r.randrange)
    gaps, now = [], 0
    for _ in range(7):
        nxt = c.deadline
        gaps.append(nxt - now)
        now = nxt
        c.timeout(now, r.randrange)
    for g, base in zip(gaps, (4, 8, 16, 32, 64, 64, 64)):
        assert (base - 1) * S <= g <= (base + 1) * S
    assert len(c.take_output()) == 8 and c.state == dc.SELECTING


def test_request_gives_up_after_max_tries() -> None:
    _, (_, _, offer), _, _, _ = _msgs()
    c = dc.DhcpClient(HW, max_request_tries=2)
    c.start(0, _rand)
    c.input(dhcp.parse(offer), 1, _rand)
    c.timeout(c.deadline, _rand)
    assert c.state == dc.REQUESTING
    c.timeout(c.deadline, _rand)
    assert c.state == dc.SELECTING


def test_inconsistent_timers_and_small_leases_are_corrected() -> None:
    _, (_, _, offer), _, (_, _, ack), _ = _msgs()
    a = dhcp.parse(ack)
    opts = dict(a.options)
    opts[58], opts[59], opts[51] = (100).to_bytes(4, "big"), (50).to_bytes(4, "big"), bytes(4)
    opts[1] = ip4("255.0.255.0")
    c = dc.DhcpClient(HW, hostname=b"rump", client_id=b"\x01" + HW)
    c.start(0, _rand)
    req = c.take_output()[0].message
    assert req.option(dhcp.OPT_HOSTNAME) == b"rump" and req.option(61) == b"\x01" + HW
    c.input(dhcp.parse(offer), 0, _rand)
    assert c.input(dataclasses.replace(a, options=tuple(opts.items())), 0, _rand)
    lease = c.lease
    assert lease.lease_ns == dc.MIN_LEASE_S * S and lease.t1_ns < lease.t2_ns < lease.lease_ns
    assert lease.prefix_len == 8                     # non-contiguous mask: classful


def test_parse_errors_and_long_options() -> None:
    _, (_, _, offer), _, _, _ = _msgs()
    for bad, reason in ((offer[:239], "short"), (offer[:236] + b"XXXX" + offer[240:], "cookie"),
                        (offer[:240] + b"\x35\x09\x02", "option"),
                        (offer[:2] + b"\x11" + offer[3:], "field")):
        with pytest.raises(FormatError) as e:
            dhcp.parse(bad)
        assert e.value.reason == reason
    long = dhcp.DhcpMessage(1, 1, bytes(16), ((dhcp.OPT_DOMAIN, b"x" * 600), (53, b"\1")))
    raw = long.emit()
    assert raw.count(b"\x0f\xff") == 2 and dhcp.parse(raw) == long
    # option overload: options carried in the file field
    base = dhcp.DhcpMessage(2, 7, bytes(16), ((53, b"\x02"), (52, b"\x01"))).emit()
    area = 236 - 128
    raw = base[:area] + (b"\x0c\x04host\xff" + bytes(128))[:128] + base[236:]
    m = dhcp.parse(raw)
    assert m.option(dhcp.OPT_HOSTNAME) == b"host" and m.file == b""


opts = st.dictionaries(st.integers(1, 254).filter(lambda c: c != 52),
                       st.binary(max_size=300), max_size=6).map(lambda d: tuple(d.items()))
a4 = st.binary(min_size=4, max_size=4)


@settings(max_examples=150)
@given(st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(min_size=16, max_size=16),
       opts, a4, a4, st.integers(0, 0xFFFF), st.integers(0, 16),
       st.binary(max_size=64).map(lambda b: b.rstrip(b"\0")))
def test_message_round_trip(op, xid, ch, options, ci, yi, flags, hlen, sname) -> None:
    m = dhcp.DhcpMessage(op, xid, ch, options, ci, yi, flags=flags, hlen=hlen, sname=sname)
    raw = m.emit()
    assert len(raw) >= 300 and dhcp.parse(raw) == m


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_hostile_bytes_only_format_error(tail: bytes) -> None:
    _, (_, _, offer), _, _, _ = _msgs()
    try:
        dhcp.parse(offer[:240] + tail)
    except FormatError:
        pass


@settings(max_examples=100)
@given(st.lists(st.tuples(st.sampled_from([dhcp.OFFER, dhcp.ACK, dhcp.NAK, 9]), opts, a4),
                max_size=8), st.randoms())
def test_hostile_replies_keep_client_consistent(replies, rnd) -> None:
    c = dc.DhcpClient(HW)
    c.start(0, rnd.randrange)
    now = 0
    for t, options, yi in replies:
        sid = ((54, SERVER),) if rnd.random() < 0.8 else ()
        m = dhcp.DhcpMessage(2, c.xid, HW + bytes(10), ((53, bytes([t])), *sid, *(
            o for o in options if o[0] not in (53, 54))), yiaddr=yi)
        c.input(m, now, rnd.randrange)
        now += rnd.randrange(4000 * S)
        c.timeout(now, rnd.randrange)
        assert c.state in (dc.SELECTING, dc.REQUESTING, dc.BOUND, dc.RENEWING, dc.REBINDING,
                           dc.INIT)
        assert (c.lease is not None) == (c.state in (dc.BOUND, dc.RENEWING, dc.REBINDING))
        if c.lease is not None:
            assert 0 < c.lease.t1_ns < c.lease.t2_ns < c.lease.lease_ns
            assert 0 <= c.lease.prefix_len <= 32
        assert c.deadline is not None
