"""IPv6 between kernels on the in-process wire (simulated host, one seed): link-local addresses
at up, DAD (and a collision), neighbour discovery, ping6, UDP6 with fragmentation and
reassembly, SLAAC and the default router from a router advertisement, forwarding with hop
limit and packet-too-big, ICMPv6 errors and their rate limit, replay from the seed.

Test bodies run as threads of the simulated world (netkit.drive): virtual time passes only when
every thread waits, so each run replays exactly."""

from __future__ import annotations

import errno
import ipaddress
import struct

import pytest

from rumpkernel.net.wire import icmp6
from rumpkernel.net.wire.ipv6 import ip6
from rumpkernel.testing import netkit
from tests.net6.sim6 import addrs6, linklocal, ping6, settle, sleep


def _halt(*ks) -> None:
    for k in ks:
        k.halt()
        assert not k.panicked
        assert k.statistics()["memory"]["in_use"] == 0, k.statistics()["memory"]


@pytest.fixture
def pair6():
    _world, (ka, kb) = netkit.sim_kernels(61, ["a", "b"])
    for k, n in ((ka, 1), (kb, 2)):
        netkit.plug(k, "wire0", "ab6", f"10.99.0.{n}/24")
        k.socket.config.address6("wire0", f"fd00:99::{n}/64")
    yield ka, kb
    _halt(ka, kb)


def test_linklocal_dad_neighbours_and_ping6(pair6) -> None:
    ka, kb = pair6

    def body():
        got = settle(ka, "wire0"), settle(kb, "wire0")
        lla, llb = linklocal(ka, "wire0"), linklocal(kb, "wire0")
        return (got, lla, llb, ping6(ka, (f"{llb}%wire0", 0), 3),
                ping6(kb, ("fd00:99::1", 0), 2), ping6(ka, ("::1", 0)),
                ping6(ka, ("fd00:99::1", 0)))

    (ga, gb), lla, llb, ll, glob, loop, own = netkit.drive(ka, body)
    for got in (ga, gb):
        assert {a["origin"] for a in got} == {"linklocal", "static"}
        assert all(a["state"] == "preferred" for a in got)
    assert lla != llb and ipaddress.IPv6Address(lla).is_link_local
    mac = ka.net.interfaces["wire0"].lladdr
    eui = bytes((mac[0] ^ 2,)) + mac[1:3] + b"\xff\xfe" + mac[3:]
    assert ip6(lla)[8:] != eui                      # RFC 7217, not the MAC
    assert all(r is not None for r in ll + glob + loop + own)
    assert ll[0][1] == (f"{llb}%wire0", 0, 0, ka.socket.config.index("wire0"))
    assert glob[0][1][0] == "fd00:99::1"
    nd = {e["ip"]: e for e in ka.socket.config.nd6()["neighbors"]}
    assert nd[llb]["state"] in ("reachable", "delay", "probe", "stale")
    assert nd[llb]["mac"] == ":".join(f"{x:02x}" for x in kb.net.interfaces["wire0"].lladdr)
    st = kb.socket.config.stats()
    assert st["nd6"]["dad_ok"] >= 2 and st["icmp6"]["in_128"] == 3
    assert kb.sys.sysctl("net.inet6.icmp6.stats.in_128") == 3


