"""DNS: dnsmasq's real answers (captured: A, AAAA, a CNAME chain, REFUSED, a truncated TXT
reply) parse to tshark's fields; the stub resolver core driven by them; retries, server
rotation, TCP fallback, search lists, spoofed replies; resolv.conf and hosts parsers; looping
and out-of-bounds compression pointers and other hostile messages raise only FormatError."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.net.inet import resolv
from rumpkernel.net.inet.resolv_conf import (
    AF_INET,
    AF_INET6,
    LOCALHOST,
    ResolvConf,
    parse_hosts,
    parse_resolv_conf,
)
from rumpkernel.net.wire import dns
from rumpkernel.net.wire.base import FormatError, ip4
from rumpkernel.net.wire.ipv6 import ip6
from tests.net6.captures import udp_payloads

S = resolv.SEC
SERVER = ip4("10.99.1.1")
CONF = ResolvConf((SERVER,), ())


def _msgs() -> list[bytes]:
    return [p for _s, _d, p in udp_payloads("dns-dnsmasq.pcap")]


def test_captured_answers() -> None:
    m = [dns.parse(x) for x in _msgs()]
    q, a = m[0], m[1]
    assert (q.id, q.qr, q.rd, q.questions) == (0xCA54, False, True,
                                               (dns.Question(dns.name("host.test"), dns.A),))
    assert q.emit() == _msgs()[0]                               # dig's query, byte for byte
    assert (a.id, a.qr, a.aa, a.ra, a.rcode) == (0xCA54, True, True, True, dns.NOERROR)
    assert a.answers == (dns.Record(dns.name("host.test"), dns.A, dns.IN, 0, ip4("10.99.1.8")),)
    assert a.emit() == _msgs()[1]                                # compression as dnsmasq's
    assert m[3].answers[0].data == ip6("2001:db8:1::8")
    cn = m[5]
    assert [r.rtype for r in cn.answers] == [dns.CNAME, dns.A]
    assert cn.answers[0].data == dns.name("host.test") and cn.answers[1].name == cn.answers[0].data
    assert dns.parse(cn.emit()) == cn and dns.parse(cn.emit(compress=False)) == cn
    assert len(cn.emit()) < len(_msgs()[5])                       # we compress the CNAME target
    assert m[7].rcode == dns.REFUSED and m[7].answers == ()
    tc = m[9]
    assert tc.tc and len(tc.answers) == 6 and all(r.rtype == dns.TXT for r in tc.answers)
    assert tc.answers[0].data == b"\x3c" + b"x" * 60
    assert len(_msgs()[9]) <= dns.MAX_UDP


def _ids(*ids: int):
    it = iter(ids)
    return lambda n: next(it) if n == 0x10000 else 0


def test_lookup_host_test_from_dnsmasq_replies() -> None:
    msgs = _msgs()
    lk = resolv.Lookup("host.test", CONF)
    lk.start(0, _ids(0xCA54, 0xA7AC))
    (s,) = lk.take_output()
    assert (s.server, s.port, s.tcp, s.id) == (SERVER, 53, False, 0xCA54)
    assert dns.parse(s.payload).questions == dns.parse(msgs[0]).questions
    assert lk.input(SERVER, 53, msgs[1], 1, _ids(0xA7AC))
    (s,) = lk.take_output()
    assert s.id == 0xA7AC and dns.parse(s.payload).questions[0].qtype == dns.AAAA
    assert lk.input(SERVER, 53, msgs[3], 2, _ids())
    assert lk.result == resolv.Result(resolv.OK, "host.test",
                                      ((AF_INET, ip4("10.99.1.8")),
                                       (AF_INET6, ip6("2001:db8:1::8"))), 0)
    assert lk.deadline is None


def test_cname_chain_and_refused() -> None:
    msgs = _msgs()
    lk = resolv.Lookup("alias.test", CONF, (AF_INET,))
    lk.start(0, _ids(0xAA94))
    lk.take_output()
    lk.input(SERVER, 53, msgs[5], 1, _ids())
    assert lk.result.canonical == "host.test"
    assert lk.result.addresses == ((AF_INET, ip4("10.99.1.8")),)
    lk = resolv.Lookup("nosuch.test", CONF, (AF_INET,))
    lk.start(0, _ids(0xD715, 0xD715))
    lk.take_output()
    assert lk.input(SERVER, 53, msgs[7], 1, _ids(0xD715))     # REFUSED: try again (attempts)
    assert not lk.done and len(lk.take_output()) == 1
    lk.input(SERVER, 53, msgs[7], 2, _ids())
    assert lk.result.error == resolv.FAIL


def _reply(q: bytes, *answers: dns.Record, rcode: int = 0, tc: bool = False) -> bytes:
    m = dns.parse(q)
    flags = dns.FLAG_QR | dns.FLAG_RD | dns.FLAG_RA | rcode | (dns.FLAG_TC if tc else 0)
    return dns.Message(m.id, flags, m.questions, answers).emit()


def test_truncated_reply_falls_back_to_tcp() -> None:
    lk = resolv.Lookup("big.test", CONF, (AF_INET,))
    r = random.Random(1)
    lk.start(0, r.randrange)
    (s,) = lk.take_output()
    assert lk.input(SERVER, 53, _reply(s.payload, tc=True), 1, r.randrange)
    (t,) = lk.take_output()
    assert t.tcp and t.server == SERVER and not lk.done
    rec = [dns.Record(dns.name("big.test"), dns.A, dns.IN, 60, bytes([10, 0, 0, i]))
           for i in range(40)]
    assert not lk.input(SERVER, 53, _reply(s.payload, *rec), 2, r.randrange)  # old id
    assert lk.input(SERVER, 53, _reply(t.payload, *rec), 2, r.randrange, tcp=True)
    assert lk.result.error == resolv.OK and len(lk.result.addresses) == 40
    assert lk.result.ttl == 60


def test_timeouts_rotate_servers_then_give_up() -> None:
    s1, s2 = ip4("10.0.0.1"), ip6("2001:db8::53")
    lk = resolv.Lookup("x.test", ResolvConf((s1, s2), (), timeout_s=2, attempts=2), (AF_INET,))
    r = random.Random(2)
    lk.start(0, r.randrange)
    sent, now = [], 0
    while not lk.done:
        sent += [(x.server, now) for x in lk.take_output()]
        now = lk.deadline
        lk.timeout(now, r.randrange)
    assert sent == [(s1, 0), (s2, 2 * S), (s1, 4 * S), (s2, 8 * S)]
    assert now == 12 * S and lk.result.error == resolv.AGAIN


def test_spoofed_and_stray_replies_are_ignored() -> None:
    lk = resolv.Lookup("h.test", CONF, (AF_INET,))
    r = random.Random(3)
    lk.start(0, r.randrange)
    (s,) = lk.take_output()
    good = _reply(s.payload, dns.Record(dns.name("h.test"), dns.A, 1, 5, b"\1\2\3\4"))
    m = dns.parse(good)
    other_q = dns.Message(m.id, m.flags, (dns.Question(dns.name("evil.test"), dns.A),),
                          m.answers).emit()
    for src, port, data in ((ip4("10.6.6.6"), 53, good), (SERVER, 5353, good),
                            (SERVER, 53, good[:2] + b"\0\0" + good[4:]),      # not a response
                            (SERVER, 53, bytes([good[0] ^ 1]) + good[1:]),   # wrong id
                            (SERVER, 53, other_q), (SERVER, 53, b"\0" * 5)):
        assert not lk.input(src, port, data, 1, r.randrange)
    assert lk.ignored == 6 and not lk.done
    assert lk.input(SERVER, 53, good.replace(b"\x01h\x04test", b"\x01H\x04TEST"), 1,
                    r.randrange)                                       # 0x20 case is fine
    assert lk.result.addresses == ((AF_INET, b"\1\2\3\4"),)


def test_search_list_and_ndots() -> None:
    conf = ResolvConf((SERVER,), ("corp.test", "test"), ndots=1)
    assert resolv.candidates("www", conf) == [dns.name("www.corp.test"), dns.name("www.test"),
                                              dns.name("www")]
    assert resolv.candidates("a.b", conf)[0] == dns.name("a.b")
    assert resolv.candidates("a.b.", conf) == [dns.name("a.b")]
    lk = resolv.Lookup("www", conf, (AF_INET, AF_INET6))
    r = random.Random(4)
    lk.start(0, r.randrange)
    (s,) = lk.take_output()
    lk.input(SERVER, 53, _reply(s.payload, rcode=dns.NXDOMAIN), 1, r.randrange)
    (s,) = lk.take_output()
    assert dns.parse(s.payload).questions[0].name == dns.name("www.test")
    lk.input(SERVER, 53, _reply(s.payload), 2, r.randrange)              # NODATA for A
    (s,) = lk.take_output()
    assert dns.parse(s.payload).questions[0].qtype == dns.AAAA
    lk.input(SERVER, 53, _reply(s.payload), 3, r.randrange)
    assert lk.result.error == resolv.NODATA
    lk = resolv.Lookup("nx", ResolvConf((SERVER,)), (AF_INET,))
    lk.start(0, r.randrange)
    (s,) = lk.take_output()
    lk.input(SERVER, 53, _reply(s.payload, rcode=dns.NXDOMAIN), 1, r.randrange)
    assert lk.result.error == resolv.NONAME


def test_hosts_first_and_cname_loop_bounded() -> None:
    hosts = parse_hosts("10.0.0.5 db.test db  # the database\n2001:db8::5 db.test\n")
    lk = resolv.Lookup("DB.test", CONF, hosts=hosts)
    lk.start(0, random.Random(5).randrange)
    assert lk.take_output() == [] and lk.result == resolv.Result(
        resolv.OK, "db.test", ((AF_INET, ip4("10.0.0.5")), (AF_INET6, ip6("2001:db8::5"))))
    lk = resolv.Lookup("loop.test", CONF, (AF_INET,))
    r = random.Random(6)
    lk.start(0, r.randrange)
    (s,) = lk.take_output()
    a, b = dns.name("loop.test"), dns.name("b.test")
    lk.input(SERVER, 53, _reply(s.payload, dns.Record(a, dns.CNAME, 1, 1, b),
                                dns.Record(b, dns.CNAME, 1, 1, a),
                                dns.Record(a, dns.A, 1, 1, b"\1\1\1\1")), 1, r.randrange)
    assert lk.result.error == resolv.NODATA            # the chain loops: nothing trusted


def test_resolv_conf_parser() -> None:
    c = parse_resolv_conf("""# generated
