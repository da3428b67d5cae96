"""The sans-IO engine through its Python interface: ISNs and cookies, the SYN flood, memory
accounting, buffer autotuning, TIME_WAIT reuse, readiness events, hostile segments, and the
state table."""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.kmem import KMem
from rumpkernel.net.inet import tcp_cc
from rumpkernel.net.inet.tcp_buffers import KMemAccount, ReceiveBuffer
from rumpkernel.net.inet.tcp_config import TcpConfig
from rumpkernel.net.inet.tcp_engine import (
    EV_CONNECTED,
    EV_ERROR,
    EV_HANGUP,
    EV_RDHUP,
    EV_READABLE,
    EV_WRITABLE,
    SHUT_WR,
    unwrap,
)
from rumpkernel.net.inet.tcp_fsm import TRANSITIONS, TcpEvent, TcpFsmError, TcpState, next_state
from rumpkernel.net.inet.tcp_isn import IsnGenerator, decode_ts_options, encode_ts_options
from rumpkernel.net.inet.tcp_sack import Scoreboard
from rumpkernel.net.inet.tcp_stack import TcpStack
from rumpkernel.net.wire.tcp import TcpFlags, TcpOptions, TcpSegment, emit_for
from rumpkernel.testing.tcplink import ADDR_A, ADDR_B, BulkTransfer, LinkConfig, TcpLinkNet

KEY = bytes(range(32))


def connected(net: TcpLinkNet, port: int = 40000, listener=None):
    lst = listener or net.b.listen(ADDR_B, 80, 16)
    c = net.a.connect(ADDR_A, port, ADDR_B, 80, net.now)
    assert net.run(cond=lambda: lst.readable, until=net.now + 60)
    return c, lst.accept(), lst


# --- sequence numbers, ISNs, cookies ----------------------------------------------------------

def test_unwrap_picks_the_nearest_absolute_number() -> None:
    assert unwrap(5, 2**32 - 10) == 2**32 + 5
    assert unwrap(2**32 - 10, 2**32 + 5) == 2**32 - 10
    assert unwrap(100, 50) == 100 and unwrap(10, 50) == 10


def test_isn_rfc6528() -> None:
    g = IsnGenerator(KEY)
    a = g.isn(ADDR_A, 1, ADDR_B, 80, 10.0)
    assert g.isn(ADDR_A, 1, ADDR_B, 80, 11.0) == (a + 250_000) & 0xFFFFFFFF  # 4 us clock
    others = {g.isn(ADDR_A, p, ADDR_B, 80, 10.0) for p in range(2, 50)}
    assert a not in others and len(others) == 48  # keyed hash of the 4-tuple
    assert IsnGenerator(bytes(32)).isn(ADDR_A, 1, ADDR_B, 80, 10.0) != a  # depends on the secret
    with pytest.raises(ValueError):
        IsnGenerator(b"short")


def test_syn_cookies() -> None:
    g = IsnGenerator(KEY)
    cookie, mss = g.cookie(ADDR_B, 80, ADDR_A, 4000, 12345, 1400, now=100.0)
    assert mss == 1400
    assert g.check_cookie(ADDR_B, 80, ADDR_A, 4000, 12345, cookie, now=150.0) == 1400
    assert g.check_cookie(ADDR_B, 80, ADDR_A, 4000, 12345, cookie, now=100 + 64 * 3) is None
    assert g.check_cookie(ADDR_B, 80, ADDR_A, 4001, 12345, cookie, now=100.0) is None
    assert g.check_cookie(ADDR_B, 80, ADDR_A, 4000, 12346, cookie, now=100.0) is None
    assert g.check_cookie(ADDR_B, 80, ADDR_A, 4000, 12345, cookie ^ 1, now=100.0) is None
    for ws, sack in ((None, False), (0, True), (7, True), (14, False)):
        v = encode_ts_options(123456789, ws, sack)
        assert decode_ts_options(v) == (ws, sack)
        assert ((123456789 - v) & 0xFFFFFFFF) < 64  # never ahead of the clock


class NearWrapIsn(IsnGenerator):
    __slots__ = ()

    def isn(self, *args) -> int:
        return 2**32 - 30_000


def test_our_sequence_numbers_wrap_during_a_lossy_transfer() -> None:
    net = TcpLinkNet(3, LinkConfig(loss=0.03, reorder=0.02))
    for stack in (net.a, net.b):
        stack.isn = NearWrapIsn(KEY)
    c, s, _ = connected(net)
    x = BulkTransfer(net, c, s, 200_000, seed=1)
    y = BulkTransfer(net, s, c, 100_000, seed=2)
    assert net.run(cond=lambda: x.done and y.done, until=600)
    assert x.exact and y.exact and c.snd_nxt > 2**32 and s.snd_nxt > 2**32