def test_udp6_fragmented_reassembled_and_refused(pair6) -> None:
    ka, kb = pair6
    A, B = ka.socket, kb.socket

    def body():
        settle(ka, "wire0")
        settle(kb, "wire0")
        srv = B.socket(B.AF_INET6, B.SOCK_DGRAM)
        srv.bind(("fd00:99::2", 7))
        srv.settimeout(3)
        cli = A.socket(A.AF_INET6, A.SOCK_DGRAM)
        cli.settimeout(3)
        sizes = []
        for n in (10, 1452, 1453, 3000, 65000):
            cli.sendto(bytes(range(256)) * (n // 256) + bytes(n % 256), ("fd00:99::2", 7))
            data, addr = srv.recvfrom(70000)
            sizes.append(len(data))
            srv.sendto(data[:100], addr)
            assert cli.recvfrom(200)[0] == data[:100]
        name = cli.getsockname()
        srv.close()
        cli.connect(("fd00:99::2", 7))
        cli.send(b"nobody home")
        try:
            cli.recv(10)
        except OSError as e:
            refused = e.errno
        cli.close()
        return sizes, addr, name, refused

    sizes, addr, name, refused = netkit.drive(ka, body)
    assert sizes == [10, 1452, 1453, 3000, 65000]
    assert addr[0] == "fd00:99::1" and addr[1] == name[1] and name[0] == "::"
    assert refused == errno.ECONNREFUSED
    a, b = ka.socket.config.stats()["ip6"], kb.socket.config.stats()["ip6"]
    assert a["fragmented"] == 3 and b["reassembled"] == 3
    assert kb.socket.config.stats()["udp6"]["noport"] == 1


def test_duplicate_address_detected(pair6) -> None:
    ka, kb = pair6

    def body():
        settle(ka, "wire0")
        settle(kb, "wire0")
        kb.socket.config.address6("wire0", "fd00:99::1/64")         # ka has it
        sleep(kb, 4)
        return addrs6(ka, "wire0"), addrs6(kb, "wire0")

    a, b = netkit.drive(ka, body)
    assert "fd00:99::1" in [x["addr"] for x in a]
    assert "fd00:99::1" not in [x["addr"] for x in b]
    assert kb.socket.config.stats()["nd6"]["dad_duplicate"] == 1
    assert any("duplicate address fd00:99::1" in m for m in kb.msgbuf)


def _ra(lifetime: int, mtu: int = 1400, hops: int = 77) -> bytes:
    ra = icmp6.RouterAdvertisement(
        hops, 0, lifetime, 0, 0,
        (icmp6.PrefixInfo(64, icmp6.PI_ONLINK | icmp6.PI_AUTO, 3600, 1800, ip6("fd00:aa::")),
         icmp6.Mtu(mtu), icmp6.Rdnss(600, (ip6("fd00:99::53"),))))
    return ra.message().emit(bytes(16), bytes(16))      # the kernel fills the checksum in


def test_slaac_default_router_and_rdnss_from_a_router_advertisement(pair6) -> None:
    ka, kb = pair6
    A, B = ka.socket, kb.socket

    def body():
        settle(ka, "wire0")
        settle(kb, "wire0")
        ka.socket.config.address6("wire0", "fd00:aa::1/64")
        ka.socket.config.address6("lo0", "fd00:bb::1/128")
        settle(ka, "wire0")
        with A.socket(A.AF_INET6, A.SOCK_RAW, A.IPPROTO_ICMPV6) as r:
            r.setsockopt(A.IPPROTO_IPV6, A.IPV6_MULTICAST_HOPS, 255)
            r.sendto(_ra(1800), ("ff02::1%wire0", 0))
            sleep(kb, 0.2)
            settle(kb, "wire0")
            got = addrs6(kb, "wire0"), kb.socket.config.routes6(), kb.socket.config.nd6()
            rdnss = kb.socket.config.rdnss()
            far = ping6(kb, ("fd00:bb::1", 0), 2)
            with B.socket(B.AF_INET6, B.SOCK_DGRAM) as u:
                u.sendto(bytes(1450), ("fd00:bb::1", 9))           # past the RA's MTU
            r.sendto(_ra(0), ("ff02::1%wire0", 0))              # the router leaves
            sleep(kb, 0.5)
            try:
                ping6(kb, ("fd00:bb::1", 0))
                gone = None
            except OSError as e:
                gone = e.errno
        return got, rdnss, far, gone

    (addrs, routes, nd), rdnss, far, gone = netkit.drive(ka, body)
    slaac = [a for a in addrs if a["origin"] == "slaac"]
    assert len(slaac) == 1 and slaac[0]["addr"].startswith("fd00:aa:")
    assert slaac[0]["state"] == "preferred" and slaac[0]["valid_s"] <= 3600
    lla = linklocal(ka, "wire0")
    default = [r for r in routes if r["plen"] == 0]
    assert default and default[0]["gateway"] == lla and default[0]["gateway_scope"] == "wire0"
    assert any(r["dst"] == "fd00:aa::" and r["plen"] == 64 for r in routes)
    info = next(i for i in nd["interfaces"] if i["interface"] == "wire0")
    assert info["mtu"] == 1400 and info["hop_limit"] == 77
    assert [r["addr"] for r in info["routers"]] == [lla]
    assert rdnss == [{"interface": "wire0", "servers": ["fd00:99::53"]}]
    assert all(f is not None for f in far) and far[0][1][0] == "fd00:bb::1"
    assert kb.socket.config.stats()["ip6"]["fragmented"] == 1       # 1450 + 48 > 1400
    assert gone == errno.ENETUNREACH


def test_router_advertisements_can_be_refused(pair6) -> None:
    ka, kb = pair6
    A = ka.socket

    def body():
        settle(ka, "wire0")
        settle(kb, "wire0")
        kb.sys.sysctl("net.inet6.ip6.accept_rtadv", 0)
        with A.socket(A.AF_INET6, A.SOCK_RAW, A.IPPROTO_ICMPV6) as r:
            r.setsockopt(A.IPPROTO_IPV6, A.IPV6_MULTICAST_HOPS, 255)
            r.sendto(_ra(1800), ("ff02::1%wire0", 0))
            sleep(kb, 0.5)
            r.setsockopt(A.IPPROTO_IPV6, A.IPV6_MULTICAST_HOPS, 64)     # not 255: invalid
            kb.sys.sysctl("net.inet6.ip6.accept_rtadv", 1)
            r.sendto(_ra(1800), ("ff02::1%wire0", 0))
            sleep(kb, 1)
        return addrs6(kb, "wire0")

    addrs = netkit.drive(ka, body)
    assert not [a for a in addrs if a["origin"] == "slaac"]
    st = kb.socket.config.stats()["nd6"]
    assert st["ra_ignored"] == 1 and st["badhlim"] == 1


@pytest.fixture
def chain3():
    """a --ac-- r --rc-- c, r forwarding; the rc link has an MTU of 1280."""
    _world, (ka, kr, kc) = netkit.sim_kernels(62, ["a", "r", "c"])
    netkit.plug(ka, "wire0", "ac6", None)
    netkit.plug(kr, "wire0", "ac6", None)
    netkit.plug(kr, "wire1", "rc6", None)
    netkit.plug(kc, "wire0", "rc6", None)
    kr.socket.config.set_mtu("wire1", 1280)
    kc.socket.config.set_mtu("wire0", 1280)
    for k, ifn, a in ((ka, "wire0", "fd00:1::2/64"), (kr, "wire0", "fd00:1::1/64"),
                      (kr, "wire1", "fd00:2::1/64"), (kc, "wire0", "fd00:2::2/64")):
        k.socket.config.address6(ifn, a)
    ka.socket.config.route6_add("fd00:2::/64", "fd00:1::1")
    kc.socket.config.route6_add("default", "fd00:2::1")
    kr.sys.sysctl("net.inet6.ip6.forwarding", 1)
    yield ka, kr, kc
    _halt(ka, kr, kc)


def test_forwarding_hop_limit_and_packet_too_big(chain3) -> None:
    ka, kr, kc = chain3
    A, C = ka.socket, kc.socket

    def body():
        for k, ifs in ((ka, ["wire0"]), (kr, ["wire0", "wire1"]), (kc, ["wire0"])):
            for i in ifs:
                settle(k, i)
        through = ping6(ka, ("fd00:2::2", 0), 2)
        with A.socket(A.AF_INET6, A.SOCK_RAW, A.IPPROTO_ICMPV6) as raw:
            raw.settimeout(2)
            ping6(ka, ("fd00:2::2", 0), 1, hops=1, timeout=0.5)
            errs = []
            while True:
                data, addr = raw.recvfrom(2000)
                if data[0] < 128:
                    errs.append((data[0], data[1], addr[0]))
                    break
        srv = C.socket(C.AF_INET6, C.SOCK_DGRAM)
        srv.bind(("::", 5001))
        srv.settimeout(3)
        cli = A.socket(A.AF_INET6, A.SOCK_DGRAM)
        cli.sendto(bytes(1400), ("fd00:2::2", 5001))         # fits a's link, not r's
        sleep(ka, 0.5)
        cli.sendto(bytes(1400), ("fd00:2::2", 5001))         # now fragmented for 1280
        got = len(srv.recvfrom(2000)[0])
        cli.close()
        srv.close()
        return through, errs, got

    through, errs, got = netkit.drive(ka, body)
    assert all(t is not None for t in through) and through[0][1][0] == "fd00:2::2"
    assert errs == [(icmp6.TIME_EXCEEDED, 0, "fd00:1::1")]
    assert got == 1400
    assert kr.socket.config.stats()["ip6"]["forward"] >= 4
    assert ka.socket.config.stats()["icmp6"]["pmtuchanged"] == 1
    assert ka.socket.config.stats()["ip6"]["fragmented"] == 1


def test_unknown_next_header_is_a_parameter_problem_and_errors_are_rate_limited(pair6):
    ka, kb = pair6
    A = ka.socket

    def body():
        settle(ka, "wire0")
        settle(kb, "wire0")
        kb.sys.sysctl("net.inet6.icmp6.errppslimit", 2)
        with A.socket(A.AF_INET6, A.SOCK_RAW, 253) as odd, \
                A.socket(A.AF_INET6, A.SOCK_RAW, A.IPPROTO_ICMPV6) as raw:
            raw.settimeout(2)
            odd.sendto(b"experimental", ("fd00:99::2", 0))
            while True:
                data, addr = raw.recvfrom(2000)
                if data[0] == icmp6.PARAM_PROBLEM:
                    break
            with A.socket(A.AF_INET6, A.SOCK_DGRAM) as u:
                for i in range(40):
                    u.sendto(b"x", ("fd00:99::2", 1000 + i))
            sleep(ka, 0.5)
        return data, addr

    data, addr = netkit.drive(ka, body)
    code, pointer = data[1], struct.unpack("!I", data[4:8])[0]
    assert (code, pointer, addr[0]) == (1, 6, "fd00:99::2")
    st = kb.socket.config.stats()["icmp6"]
    assert st["ratelimited"] >= 25 and st["error"] <= 15


def _scenario(seed: int) -> list:
    _world, (ka, kb) = netkit.sim_kernels(seed, ["a", "b"])
    try:
        for k, n in ((ka, 1), (kb, 2)):
            netkit.plug(k, "wire0", "rp6", None)
            k.socket.config.address6("wire0", f"fd00:99::{n}/64")
        netkit.faults(ka, "rp6", loss=0.1, reorder=0.1, seed=seed)

        def body():
            settle(ka, "wire0")
            settle(kb, "wire0")
            trace = [linklocal(ka, "wire0"), linklocal(kb, "wire0")]
            trace += [r and (round(r[0], 9), r[1]) for r in
                      ping6(ka, ("fd00:99::2", 0), 6, size=2000, timeout=1)]
            A, B = ka.socket, kb.socket
            with A.socket(A.AF_INET6, A.SOCK_DGRAM) as tx, \
                    B.socket(B.AF_INET6, B.SOCK_DGRAM) as rx:
                rx.bind(("::", 9))
                rx.settimeout(1)
                for i in range(20):
                    tx.sendto(b"%d" % i * (i * 150), ("fd00:99::2", 9))
                got = []
                try:
                    while True:
                        got.append(len(rx.recv(5000)))
                except TimeoutError:
                    pass
            return [*trace, got]

        trace = netkit.drive(ka, body)
        trace.append(ka.socket.config.stats()["ip6"])
        return trace
    finally:
        _halt(ka, kb)


def test_replays_from_its_seed() -> None:
    first = _scenario(63)
    assert first == _scenario(63)
    assert first[:2] != _scenario(64)[:2]
