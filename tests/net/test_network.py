"""Kernels wired together in one process on the simulated host: ping, UDP, ARP, fragmentation
and reassembly, forwarding, ICMP errors and their rate limit, faulty links, replay.

Test bodies run as kernel threads (netkit.drive) so the simulated network replays exactly and
virtual time passes only when every thread waits."""

from __future__ import annotations

import errno
import hashlib

import pytest

from rumpkernel.testing import netkit


@pytest.fixture
def pair():
    _world, (ka, kb) = netkit.sim_kernels(11, ["a", "b"])
    netkit.plug(ka, "wire0", "ab", "10.99.0.1/24")
    netkit.plug(kb, "wire0", "ab", "10.99.0.2/24")
    yield ka, kb
    for k in (ka, kb):
        k.halt()
        assert not k.panicked
        assert k.statistics()["memory"]["in_use"] == 0, k.statistics()["memory"]


def test_ping_both_ways(pair) -> None:
    ka, kb = pair

    def body():
        # the table is read inside the world: outside it, the virtual clock runs on to the
        # kernels' next timers (IPv6 router solicitations ...) and the entry may age
        return (netkit.ping(ka, "10.99.0.2", 3), netkit.ping(kb, "10.99.0.1", 2),
                ka.socket.config.arp())

    ab, ba, arp = netkit.drive(ka, body)
    assert all(r is not None for r in ab + ba)
    assert [e["ip"] for e in arp] == ["10.99.0.2"] and arp[0]["state"] == "reachable"
    st = kb.socket.config.stats()
    assert st["icmp"]["in_type8"] == 3 and st["icmp"]["out_type0"] == 3


def test_udp_echo_and_port_unreachable(pair) -> None:
    ka, kb = pair
    A, B = ka.socket, kb.socket

    def body():
        srv = B.socket(B.AF_INET, B.SOCK_DGRAM)
        srv.bind(("0.0.0.0", 7))
        cli = A.socket(A.AF_INET, A.SOCK_DGRAM)
        cli.connect(("10.99.0.2", 7))
        cli.settimeout(2)
        out = []
        for i in range(5):
            cli.send(b"echo %d" % i)
            data, addr = srv.recvfrom(100)
            srv.sendto(data.upper(), addr)
            out.append(cli.recv(100))
        srv.close()
        cli.send(b"nobody home")
        try:
            cli.recv(100)
        except ConnectionRefusedError:
            out.append("refused")
        cli.close()
        return out

    assert netkit.drive(ka, body) == [b"ECHO %d" % i for i in range(5)] + ["refused"]


def test_arp_gives_up_then_forgets(pair) -> None:
    ka, _kb = pair
    A = ka.socket

    def body():
        s = A.socket(A.AF_INET, A.SOCK_DGRAM)
        s.sendto(b"x", ("10.99.0.77", 9))            # held while ARP asks (5 times, 1 s apart)
        first = ka.socket.config.arp()
        ka.sys.nanosleep(6)
        try:
            s.sendto(b"y", ("10.99.0.77", 9))
            second = "sent"
        except OSError as e:
            second = e.errno
        down = ka.socket.config.arp()
        ka.sys.nanosleep(21)                          # net.inet.arp.down is 20 s
        later = ka.socket.config.arp()
        s.close()
        return first, second, down, later

    first, second, down, later = netkit.drive(ka, body)
    assert first[0]["state"] == "incomplete" and first[0]["held"] == 1
    assert second == errno.EHOSTDOWN
    assert down[0]["state"] == "down" and down[0]["held"] == 0
    assert later == []
    st = ka.socket.config.stats()["arp"]
    assert st["txrequests"] == 5 and st["dropped"] == 1


def test_arp_entries_expire(pair) -> None:
    ka, _kb = pair

    def body():
        netkit.ping(ka, "10.99.0.2")
        before = ka.socket.config.arp()
        ka.sys.nanosleep(1201)
        return before, ka.socket.config.arp()

    before, after = netkit.drive(ka, body)
    assert len(before) == 1 and after == []


