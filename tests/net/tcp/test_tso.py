"""TSO and GSO without a host (issue #12): software segmentation of super-segments
(net/wire/gso.py) checked against our own parsers, partial checksums completed, hostile bytes;
the engine's super-segments over a faulty link, their limits, and jumbo links between kernels
on the in-process wire."""

from __future__ import annotations

import errno
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rumpkernel
from rumpkernel.net.inet.tcp_config import TcpConfig
from rumpkernel.net.wire import gso, ipv4
from rumpkernel.net.wire.base import FormatError
from rumpkernel.net.wire.tcp import TcpOptions, TcpSegment, emit_for, parse_for
from rumpkernel.testing import netkit
from rumpkernel.testing.tcplink import ADDR_A, ADDR_B, BulkTransfer, LinkConfig, TcpLinkNet

SRC, DST = bytes([10, 1, 2, 3]), bytes([10, 4, 5, 6])
SRC6, DST6 = bytes(range(16)), bytes(range(100, 116))
MiB = 1 << 20


def super_segment(n: int, flags: int = 0x18 | 0x01, v6: bool = False) -> bytes:
    payload = bytes((i * 7 + 3) & 0xFF for i in range(n))
    opts = TcpOptions.data_options(123456, 654321)
    seg = TcpSegment(40000, 80, 0xFFFFF000, 77, flags, 512, 0, opts, payload)
    src, dst = (SRC6, DST6) if v6 else (SRC, DST)
    tcp = emit_for(seg, src, dst, partial=True)
    if v6:
        return bytes([0x60, 0, 0, 0]) + len(tcp).to_bytes(2, "big") + bytes([6, 64]) + \
            src + dst + tcp
    return ipv4.header(src, dst, 6, len(tcp), 64, 0, 900, ipv4.FLAG_DF) + tcp


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("n", [0, 1, 1448, 1449, 10 * 1448, 45 * 1448 + 17])
def test_software_gso_cuts_valid_mss_segments(n: int, v6: bool) -> None:
    pkt = super_segment(n, v6=v6)
    mtu = 1500
    size = gso.gso_size_for(pkt, mtu)
    assert size == 1500 - (40 if v6 else 20) - 32
    pieces = gso.tcp_segment(pkt, size)
    assert len(pieces) == max(1, -(-n // size))
    data = b""
    seq = 0xFFFFF000
    for i, p in enumerate(pieces):
        last = i == len(pieces) - 1
        if v6:
            src, dst, body = SRC6, DST6, p[40:]
            assert int.from_bytes(p[4:6], "big") == len(body)
        else:
            ip = ipv4.parse(p)                       # header checksum verified
            assert ip.ident == (900 + i) & 0xFFFF and ip.flags == ipv4.FLAG_DF
            src, dst, body = SRC, DST, ip.payload
        assert len(p) <= mtu
        seg = parse_for(body, src, dst)              # complete TCP checksum
        assert seg.seq == seq & 0xFFFFFFFF
        assert seg.flags == (0x19 if last else 0x10)  # FIN and PSH only at the end
        assert seg.options.ts_val == 123456
        seq += len(seg.payload)
        data += seg.payload
    assert data == bytes((i * 7 + 3) & 0xFF for i in range(n))


def test_partial_checksum_completed_like_a_device() -> None:
    opts = TcpOptions.data_options(1, 2)
    seg = TcpSegment(1, 2, 3, 4, 0x18, 5, 0, opts, b"hello, device" * 50)
    full = emit_for(seg, SRC, DST)
    part = emit_for(seg, SRC, DST, partial=True)
    assert part != full and part[:16] == full[:16] and part[18:] == full[18:]
    frame = b"\0" * 14 + ipv4.header(SRC, DST, 6, len(part)) + part
    done = gso.complete_checksum(frame, 34, 16)
    assert done[34:] == full
    with pytest.raises(FormatError):
        gso.complete_checksum(frame, len(frame) - 10, 16)


def test_vnet_header_round_trip() -> None:
    raw = gso.vnet_emit(gso.F_NEEDS_CSUM, gso.GSO_TCPV4, 66, 1448, 34, 16)
    assert len(raw) == gso.VNET_HDR_LEN == 10
    assert gso.vnet_parse(raw) == (1, 1, 66, 1448, 34, 16)
    with pytest.raises(FormatError):
        gso.vnet_parse(raw[:9])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 2000))
def test_hostile_bytes_give_format_errors_only(data: bytes, mss: int) -> None:
    try:
        for p in gso.tcp_segment(data, mss):
            assert len(p) >= 40
    except FormatError:
        pass
    try:
        gso.gso_size_for(data, 1500)
    except FormatError:
        pass


# ---- the engine ----------------------------------------------------------------------------
def tso_pair(seed: int, loss: float, tso: bool = True, peer_mtu: int = 1500):
    link = LinkConfig(delay=0.002, loss=loss, reorder=0.01 if loss else 0.0, rate=125e6,
                      queue_bytes=1 << 20)
    net = TcpLinkNet(seed, link, TcpConfig(tso=tso), TcpConfig(mtu=peer_mtu))
    net.a.route_tso = lambda laddr, raddr: (1500, 65535)
    return net, net.b.listen(ADDR_B, 80, 16)


def run_transfer(net, lst, nbytes: int, seed: int):
    sizes: list[int] = []
    orig = net.a._conn_sink

    def sink(conn, seg):
        sizes.append(len(seg.payload))
        orig(conn, seg)

    net.a._conn_sink = sink
    c = net.a.connect(ADDR_A, 40000, ADDR_B, 80, net.now)
    c.sink = sink
    assert net.run(cond=lambda: lst.readable, until=net.now + 60)
    s = lst.accept()
    x = BulkTransfer(net, c, s, nbytes, seed=seed, close=True)
    assert net.run(cond=lambda: x.done or x.error, until=net.now + 600)
    assert x.error is None and x.exact
    return c, sizes