; comment
nameserver 10.99.1.1
nameserver fe80::1%eth0
nameserver bogus
nameserver 10.0.0.2
nameserver 10.0.0.3
domain old.test
search a.test b.test.
options ndots:3 timeout:99 attempts:0 rotate use-vc edns0
""")
    assert c.nameservers == (SERVER, ip6("fe80::1"), ip4("10.0.0.2"))
    assert c.search == ("a.test", "b.test") and (c.ndots, c.timeout_s, c.attempts) == (3, 30, 1)
    assert c.rotate and c.use_tcp
    assert parse_resolv_conf("") == ResolvConf(LOCALHOST)
    long = parse_resolv_conf("search " + " ".join(f"d{i}.test" for i in range(20)) + "\n"
                             + "x" * 100000 + "\n")
    assert len(long.search) == 6


def test_hosts_parser() -> None:
    h = parse_hosts("127.0.0.1 localhost\n::1 localhost ip6-localhost\nbad line here\n"
                    "10.0.0.1\n fe80::1%lo0 scoped\n10.0.0.9 Nine nine.test # c\n")
    assert h.lookup("LOCALHOST") == [(AF_INET, ip4("127.0.0.1")), (AF_INET6, ip6("::1"))]
    assert h.lookup("nine.test.") == [(AF_INET, ip4("10.0.0.9"))]
    assert h.canonical("nine.test") == "Nine" and h.reverse(ip4("10.0.0.9")) == "Nine"
    assert h.lookup("scoped") == [] and h.lookup("#") == [] and h.lookup("c") == []


# ---- hostile messages ------------------------------------------------------------------------
HDR1 = bytes.fromhex("abcd8180 0001 0000 0000 0000".replace(" ", ""))


@pytest.mark.parametrize("body,reason", [
    (b"\xc0\x0c\x00\x01\x00\x01", "pointer"),              # points at itself
    (b"\x01a\xc0\x0c\x00\x01\x00\x01", "pointer"),         # back to its own start: a loop
    (b"\xc0\x20\x00\x01\x00\x01", "pointer"),              # forward / out of bounds
    (b"\x01a\x01b\xc0", "short"),                         # pointer cut in half
    (b"\x05abcd", "name"),                                  # label past the end
    (b"\x41abc\x00\x00\x01\x00\x01", "name"),              # extended label type
    (b"\x3fa" + b"\x3f" + b"b" * 63, "name"),
])
def test_hostile_names(body: bytes, reason: str) -> None:
    with pytest.raises(FormatError) as e:
        dns.parse(HDR1 + body)
    assert e.value.reason == reason


def test_name_length_and_counts_bounded() -> None:
    long = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00\x00\x01\x00\x01"
    with pytest.raises(FormatError):
        dns.parse(HDR1 + long)                                  # 257 bytes > 255
    with pytest.raises(FormatError) as e:
        dns.parse(bytes.fromhex("abcd8180ffffffffffffffff") + bytes(100))
    assert e.value.reason == "count"
    # pointers each one step back (inside a TXT record's data) are bounded by MAX_POINTERS
    for jumps, ok in ((50, True), (200, False)):
        chain = bytearray(b"\x00")
        for k in range(jumps):
            prev = 23 + (0 if k == 0 else 1 + 2 * (k - 1))
            chain += bytes((0xC0 | prev >> 8, prev & 0xFF))
        last = 23 + len(chain) - 2
        msg = (bytes.fromhex("abcd81800000000200000000") + b"\x00\x00\x10\x00\x01"
               + bytes(4) + len(chain).to_bytes(2, "big") + chain
               + bytes((0xC0 | last >> 8, last & 0xFF)) + b"\x00\x01\x00\x01" + bytes(4)
               + b"\x00\x04\x01\x02\x03\x04")
        if ok:
            assert dns.parse(msg).answers[1].name == ()
        else:
            with pytest.raises(FormatError) as e:
                dns.parse(msg)
            assert e.value.reason == "pointer"
    for bad in ("a..b", "x" * 64 + ".test", ".".join(["abcd"] * 60), "é.test"):
        with pytest.raises(FormatError):
            dns.name(bad)


labels = st.lists(st.binary(min_size=1, max_size=10), max_size=4).map(tuple)
rdata = st.one_of(
    st.tuples(st.just(dns.A), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just(dns.AAAA), st.binary(min_size=16, max_size=16)),
    st.tuples(st.sampled_from([dns.CNAME, dns.NS, dns.PTR]), labels),
    st.tuples(st.just(dns.MX), st.tuples(st.integers(0, 0xFFFF), labels)),
    st.tuples(st.just(dns.SOA), st.tuples(labels, labels, *[st.integers(0, 2**32 - 1)] * 5)),
    st.tuples(st.sampled_from([dns.TXT, 99, dns.OPT]), st.binary(max_size=40)))
record = st.builds(lambda n, td, c, ttl: dns.Record(n, td[0], c, ttl, td[1]), labels, rdata,
                   st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1))


@settings(max_examples=150)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.lists(st.builds(dns.Question, labels, st.integers(0, 0xFFFF)), max_size=3),
       st.lists(record, max_size=4), st.lists(record, max_size=2), st.booleans())
def test_message_round_trip(ident, flags, qs, an, ns, compress) -> None:
    m = dns.Message(ident, flags, tuple(qs), tuple(an), tuple(ns))
    raw = m.emit(compress)
    assert dns.parse(raw) == m
    assert len(raw) <= len(m.emit(compress=False))


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_hostile_bytes_only_format_error(body: bytes) -> None:
    try:
        dns.parse(HDR1[:4] + body)
    except FormatError:
        pass


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=120), max_size=6), st.randoms())
def test_hostile_replies_to_lookup(replies, rnd) -> None:
    lk = resolv.Lookup("h.test", ResolvConf((SERVER, ip4("10.0.0.2"))), (AF_INET, AF_INET6))
    lk.start(0, rnd.randrange)
    now = 0
    for body in replies:
        out = lk.take_output()
        q = out[-1].payload if out else dns.query(0, dns.name("h.test"), dns.A).emit()
        data = q[:2] + b"\x81\x80" + q[4:6] + body[:6] + q[12 : len(q)] + body[6:] \
            if rnd.random() < 0.7 else body
        lk.input(lk.conf.nameservers[lk.si], 53, data, now, rnd.randrange,
                 tcp=rnd.random() < 0.2)
        now += rnd.randrange(3 * S)
        lk.timeout(now, rnd.randrange)
        assert lk.done or lk.deadline is not None
        if lk.done:
            assert lk.result.error in (resolv.OK, resolv.NONAME, resolv.NODATA, resolv.AGAIN,
                                       resolv.FAIL)
            assert len(lk.result.addresses) <= resolv.MAX_ADDRS
            break