def _payload(i: int, n: int) -> bytes:
    seed = hashlib.sha256(b"%d" % i).digest()
    return (seed * (n // 32 + 1))[:n]


def test_fragmentation_and_reassembly_of_60k_datagrams(pair) -> None:
    ka, kb = pair
    A, B = ka.socket, kb.socket

    def body():
        rx = B.socket(B.AF_INET, B.SOCK_DGRAM)
        rx.bind(("10.99.0.2", 5000))
        rx.settimeout(5)
        tx = A.socket(A.AF_INET, A.SOCK_DGRAM)
        got = []
        for i in range(4):
            tx.sendto(_payload(i, 60000), ("10.99.0.2", 5000))
            got.append(rx.recv(65535))
        rx.close()
        tx.close()
        return got

    assert netkit.drive(ka, body) == [_payload(i, 60000) for i in range(4)]
    assert ka.socket.config.stats()["ip"]["ofragments"] == 4 * 41
    assert kb.socket.config.stats()["ip"]["reassembled"] == 4


def _lossy_run(seed: int, n: int = 120, size: int = 1000) -> tuple[list[int], dict, int]:
    _world, (ka, kb) = netkit.sim_kernels(seed, ["a", "b"])
    try:
        netkit.faults(ka, "lossy", loss=0.05, reorder=0.05, corrupt=0.02, jitter_ns=200_000)
        netkit.plug(ka, "wire0", "lossy", "10.99.1.1/24")
        netkit.plug(kb, "wire0", "lossy", "10.99.1.2/24")
        A, B = ka.socket, kb.socket
        ka.socket.config.arp_set("10.99.1.2", kb.socket.config.interfaces()[1]["lladdr"])
        kb.socket.config.arp_set("10.99.1.1", ka.socket.config.interfaces()[1]["lladdr"])

        def body():
            rx = B.socket(B.AF_INET, B.SOCK_DGRAM)
            rx.bind(("0.0.0.0", 6000))
            rx.setsockopt(B.SOL_SOCKET, B.SO_RCVBUF, 4 << 20)
            tx = A.socket(A.AF_INET, A.SOCK_DGRAM)
            for i in range(n):
                tx.sendto(i.to_bytes(4, "big") + _payload(i, size), ("10.99.1.2", 6000))
                ka.sys.nanosleep(0.0005)
            big = [_payload(1000 + i, 20000) for i in range(10)]
            for p in big:
                tx.sendto(p, ("10.99.1.2", 6000))
            rx.settimeout(1.0)
            seen, bigs = [], 0
            try:
                while True:
                    d = rx.recv(65535)
                    if len(d) == 20000:
                        assert d in big, "a corrupt reassembled datagram was delivered"
                        bigs += 1
                        continue
                    i = int.from_bytes(d[:4], "big")
                    assert d[4:] == _payload(i, size), "a corrupt datagram was delivered"
                    seen.append(i)
            except TimeoutError:
                pass
            rx.close()
            tx.close()
            return seen, bigs

        seen, bigs = netkit.drive(ka, body)
        h = netkit.hub(ka, "lossy")
        counters = {c: getattr(h, c) for c in ("lost", "reordered", "corrupted")}
        return seen, counters, bigs
    finally:
        ka.halt()
        kb.halt()
        assert ka.statistics()["memory"]["in_use"] == 0 == kb.statistics()["memory"]["in_use"]


def test_lossy_reordering_corrupting_link_never_delivers_corruption_and_replays() -> None:
    seen, counters, _bigs = _lossy_run(3)
    assert counters["lost"] > 0 and counters["reordered"] > 0 and counters["corrupted"] > 0
    assert 80 < len(seen) < 120 and len(set(seen)) == len(seen)
    assert seen != sorted(seen)                   # reordered on the way
    again = _lossy_run(3)
    assert again[0] == seen and again[1] == counters   # one seed, one run
    assert _lossy_run(4)[0] != seen


def test_forwarding_router_ttl_and_unreachables() -> None:
    _world, (ka, kr, kb) = netkit.sim_kernels(5, ["a", "r", "b"])
    try:
        netkit.plug(ka, "wire0", "left", "10.99.2.1/24")
        netkit.plug(kr, "wire0", "left", "10.99.2.254/24")
        netkit.plug(kr, "wire1", "right", "10.99.3.254/24")
        netkit.plug(kb, "wire0", "right", "10.99.3.1/24")
        ka.socket.config.route_add("default", gateway="10.99.2.254")
        kb.socket.config.route_add("10.99.2.0/24", gateway="10.99.3.254")
        A = ka.socket

        def body():
            off = netkit.ping(ka, "10.99.3.1", timeout=0.5)
            kr.sys.sysctl("net.inet.ip.forwarding", 1)
            on = netkit.ping(ka, "10.99.3.1", 2)
            s = A.socket(A.AF_INET, A.SOCK_DGRAM)
            s.connect(("10.99.3.1", 4444))            # closed port behind the router
            s.send(b"x")
            s.settimeout(1)
            try:
                s.recv(10)
                refused = False
            except ConnectionRefusedError:
                refused = True
            s.setsockopt(A.IPPROTO_IP, A.IP_TTL, 1)   # dies at the router
            raw = A.socket(A.AF_INET, A.SOCK_RAW, A.IPPROTO_ICMP)
            raw.settimeout(1)
            s.send(b"short-lived")
            data, addr = raw.recvfrom(1500)
            raw.close()
            s.close()
            try:
                netkit.ping(ka, "10.99.9.9", timeout=0.2)
                net_unreach = None
            except OSError as e:
                net_unreach = e.errno
            return off, on, refused, data, addr, net_unreach

        off, on, refused, data, addr, net_unreach = netkit.drive(ka, body)
        assert off == [None] and None not in on
        assert refused
        assert addr == ("10.99.2.254", 0) and data[20] == 11     # ICMP time exceeded
        assert net_unreach is None          # default route: the router answers instead
        st = kr.socket.config.stats()["ip"]
        assert st["cantforward"] >= 1 and st["forward"] >= 4 and st["timeexceeded"] == 1
    finally:
        for k in (ka, kr, kb):
            k.halt()


def test_icmp_errors_are_rate_limited(pair) -> None:
    ka, kb = pair
    A = ka.socket

    def body():
        netkit.ping(ka, "10.99.0.2")                 # resolve first: nothing waits in ARP
        s = A.socket(A.AF_INET, A.SOCK_DGRAM)
        for _ in range(300):
            s.sendto(b"x", ("10.99.0.2", 9))        # closed port: port unreachable each
        ka.sys.nanosleep(0.5)
        s.close()

    netkit.drive(ka, body)
    st = kb.socket.config.stats()["icmp"]
    assert st["ratelimited"] >= 150 and st["error"] <= 110
    assert kb.socket.config.stats()["udp"]["noport"] == 300


def test_reassembly_times_out_and_memory_is_bounded(pair) -> None:
    from rumpkernel.net.wire import ipv4, udp

    _ka, kb = pair

    def body():
        ns = kb.net
        ifp = ns.interfaces["wire0"]
        src, dst = bytes([10, 99, 0, 1]), bytes([10, 99, 0, 2])
        peak = 0
        for ident in range(3000):                      # a flood of first fragments
            payload = udp.emit_raw(1, 2, bytes(1400), src, dst)
            pkt = ipv4.header(src, dst, 17, 1400, ident=ident, flags=ipv4.FLAG_MF) + \
                payload[:1400]
            frame = ifp.lladdr + bytes(6) + b"\x08\x00" + pkt
            ifp.input(frame)
            peak = max(peak, ns.inet.reass.held_bytes)
        held = kb.statistics()["memory"]["by_tag"].get("ipreass", 0)
        kb.sys.nanosleep(31)
        return peak, held, ns.inet.reass.held_bytes, len(ns.inet.reass.queues)

    peak, held, after, queues = netkit.drive(kb, body)
    assert 0 < peak <= 1 << 20 and 0 < held <= 1 << 20
    assert after == 0 and queues == 0
    st = kb.socket.config.stats()["ip"]
    assert st["fragtimeout"] >= 1 and st["fragments"] == 3000


def test_interface_config_errors(pair) -> None:
    ka, _ = pair
    cfg = ka.socket.config
    with pytest.raises(OSError) as e:
        cfg.create("bogus0")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(FileExistsError):
        cfg.create("wire0")
    with pytest.raises(OSError) as e:
        cfg.set_mtu("wire0", 20)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        cfg.destroy("lo0")
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        cfg.delete_address("wire0", "10.99.0.9")
    assert e.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as e:
        cfg.route_delete("10.42.0.0/16")
    assert e.value.errno == errno.ESRCH
    cfg.address("wire0", "10.99.5.1/24")                   # an alias
    names = {(a["addr"], a["plen"]) for a in cfg.interfaces()[1]["addrs"]}
    assert names == {("10.99.0.1", 24), ("10.99.5.1", 24)}
    cfg.delete_address("wire0", "10.99.5.1")
    cfg.create("wire7")
    cfg.destroy("wire7")
    assert [i["name"] for i in cfg.interfaces()] == ["lo0", "wire0"]
    assert cfg.route_get("10.99.0.77")["interface"] == "wire0"
