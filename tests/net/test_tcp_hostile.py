"""Hostile peers against a kernel's TCP, with hand-built frames on the in-process wire: a SYN
flood from spoofed addresses (bounded memory, SYN cookies, a real client still connects), blind
in-window RST/SYN/data injection into a live transfer (RFC 5961: challenge ACKs, nothing
accepted), and malformed TCP options (hypothesis): counted and dropped, never an exception."""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.net.wire import ethernet, ipv4
from rumpkernel.net.wire.checksum import internet_checksum, pseudo_header_sum_v4
from rumpkernel.net.wire.tcp import (
    TcpFormatError,
    TcpOptions,
    TcpSegment,
    Timestamps,
    emit_for,
    parse_for,
)
from rumpkernel.testing import netkit

A_IP, B_IP = "10.0.0.1", "10.0.0.2"
SYN, RST, ACK, PSH = 0x02, 0x04, 0x10, 0x08
MASK = 0xFFFFFFFF


def ip4(text: str) -> bytes:
    return bytes(int(p) for p in text.split("."))


def frame(dst_mac: bytes, src: bytes, dst: bytes, seg: TcpSegment, ident: int = 1) -> bytes:
    raw = emit_for(seg, src, dst)
    pkt = ipv4.header(src, dst, 6, len(raw), 64, 0, ident & 0xFFFF, ipv4.FLAG_DF) + raw
    return ethernet.emit(dst_mac, b"\x02\xba\xdb\xad\x00\x01", ethernet.ETHERTYPE_IP, pkt)


def pair(seed: int, **faults: Any) -> tuple[Any, Any, Any]:
    world, (a, b) = netkit.sim_kernels(seed, ["a", "b"])
    hub = f"hostile-{seed}"
    netkit.plug(a, "wire0", hub, f"{A_IP}/24")
    netkit.plug(b, "wire0", hub, f"{B_IP}/24")
    netkit.faults(a, hub, delay_ns=500_000, **faults)
    return world, a, b


def halt(*ks: Any) -> None:
    for k in ks:
        k.halt()
        assert k.panicked is None


def run_parallel(world: Any, *fns: Any) -> list[Any]:
    out: list[Any] = [None] * len(fns)
    errors: list[BaseException] = []

    def wrap(i: int, fn: Any) -> Any:
        def body() -> None:
            try:
                out[i] = fn()
            except BaseException as e:          # re-raised below
                errors.append(e)
        return body

    ts = [world.thread_create(wrap(i, f), f"h{i}") for i, f in enumerate(fns)]
    for t in ts:
        world.thread_join(t)
    if errors:
        raise errors[0]
    return out