# --- SYN flood and the listener ----------------------------------------------------------------

@pytest.mark.parametrize("nsyn", [5000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_syn_flood_costs_bounded_memory_and_a_real_client_still_connects(nsyn: int) -> None:
    cfg = TcpConfig(max_syn_backlog=64)
    net = TcpLinkNet(7, LinkConfig(), config_b=cfg)
    lst = net.b.listen(ADDR_B, 80, 8)
    rng = random.Random(1)
    syn_opts = TcpOptions.build(mss=1460, sack_permitted=True, ts=(1, 0), wscale=7)

    def flood(n: int) -> None:
        for _ in range(n):
            src = rng.randbytes(4)
            seg = TcpSegment(rng.randrange(1024, 65536), 80, rng.getrandbits(32), 0,
                             TcpFlags.SYN, 65535, 0, syn_opts)
            net.b.input_bytes(src, ADDR_B, emit_for(seg, src, ADDR_B), net.now)
            if len(net.b.out) > 500:
                net.b.take_output()  # the SYN-ACKs go to addresses nobody answers from
        net.b.take_output()

    flood(1000)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    flood(nsyn)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(lst.syn_queue) == 64
    assert grown < 10_000, grown  # no per-SYN state: thousands of SYNs leave a few bytes
    st = net.b.stats
    assert st.syncookies_sent >= 1000 + nsyn - 64
    c = net.a.connect(ADDR_A, 40000, ADDR_B, 80, net.now)
    assert net.run(cond=lambda: lst.readable, until=net.now + 10)
    srv = lst.accept()
    assert st.syncookies_recv == 1 and c.connected and srv.connected
    assert (srv.snd_wscale, srv.sack_ok, srv.ts_ok) == (7, True, True)  # kept in the cookie
    x = BulkTransfer(net, c, srv, 100_000)
    assert net.run(cond=lambda: x.done, until=net.now + 30) and x.exact


def test_accept_queue_overflow_drops_the_ack_until_accept() -> None:
    net = TcpLinkNet(2, LinkConfig())
    lst = net.b.listen(ADDR_B, 80, 1)
    c1 = net.a.connect(ADDR_A, 40001, ADDR_B, 80, net.now)
    c2 = net.a.connect(ADDR_A, 40002, ADDR_B, 80, net.now)
    net.run(until=0.5)
    assert len(lst.accept_queue) == 1 and net.b.stats.listen_overflows >= 1
    assert c1.connected and c2.connected  # the client thinks so; its ACK was dropped
    s1 = lst.accept()
    assert net.run(cond=lambda: lst.readable, until=10)  # SYN-ACK retransmission re-triggers
    s2 = lst.accept()
    assert {s1.rport, s2.rport} == {40001, 40002}


def test_listener_receive_buffer_sets_the_synack_window() -> None:
    """SO_RCVBUF on a listener: the SYN-ACK offers that window (not rmem_default) and the
    accepted connection keeps the size (a peer could overrun it before)."""
    net = TcpLinkNet(2, LinkConfig())
    lst = net.b.listen(ADDR_B, 80, 4)
    lst.rcvbuf = 4096
    seen = []
    real = lst.sink
    lst.sink = lambda la, ra, seg: (seen.append(seg), real(la, ra, seg))
    c = net.a.connect(ADDR_A, 40000, ADDR_B, 80, net.now)
    assert net.run(cond=lambda: lst.readable, until=5)
    synack = next(s for s in seen if s.flags == TcpFlags.SYN | TcpFlags.ACK)
    assert synack.window == 4096 and synack.options.wscale == 0
    s = lst.accept()
    assert s.rcvbuf.limit == 4096 and s.rcvbuf_locked
    c.send(b"x" * 20000, net.now)
    net.run(until=net.now + 0.5)
    assert s.rcvbuf.readable == 4096 and c.snd_una - c.iss - 1 == 4096


def test_listener_close_resets_unaccepted_connections() -> None:
    net = TcpLinkNet(2, LinkConfig())
    c, _, lst = connected(net)
    c2 = net.a.connect(ADDR_A, 40001, ADDR_B, 80, net.now)
    net.run(until=net.now + 0.5)
    net.b.unlisten(lst, net.now)
    net.run(until=net.now + 0.5)
    assert c2.state == TcpState.CLOSED and c2.take_error() == Errno.ECONNRESET
    assert c.state == TcpState.ESTABLISHED  # accepted before: unaffected
    assert ("no_socket" in net.b.stats.drops) is False
    c3 = net.a.connect(ADDR_A, 40002, ADDR_B, 80, net.now)
    net.run(until=net.now + 0.5)
    assert c3.take_error() == Errno.ECONNREFUSED


# --- memory and buffers ------------------------------------------------------------------------

def test_buffers_charge_the_kernel_memory_limit_and_give_it_all_back() -> None:
    kmem = KMem(limit=150_000)
    net = TcpLinkNet(4, LinkConfig(delay=0.002))
    net.b.account_factory = lambda: KMemAccount(kmem, "tcp")
    net.a.account_factory = lambda: KMemAccount(kmem, "tcp")
    c, s, _ = connected(net)
    reader = {"on": False}
    got = bytearray()

    def app() -> None:
        if reader["on"]:
            while True:
                try:
                    d = s.recv(65536, net.now)
                except KernelError:
                    break
                if not d:
                    break
                got.extend(d)

    net.apps.append(app)
    data = bytes(random.Random(5).randbytes(400_000))
    sent = 0

    def writer() -> None:
        nonlocal sent
        while sent < len(data):
            try:
                sent += c.send(data[sent:sent + 65536], net.now)
            except KernelError:
                break

    net.apps.append(writer)
    net.run(until=net.now + 2)  # the reader sleeps: buffers fill up to the memory limit
    assert 0 < kmem.in_use <= 150_000
    assert kmem.peak <= 150_000
    reader["on"] = True
    assert net.run(cond=lambda: len(got) == len(data), until=net.now + 120)
    assert bytes(got) == data
    c.close(net.now)
    s.close(net.now)
    net.run(until=net.now + 1)
    assert kmem.in_use == 0, kmem.stats()


def test_reassembly_queue_keeps_each_byte_once() -> None:
    buf = ReceiveBuffer(10_000)
    nxt = 100
    nxt = buf.insert(300, b"c" * 100, nxt)
    nxt = buf.insert(150, b"b" * 200, nxt)   # overlaps the queued range
    nxt = buf.insert(500, b"e" * 50, nxt)
    assert nxt == 100 and buf.ooo_bytes == 300 and buf.sack_blocks(4) == [(500, 550), (150, 400)]
    nxt = buf.insert(100, b"a" * 60, nxt)
    assert nxt == 400 and buf.read(1000) == b"a" * 50 + b"b" * 150 + b"c" * 100
    assert buf.ooo_bytes == 50 and buf.used == 50


def test_receive_buffer_autotunes_to_the_bdp_up_to_the_limit() -> None:
    cfg = TcpConfig(rmem_default=64 * 1024, rmem_max=1 << 20)
    net = TcpLinkNet(6, LinkConfig(delay=0.025, rate=20e6, queue_bytes=1 << 20), config_b=cfg)
    c, s, _ = connected(net)
    x = BulkTransfer(net, c, s, 4 << 20)
    assert net.run(cond=lambda: x.done, until=60) and x.exact
    assert 64 * 1024 < s.rcvbuf.limit <= 1 << 20
    assert net.b.stats.rcvbuf_grow > 0 and net.a.stats.sndbuf_grow > 0
    # SO_RCVBUF fixes the size
    net2 = TcpLinkNet(6, LinkConfig(delay=0.025, rate=20e6, queue_bytes=1 << 20), config_b=cfg)
    c2, s2, _ = connected(net2)
    s2.set_rcvbuf(64 * 1024)
    y = BulkTransfer(net2, c2, s2, 1 << 20)
    assert net2.run(cond=lambda: y.done, until=60) and y.exact and s2.rcvbuf.limit == 64 * 1024


# --- connections -------------------------------------------------------------------------------

def test_events_follow_the_connection() -> None:
    net = TcpLinkNet(8, LinkConfig())
    lst = net.b.listen(ADDR_B, 80, 4)
    c = net.a.connect(ADDR_A, 40000, ADDR_B, 80, net.now)
    assert c.events == 0
    net.run(cond=lambda: lst.readable, until=5)
    s = lst.accept()
    assert c.events & (EV_CONNECTED | EV_WRITABLE) == EV_CONNECTED | EV_WRITABLE
    assert not c.events & EV_READABLE
    s.send(b"x", net.now)
    net.run(until=net.now + 0.1)
    assert c.events & EV_READABLE and c.recv(10, net.now) == b"x"
    s.shutdown(SHUT_WR, net.now)
    net.run(until=net.now + 0.1)
    assert c.events & (EV_READABLE | EV_RDHUP) == EV_READABLE | EV_RDHUP
    assert not c.events & EV_HANGUP and c.recv(10, net.now) == b""
    s.abort(net.now)
    net.run(until=net.now + 0.1)
    assert c.events & EV_ERROR and c.events & EV_HANGUP
    with pytest.raises(KernelError) as e:
        c.send(b"y", net.now)
    assert e.value.errno == Errno.ECONNRESET
    with pytest.raises(KernelError) as e:
        c.send(b"y", net.now)
    assert e.value.errno == Errno.EPIPE


def test_connect_reuses_a_time_wait_tuple_with_a_later_isn() -> None:
    net = TcpLinkNet(9, LinkConfig())
    c, s, lst = connected(net)
    c.close(net.now)
    net.run(until=net.now + 0.1)
    s.close(net.now)
    net.run(until=net.now + 0.1)
    assert c.state == TcpState.TIME_WAIT
    old_end = c.snd_max
    c2, s2, _ = connected(net, listener=lst)
    assert c2 is not c and net.a.stats.time_wait_reuse == 1
    assert ((c2.iss - old_end) & 0xFFFFFFFF) < 2**31
    assert c2.connected and s2.connected


def test_connect_refuses_a_busy_tuple() -> None:
    net = TcpLinkNet(9, LinkConfig())
    connected(net)
    with pytest.raises(KernelError) as e:
        net.a.connect(ADDR_A, 40000, ADDR_B, 80, net.now)
    assert e.value.errno == Errno.EADDRINUSE


def test_congestion_control_registry() -> None:
    assert {"cubic", "newreno"} <= set(tcp_cc.available())
    with pytest.raises(KeyError):
        tcp_cc.create("vegas", 1000)
    cubic = tcp_cc.create("cubic", 1000)
    cubic.ssthresh = 20_000
    cubic.cwnd = 20_000
    for i in range(200):
        cubic.on_ack(1000, i * 0.01, 0.05)
    grown = cubic.cwnd
    assert grown > 20_000
    assert cubic.on_congestion(2.0, grown) == int(grown * 0.7)
    reno = tcp_cc.create("newreno", 1000)
    reno.ssthresh = reno.cwnd = 10_000
    for _ in range(10):
        reno.on_ack(1000, 0.0, None)
    assert reno.cwnd == 11_000  # one SMSS per window of ACKs


def test_scoreboard_pipe_and_loss_boundary() -> None:
    b = Scoreboard()
    assert b.update([(2000, 3000), (4000, 6000), (50, 100)], snd_una=1000, snd_max=9000) == 3000
    assert b.blocks == [[2000, 3000], [4000, 6000]]
    assert b.lost_boundary(1000, 3) == 2000  # 3 segments SACKed above 1000..1999
    assert b.unsacked_between(1000, 7000) == 3000
    assert b.pipe(1000, 9000, 1000, 1000, 3) == 9000 - 1000 - 3000 - 1000
    b.advance(2500)
    assert b.blocks == [[2500, 3000], [4000, 6000]] and b.sacked == 2500
    assert b.skip_sacked(2600) == 3000 and b.next_block_start(3000) == 4000


def test_transition_table_rejects_illegal_moves() -> None:
    states = {s for s, _ in TRANSITIONS} | set(TRANSITIONS.values())
    assert states == set(TcpState)
    with pytest.raises(TcpFsmError):
        next_state(TcpState.LISTEN, TcpEvent.RCV_FIN)
    assert next_state(TcpState.FIN_WAIT_2, TcpEvent.RCV_FIN) == TcpState.TIME_WAIT


# --- hostile segments --------------------------------------------------------------------------

flags = st.integers(0, 0x3F)
u32 = st.integers(0, 2**32 - 1)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(flags, st.integers(-70_000, 70_000), st.integers(-70_000, 70_000),
                          st.integers(0, 65535), st.integers(0, 3000), st.booleans(),
                          st.lists(st.tuples(u32, u32), max_size=3)), max_size=12))
def test_random_segments_never_break_a_connection_object(segs) -> None:
    net = TcpLinkNet(11, LinkConfig(delay=0.001))
    c, _s, _ = connected(net)
    for f, dseq, dack, win, n, ts, sack in segs:
        opts = TcpOptions.data_options(
            (c.ts_recent + (dseq & 0xFF) - 100) & 0xFFFFFFFF if ts else None, 0,
            tuple(sack))
        seg = TcpSegment(80, 40000, (c.rcv_nxt + dseq) & 0xFFFFFFFF,
                         (c.snd_una + dack) & 0xFFFFFFFF, f, win, 0, opts, bytes(n))
        net.a.input(ADDR_B, ADDR_A, seg, net.now)
        net.now += 0.01
        net.a.timeout(net.now)
        net.a.take_output()
    assert c.state in TcpState
    c.events  # noqa: B018 -- computable in any state
    c.info()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_are_counted_and_dropped(raw: bytes) -> None:
    stack = TcpStack(KEY)
    stack.listen(ADDR_B, 80, 4)
    stack.input_bytes(ADDR_A, ADDR_B, raw, 1.0)
    stats = stack.stats
    assert stats.checksum_errors + stats.bad_segments + stats.segs_in >= 1
