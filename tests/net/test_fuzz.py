"""Hostile input (DESIGN rule 9): at least 10,000 random and mutated frames into a running
kernel's input path.  Every frame is counted or dropped; none raises, none panics the kernel,
and the memory the stack holds for them is bounded and returns."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rumpkernel.net.wire import arp, ethernet, icmp, ipv4, udp
from rumpkernel.testing import netkit

N_FRAMES = 12_000


def _corpus(ifp_mac: bytes, peer_mac: bytes) -> list[bytes]:
    me, peer = bytes([10, 99, 0, 2]), bytes([10, 99, 0, 1])

    def eth(payload: bytes, et: int = ethernet.ETHERTYPE_IP, dst: bytes = ifp_mac) -> bytes:
        return ethernet.emit(dst, peer_mac, et, payload)

    frames = [
        eth(arp.ArpPacket(arp.OP_REQUEST, peer_mac, peer, bytes(6), me).emit(),
            ethernet.ETHERTYPE_ARP, ethernet.BROADCAST),
        eth(arp.ArpPacket(arp.OP_REPLY, peer_mac, peer, ifp_mac, me).emit(),
            ethernet.ETHERTYPE_ARP),
        eth(ipv4.Ipv4Packet(peer, me, 1, icmp.echo(icmp.ECHO, 1, 2, b"ping" * 8).emit())
            .emit()),
        eth(ipv4.Ipv4Packet(peer, me, 17, udp.emit_raw(1234, 7, b"to an open port", peer, me))
            .emit()),
        eth(ipv4.Ipv4Packet(peer, me, 17, udp.emit_raw(1234, 9, b"closed", peer, me)).emit()),
        eth(ipv4.Ipv4Packet(peer, me, 17, udp.emit_raw(1, 2, bytes(900), peer, me)[:800],
                            flags=ipv4.FLAG_MF, ident=77).emit()),
        eth(ipv4.Ipv4Packet(peer, me, 17, bytes(108), frag_offset=800, ident=77).emit()),
        eth(ipv4.Ipv4Packet(peer, bytes([10, 99, 0, 255]), 17,
                            udp.emit_raw(5, 7, b"bcast", peer, bytes([10, 99, 0, 255]))).emit(),
            dst=ethernet.BROADCAST),
        eth(ipv4.Ipv4Packet(peer, me, 1, icmp.emit(icmp.UNREACH, icmp.UNREACH_PORT, 0,
                                                   bytes(28)), options=b"\x01\x01\x01\x00")
            .emit()),
        eth(ipv4.Ipv4Packet(peer, me, 99, b"unknown protocol").emit()),
        eth(ipv4.Ipv4Packet(peer, bytes([192, 168, 1, 1]), 6, bytes(20), ttl=1).emit()),
    ]
    return frames


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    kind = rng.randrange(7)
    if kind == 0 and b:                                  # flip bits
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:                                      # truncate
        del b[rng.randrange(len(b) + 1):]
    elif kind == 2:                                      # extend
        b += rng.randbytes(rng.randint(1, 200))
    elif kind == 3 and len(b) > 24:                      # poke an IP header field
        i = 14 + rng.choice([0, 2, 3, 6, 7, 8, 9, 10])
        b[i] = rng.randrange(256)
    elif kind == 4:                                      # random garbage
        b = bytearray(rng.randbytes(rng.randint(0, 1600)))
    elif kind == 5 and len(b) > 40:                      # poke the transport header
        b[34 + rng.randrange(8)] = rng.randrange(256)
    return bytes(b)


def test_ten_thousand_hostile_frames() -> None:
    _world, (ka, kb) = netkit.sim_kernels(21, ["a", "b"])
    try:
        netkit.plug(ka, "wire0", "fz", "10.99.0.1/24")
        netkit.plug(kb, "wire0", "fz", "10.99.0.2/24")
        B = kb.socket
        ns = kb.net
        ifp = ns.interfaces["wire0"]
        peer_mac = ka.net.interfaces["wire0"].lladdr
        corpus = _corpus(ifp.lladdr, peer_mac)
        rng = random.Random(1234)

        def body():
            open_port = B.socket(B.AF_INET, B.SOCK_DGRAM)
            open_port.bind(("0.0.0.0", 7))
            open_port.setblocking(False)
            before = ifp.ipackets
            peak = 0
            for i in range(N_FRAMES):
                f = rng.choice(corpus)
                ifp.input(f if rng.random() < 0.1 else _mutate(rng, f))
                if i % 500 == 0:
                    peak = max(peak, kb.kmem.in_use)
                    try:
                        while True:
                            open_port.recv(2048)
                    except BlockingIOError:
                        pass
            counted = ifp.ipackets - before
            kb.sys.nanosleep(40)                          # reassembly and ARP timers run
            open_port.close()
            return counted, peak

        counted, peak = netkit.drive(kb, body)
        assert counted == N_FRAMES
        assert not kb.panicked and not ka.panicked
        assert peak < 8 << 20
        st = kb.socket.config.stats()
        dropped = sum(v for k, v in st["ip"].items() if k.startswith("bad") or k == "tooshort")
        assert dropped > 500 and st["ip"]["total"] > 1000
        assert st["ip"].get("delivered", 0) > 100
        by_tag = kb.statistics()["memory"]["by_tag"]
        assert by_tag.get("ipreass", 0) == 0 and by_tag.get("arphold", 0) == 0
    finally:
        ka.halt()
        kb.halt()
    assert kb.statistics()["memory"]["in_use"] == 0


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_random_frames_never_raise(fuzz_kernel, frame) -> None:
    k, ifp = fuzz_kernel
    netkit.drive(k, lambda: ifp.input(ifp.lladdr + frame))
    assert not k.panicked