@pytest.mark.parametrize("loss", [0.0, 0.01])
def test_engine_super_segments_over_a_faulty_link(loss: float) -> None:
    net, lst = tso_pair(11, loss)
    c, sizes = run_transfer(net, lst, 8 * MiB, seed=3)
    mss = c.snd_mss
    assert c.tso_max == 65535 and mss == 1448
    big = [n for n in sizes if n > mss]
    assert big and max(sizes) <= 65535 - 120
    # cut into MSS pieces on the wire, hardly more segments than MSS-sized sending makes
    # (a short tail only where Nagle lets the end of the queue go)
    wire = sum(-(-n // mss) for n in sizes)
    assert wire < 1.1 * (8 * MiB // mss) + 10
    assert len(sizes) < 8 * MiB // mss // 4
    if loss:
        assert net.a.stats.retrans_segs > 0


def test_engine_without_tso_sends_mss_segments() -> None:
    for kw in (dict(tso=False), dict(peer_mtu=1400)):       # turned off; the peer's MSS is less
        net, lst = tso_pair(12, 0.0, **kw)
        c, sizes = run_transfer(net, lst, 1 * MiB, seed=4)
        assert max(sizes) <= c.snd_mss
        assert len(sizes) >= 1 * MiB // c.snd_mss


# ---- jumbo links between kernels -----------------------------------------------------------
def test_jumbo_wire_carries_64k_segments_between_kernels() -> None:
    a = rumpkernel.boot(hostname="jumbo-a")
    b = rumpkernel.boot(hostname="jumbo-b")
    try:
        hub = f"jumbo-{id(a)}"
        for k, addr in ((a, "10.99.70.1/24"), (b, "10.99.70.2/24")):
            netkit.plug(k, "wire0", hub, addr)
            k.socket.config.set_mtu("wire0", 65535)
        lst = b.socket.create_server(("10.99.70.2", 9100))
        got = []

        def sink() -> None:
            c, _ = lst.accept()
            with c:
                while d := c.recv(1 << 20):
                    got.append(d)

        t = threading.Thread(target=sink)
        t.start()
        blob = bytes(range(256)) * 4096 * 8
        with a.socket.create_connection(("10.99.70.2", 9100)) as c:
            c.sendall(blob)
        t.join(60)
        lst.close()
        assert b"".join(got) == blob
        conn = next(iter(a.net.inet.tcp.stack.connections.values()))
        assert conn.snd_mss > 60000
        assert a.net.inet.tcp.stack.stats.segs_out < len(blob) // 30000
    finally:
        a.halt()
        b.halt()


def test_mtu_limits_per_driver() -> None:
    k = rumpkernel.boot(hostname="jumbo-mtu")
    try:
        cfg = k.socket.config
        cfg.ifconfig("wire0", create=True)
        cfg.ifconfig("shmif0", create=True)
        cfg.ifconfig("virt0", create=True)
        for name, top in (("wire0", 65535), ("shmif0", 65521), ("virt0", 9000)):
            cfg.set_mtu(name, top)
            assert cfg.mtu(name) == top
            with pytest.raises(OSError) as ei:
                cfg.set_mtu(name, top + 1)
            assert ei.value.errno == errno.EINVAL
    finally:
        k.halt()


def test_forwarded_gro_super_frame_is_cut_for_the_next_link() -> None:
    """A router kernel given a TCP datagram larger than the link it came on (what a TAP hands
    up after GRO) cuts it into valid MSS segments for the next link instead of answering
    "fragmentation needed"."""
    from rumpkernel.net.inet.ip import ip_input

    r = rumpkernel.boot(hostname="gro-router")
    k2 = rumpkernel.boot(hostname="gro-far")
    try:
        tag = id(r)
        netkit.plug(r, "wire0", f"gro-a-{tag}", "10.99.71.1/24")
        netkit.plug(r, "wire1", f"gro-b-{tag}", "10.99.72.1/24")
        netkit.plug(k2, "wire0", f"gro-b-{tag}", "10.99.72.2/24")
        r.net.inet.forwarding = 1
        netkit.ping(r, "10.99.72.2")                       # the next hop is resolved
        out = r.net.interfaces["wire1"]
        frames: list[bytes] = []
        send = out.driver.transmit
        out.driver.transmit = lambda f: (frames.append(bytes(f)), send(f))[1]
        src, dst = bytes([10, 99, 71, 9]), bytes([10, 99, 72, 2])
        payload = bytes((i * 13) & 0xFF for i in range(20 * 1448))
        seg = TcpSegment(40000, 80, 1000, 1, 0x18, 512, 0, TcpOptions.data_options(5, 6),
                         payload)
        tcp = emit_for(seg, src, dst)                        # complete checksum (DATA_VALID)
        pkt = ipv4.header(src, dst, 6, len(tcp), 64, 0, 7, ipv4.FLAG_DF) + tcp
        with r.net.lock:
            ip_input(r.net.inet, r.net.interfaces["wire0"], memoryview(pkt))
        tcp_frames = [f for f in frames if f[12:14] == b"\x08\x00" and f[23] == 6]
        assert len(tcp_frames) == 20
        got = b""
        for f in tcp_frames:
            ip = ipv4.parse(f[14:])
            assert len(f) <= 1514 and ip.ttl == 63
            got += parse_for(ip.payload, src, dst).payload
        assert got == payload
    finally:
        r.halt()
        k2.halt()