@pytest.mark.parametrize("nsyn", [
    3000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_syn_flood_costs_bounded_memory_and_a_real_client_connects(nsyn: int) -> None:
    world, a, b = pair(51)
    victim = a.net.interfaces["wire0"]
    Sa, Sb = a.socket, b.socket
    rng = random.Random(nsyn)
    a.socket.config.route_add("default", gateway=B_IP)      # replies to spoofed sources go there
    tcp = a.net.inet.tcp

    def main() -> dict[str, Any]:
        srv = Sa.socket(Sa.AF_INET, Sa.SOCK_STREAM)
        srv.bind((A_IP, 80))
        srv.listen(16)
        lst = tcp.stack.listeners[(ip4(A_IP), 80)]
        base_kmem = a.kmem.in_use
        peak = {"kmem": 0, "synq": 0}
        tracemalloc.start()
        before = tracemalloc.take_snapshot()

        def flood() -> None:
            for i in range(nsyn):
                src = bytes([198, 18 + (i >> 16 & 1), rng.randrange(256), rng.randrange(1, 255)])
                opts = TcpOptions.build(mss=1460, sack_permitted=True,
                                        ts=(rng.getrandbits(32), 0), wscale=7)
                seg = TcpSegment(rng.randrange(1024, 65536), 80, rng.getrandbits(32), 0, SYN,
                                 64240, 0, opts)
                victim.input(frame(victim.lladdr, src, ip4(A_IP), seg, i))
                if i % 64 == 0:
                    peak["kmem"] = max(peak["kmem"], a.kmem.in_use - base_kmem)
                    peak["synq"] = max(peak["synq"], len(lst.syn_queue))
                    a.sys.nanosleep(0.0005)          # let the wire and the timers run

        def client() -> bytes:
            a.sys.nanosleep(0.1)                     # in the middle of the flood
            with Sb.create_connection((A_IP, 80), timeout=30) as c:
                c.sendall(b"legitimate")
                c.shutdown(Sb.SHUT_WR)
                return c.recv(100)

        def server() -> None:
            s, _ = srv.accept()
            with s:
                assert s.recv(100) == b"legitimate"
                s.sendall(b"welcome")

        got = run_parallel(world, flood, client, server)[1]
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        srv.close()
        return {"got": got, "peak": peak, "grown": grown,
                "stats": tcp.stack.stats.as_dict(), "conns": len(tcp.stack.connections)}

    try:
        out = netkit.drive(a, main)
        assert out["got"] == b"welcome"
        assert out["peak"]["synq"] <= tcp.stack.config.max_syn_backlog
        assert out["peak"]["kmem"] < 1 << 20             # no socket or buffer per SYN
        assert out["grown"] < 4 << 20                     # nor Python objects per SYN
        st = out["stats"]
        assert st["syncookies_sent"] >= nsyn - 2 * tcp.stack.config.max_syn_backlog
        assert out["conns"] <= 2
    finally:
        halt(a, b)


def test_blind_in_window_injection_fails() -> None:
    """RFC 5961: an attacker who knows the 4-tuple and guesses a sequence number inside the
    window cannot reset the connection (RST or SYN: challenge ACK) nor inject data (an ACK
    number outside what was sent is dropped); the transfer finishes byte for byte."""
    world, a, b = pair(52, bandwidth_bps=20_000_000)     # the transfer takes ~1 s
    Sa, Sb = a.socket, b.socket
    data = random.Random(5).randbytes(2 << 20)
    target = b.net.interfaces["wire0"]
    rng = random.Random(52)
    kinds = {"rst": 0, "syn": 0, "data": 0}

    def main() -> str:
        srv = Sb.socket(Sb.AF_INET, Sb.SOCK_STREAM)
        srv.bind((B_IP, 443))
        srv.listen(1)
        c = Sa.create_connection((B_IP, 443))
        s, _ = srv.accept()
        lport = c.getsockname()[1]
        victim = b.net.inet.tcp.stack.connections[(ip4(B_IP), 443, ip4(A_IP), lport)]

        def attacker() -> None:
            for i in range(600):
                a.sys.nanosleep(0.002)
                if victim.state.name != "ESTABLISHED":
                    return
                wnd = max(victim.rcv_adv - victim.rcv_nxt, 2)
                seq = (victim.rcv_nxt + rng.randrange(1, wnd)) & MASK   # in window, not exact
                kind = ("rst", "syn", "data")[i % 3]
                kinds[kind] += 1
                ts = Timestamps(victim.ts_recent + 1, 0) if victim.ts_ok else None
                opts = TcpOptions([ts]) if ts else TcpOptions(())
                if kind == "rst":
                    seg = TcpSegment(lport, 443, seq, 0, RST, 0, 0, TcpOptions(()))
                elif kind == "syn":
                    seg = TcpSegment(lport, 443, seq, 0, SYN, 64240, 0, opts)
                else:
                    bad_ack = (victim.snd_max + (1 << 30)) & MASK
                    seg = TcpSegment(lport, 443, seq, bad_ack, ACK | PSH, 64240, 0, opts,
                                     b"INJECTED" * 64)
                target.input(frame(target.lladdr, ip4(A_IP), ip4(B_IP), seg, i))

        def sender() -> None:
            c.sendall(data)
            c.shutdown(Sa.SHUT_WR)

        def receiver() -> str:
            h = hashlib.sha256()
            while d := s.recv(1 << 20):
                h.update(d)
            return h.hexdigest()

        digest = run_parallel(world, attacker, sender, receiver)[2]
        c.close()
        s.close()
        srv.close()
        return digest

    try:
        assert netkit.drive(b, main) == hashlib.sha256(data).hexdigest()
        st = b.net.inet.tcp.stack.stats
        assert kinds["rst"] > 10 and kinds["syn"] > 10 and kinds["data"] > 10
        assert st.in_rsts == 0 and st.estab_resets == 0
        assert st.drops.get("rst_in_window", 0) + st.drops.get("rst_out_of_window", 0) \
            == kinds["rst"]
        assert st.drops.get("syn_in_window", 0) >= kinds["syn"] - 2
        assert st.drops.get("ack_unsent_data", 0) >= kinds["data"] - 2
        assert st.challenge_acks > 0
    finally:
        halt(a, b)


@pytest.fixture(scope="module")
def listening_kernel() -> Any:
    _world, a, b = pair(53)
    S = a.socket

    def setup() -> Any:
        srv = S.socket(S.AF_INET, S.SOCK_STREAM)
        srv.bind((A_IP, 80))
        srv.listen(4)
        return srv

    srv = netkit.drive(a, setup)
    yield a, a.net.interfaces["wire0"]
    netkit.drive(a, srv.close)
    halt(a, b)


@settings(max_examples=200, deadline=None)
@given(opts=st.binary(min_size=0, max_size=40), flags=st.sampled_from([SYN, ACK, SYN | ACK]),
       dport=st.sampled_from([80, 81]))
def test_malformed_options_are_counted_and_dropped(listening_kernel, opts: bytes, flags: int,
                                                    dport: int) -> None:
    k, ifp = listening_kernel
    opts = opts + bytes(-len(opts) % 4)                 # the data offset counts 32-bit words
    src, dst = ip4(B_IP), ip4(A_IP)
    head = bytearray(20)
    head[0:2], head[2:4] = (40000).to_bytes(2, "big"), dport.to_bytes(2, "big")
    head[4:8] = (12345).to_bytes(4, "big")
    head[12] = (20 + len(opts)) // 4 << 4
    head[13] = flags
    head[14:16] = (8192).to_bytes(2, "big")
    raw = bytearray(bytes(head) + opts)
    csum = internet_checksum(bytes(raw), pseudo_header_sum_v4(src, dst, 6, len(raw)))
    raw[16:18] = csum.to_bytes(2, "big")
    try:
        parse_for(bytes(raw), src, dst)
        malformed = False
    except TcpFormatError as e:
        malformed = True
        assert e.reason == "option"
    stats = k.net.inet.tcp.stack.stats
    before = (stats.bad_segments, stats.drops.get("bad_option", 0))
    pkt = ipv4.header(src, dst, 6, len(raw), 64, 0, 9, 0) + bytes(raw)
    netkit.drive(k, lambda: ifp.input(ethernet.emit(ifp.lladdr, b"\x02" * 6,
                                                    ethernet.ETHERTYPE_IP, pkt)))
    assert not k.panicked
    after = (stats.bad_segments, stats.drops.get("bad_option", 0))
    if malformed:
        assert after == (before[0] + 1, before[1] + 1)
    else:
        assert after == before
