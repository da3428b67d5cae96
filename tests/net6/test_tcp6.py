"""TCP in AF_INET6 beyond the family-neutral suite (tests/net/test_tcp_sockets.py runs over ::1
too) and the dual-stack socket tests of test_sock6.py (which sockin runs as well), each test
as a local and as a remote client (``knet``): connect to a v4-mapped address over IPv4, the
net.inet6.ip6.v6only default, IPv6 socket options, TCP_INFO, netstat, MSS from the IPv6 MTU,
ISNs keyed over the IPv6 4-tuple -- what reads the kernel stack's own state."""

from __future__ import annotations

import errno
import io

import pytest

from rumpkernel.apps import rump_net
from rumpkernel.net.inet.tcp_isn import IsnGenerator
from tests.net.conftest import knet  # noqa: F401  (the local/remote fixture)
from tests.net.test_tcp_sockets import info


def _stream6(S):
    return S.socket(S.AF_INET6, S.SOCK_STREAM)


def test_connect_to_v4_mapped_goes_over_ipv4(knet) -> None:  # noqa: F811
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_STREAM) as srv, _stream6(S) as c:
        srv.bind(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        srv.listen(1)
        before = knet.socket.config.stats().get("tcp6", {}).get("opackets", 0)
        c.connect(("::ffff:127.0.0.1", port))
        a, addr = srv.accept()
        with a:
            assert addr == ("127.0.0.1", c.getsockname()[1])          # plain IPv4 there
            assert c.getpeername() == ("::ffff:127.0.0.1", port, 0, 0)
            c.sendall(b"x" * 100_000)
            got = b""
            while len(got) < 100_000:
                got += a.recv(1 << 20)
        assert knet.socket.config.stats().get("tcp6", {}).get("opackets", 0) == before


def test_v6only_default_follows_the_sysctl(knet) -> None:  # noqa: F811
    S, sys_ = knet.socket, knet.sys
    old = sys_.sysctl("net.inet6.ip6.v6only", 1)
    try:
        assert old == 0
        with _stream6(S) as s:
            assert s.getsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY) == 1
            s.bind(("::", 0))
            s.listen(1)
            with S.socket(S.AF_INET, S.SOCK_STREAM) as c, \
                    pytest.raises(ConnectionRefusedError):
                c.connect(("127.0.0.1", s.getsockname()[1]))
    finally:
        sys_.sysctl("net.inet6.ip6.v6only", old)
    with _stream6(S) as s:
        assert s.getsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY) == 0


def test_ipv6_options_tcp_info_mss_and_netstat(knet) -> None:  # noqa: F811
    S = knet.socket
    with _stream6(S) as srv:
        srv.bind(("::1", 0))
        port = srv.getsockname()[1]
        srv.listen(1)
        c = _stream6(S)
        c.setsockopt(S.IPPROTO_IPV6, S.IPV6_UNICAST_HOPS, 7)
        c.setsockopt(S.IPPROTO_IPV6, S.IPV6_TCLASS, 0x20)
        with pytest.raises(OSError) as e:
            c.setsockopt(S.IPPROTO_IPV6, S.IPV6_UNICAST_HOPS, 256)
        assert e.value.errno == errno.EINVAL
        c.connect(("::1", port))
        a, _ = srv.accept()
        with c, a:
            assert c.getsockopt(S.IPPROTO_IPV6, S.IPV6_UNICAST_HOPS) == 7
            assert c.getsockopt(S.IPPROTO_IPV6, S.IPV6_TCLASS) == 0x20
            assert a.getsockopt(S.IPPROTO_IPV6, S.IPV6_UNICAST_HOPS) == 64   # the default
            mtu = next(i["mtu"] for i in S.config.interfaces() if i["name"] == "lo0")
            i = info(c, S)
            assert i["state"] == 1 and i["pmtu"] == i["snd_mss"] + 60    # IPv6 headers
            assert i["advmss"] == mtu - 60 - 12                 # less the timestamp option
            c.sendall(b"q" * 1000)
            assert a.recv(2000)
            out = io.StringIO()
            rump_net.netstat(knet, ["-a"], out)
            rows = [ln.split() for ln in out.getvalue().splitlines() if ln.startswith("tcp6")]
            assert sorted(r[-1] for r in rows) == ["ESTABLISHED", "ESTABLISHED", "LISTEN"]
            assert [f"[::1]:{port}"] == [r[3] for r in rows if r[-1] == "LISTEN"]
        st = S.config.stats()
        assert st["tcp6"]["ipackets"] > 0 and st["tcp6"]["opackets"] > 0


def test_isn_and_timestamp_offset_keyed_over_the_ipv6_four_tuple() -> None:
    g = IsnGenerator(bytes(range(32)))
    a, b = bytes(15) + b"\1", bytes.fromhex("fd000000000000000000000000000002")
    c = bytes.fromhex("fd000000000000000000000000000003")
    now = 1.0
    isns = {g.isn(a, 1000, x, 80, now) for x in (b, c)} | {g.isn(a, 1001, b, 80, now)}
    assert len(isns) == 3
    assert g.isn(a, 1000, b, 80, now) == g.isn(a, 1000, b, 80, now)   # stable within a tick
    assert g.ts_offset(a, 1000, b, 80) != g.ts_offset(a, 1000, c, 80)
