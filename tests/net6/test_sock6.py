"""AF_INET6 sockets through the protocol switch, each test as a local and as a remote
(sysproxy) client of one kernel (the ``knet`` fixture of tests/net): UDP over ::1, the
sockaddr_in6 4-tuples, dual stack and IPV6_V6ONLY with v4-mapped addresses (UDP and TCP
listeners; the TCP suite itself runs over ::1 in tests/net/test_tcp_sockets.py), ICMPv6 echo and
raw sockets, multicast on lo0, options, errors, getaddrinfo/inet_pton, netstat, sysctl."""

from __future__ import annotations

import errno
import struct

import pytest

from tests.net.conftest import knet  # noqa: F401  (the local/remote fixture)


def _udp6(S):
    return S.socket(S.AF_INET6, S.SOCK_DGRAM)


def _stream6(S):
    return S.socket(S.AF_INET6, S.SOCK_STREAM)


def test_udp6_over_loopback_with_sockaddr_in6_tuples(knet) -> None:  # noqa: F811
    S = knet.socket
    with _udp6(S) as srv, _udp6(S) as cli:
        srv.bind(("::1", 0))
        host, port, flow, scope = srv.getsockname()
        assert (host, flow, scope) == ("::1", 0, 0) and port >= 49152
        cli.settimeout(5)
        srv.settimeout(5)
        cli.connect(("::1", port))
        assert cli.getpeername() == ("::1", port, 0, 0)
        cli.send(b"over ipv6")
        data, addr = srv.recvfrom(100)
        assert data == b"over ipv6" and addr == cli.getsockname()
        srv.sendto(b"reply", addr)
        assert cli.recv(100) == b"reply"
        big = bytes(range(256)) * 200                       # 51,200 bytes: lo0 MTU 33,184
        cli.send(big)
        assert srv.recv(65536) == big
    st = knet.socket.config.stats()["ip6"]
    assert st["fragmented"] >= 1 and st["reassembled"] >= 1


def test_dual_stack_socket_sees_ipv4_as_v4_mapped(knet) -> None:  # noqa: F811
    S = knet.socket
    with _udp6(S) as six, S.socket(S.AF_INET, S.SOCK_DGRAM) as four:
        assert six.getsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY) == 0        # Linux's default
        six.bind(("::", 0))
        port = six.getsockname()[1]
        six.settimeout(5)
        four.settimeout(5)
        four.sendto(b"from ipv4", ("127.0.0.1", port))
        data, addr = six.recvfrom(100)
        assert data == b"from ipv4" and addr[0] == "::ffff:127.0.0.1"
        assert addr[1] == four.getsockname()[1]
        six.sendto(b"to ipv4", addr)
        assert four.recvfrom(100) == (b"to ipv4", ("127.0.0.1", port))
        with S.socket(S.AF_INET, S.SOCK_DGRAM) as clash:
            with pytest.raises(OSError) as e:
                clash.bind(("0.0.0.0", port))            # the dual-stack socket holds it
            assert e.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError) as e:
            six.setsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY, 1)     # after bind
        assert e.value.errno == errno.EINVAL


def test_v6only_socket_leaves_ipv4_alone(knet) -> None:  # noqa: F811
    S = knet.socket
    with _udp6(S) as six, S.socket(S.AF_INET, S.SOCK_DGRAM) as four, \
            S.socket(S.AF_INET, S.SOCK_DGRAM) as cli:
        six.setsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY, 1)
        assert six.getsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY) == 1
        six.bind(("::", 0))
        port = six.getsockname()[1]
        four.bind(("0.0.0.0", port))                     # coexists with the v6-only one
        four.settimeout(5)
        cli.sendto(b"ipv4 only", ("127.0.0.1", port))
        assert four.recvfrom(100)[0] == b"ipv4 only"
        six.setblocking(False)
        with pytest.raises(BlockingIOError):
            six.recvfrom(100)
        with pytest.raises(OSError) as e:
            six.sendto(b"x", ("::ffff:127.0.0.1", port))
        assert e.value.errno == errno.ENETUNREACH


def test_tcp_dual_stack_listener_accepts_ipv4_as_v4_mapped(knet) -> None:  # noqa: F811
    S = knet.socket
    with _stream6(S) as srv:
        assert srv.getsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY) == 0        # Linux's default
        srv.bind(("::", 0))
        port = srv.getsockname()[1]
        srv.listen(4)
        with S.create_connection(("127.0.0.1", port), timeout=10) as c:
            a, addr = srv.accept()
            with a:
                assert addr == ("::ffff:127.0.0.1", c.getsockname()[1], 0, 0)
                assert a.getsockname() == ("::ffff:127.0.0.1", port, 0, 0)
                c.sendall(b"over ipv4")
                assert a.recv(100) == b"over ipv4"
                a.sendall(b"back")
                assert c.recv(100) == b"back"
        with S.socket(S.AF_INET, S.SOCK_STREAM) as clash:
            with pytest.raises(OSError) as e:
                clash.bind(("0.0.0.0", port))                 # the dual-stack one holds it
            assert e.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError) as e:
            srv.setsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY, 1)  # after bind
        assert e.value.errno == errno.EINVAL


def test_tcp_v6only_listener_refuses_ipv4_and_shares_the_port(knet) -> None:  # noqa: F811
    S = knet.socket
    with _stream6(S) as six, S.socket(S.AF_INET, S.SOCK_STREAM) as four:
        six.setsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY, 1)
        six.bind(("::", 0))
        port = six.getsockname()[1]
        six.listen(4)
        with S.socket(S.AF_INET, S.SOCK_STREAM) as c, pytest.raises(ConnectionRefusedError):
            c.connect(("127.0.0.1", port))                    # a RST: nobody listens in IPv4
        four.bind(("0.0.0.0", port))                          # coexists with the v6-only one
        four.listen(4)
        with S.create_connection(("127.0.0.1", port), timeout=10) as c4, \
                S.create_connection(("::1", port), timeout=10) as c6:
            a4, addr4 = four.accept()
            a6, addr6 = six.accept()
            with a4, a6:
                assert addr4 == c4.getsockname() and addr6 == c6.getsockname()
        with _stream6(S) as s:
            s.setsockopt(S.IPPROTO_IPV6, S.IPV6_V6ONLY, 1)
            with pytest.raises(OSError) as e:
                s.connect(("::ffff:127.0.0.1", port))
            assert e.value.errno == errno.ENETUNREACH
            with pytest.raises(OSError) as e:
                s.bind(("::ffff:127.0.0.1", 0))
            assert e.value.errno == errno.EINVAL                 # as Linux


def test_address_errors(knet) -> None:  # noqa: F811
    S = knet.socket
    with _udp6(S) as s:
        with pytest.raises(OSError) as e:
            s.bind(("fd00:99::77", 0))                      # not ours
        assert e.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(OSError) as e:
            s.bind(("fe80::1", 0))                          # link-local without a zone
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            s.sendto(b"x", ("fe80::1", 9))                  # the same, sending
        assert e.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError) as e:
            s.sendto(b"x", ("fd00:99::77", 9))             # no route
        assert e.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError) as e:
            s.sendto(b"x", ("::1", 0))
        assert e.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(OSError):
            s.sendto(b"x", ("fe80::1%nosuch0", 9))
        with pytest.raises(OSError) as e:
            s.setsockopt(S.IPPROTO_IPV6, S.IPV6_UNICAST_HOPS, 300)
        assert e.value.errno == errno.EINVAL


def test_icmpv6_echo_socket_and_raw_socket(knet) -> None:  # noqa: F811
    S = knet.socket
    with S.socket(S.AF_INET6, S.SOCK_DGRAM, S.IPPROTO_ICMPV6) as p, \
            S.socket(S.AF_INET6, S.SOCK_RAW, S.IPPROTO_ICMPV6) as raw:
        p.settimeout(5)
        raw.settimeout(5)
        p.sendto(struct.pack("!BBHHH", 128, 0, 0, 0, 7) + b"echo me", ("::1", 0))
        data, addr = p.recvfrom(200)
        assert data[0] == 129 and data[6:8] == b"\0\x07" and data[8:] == b"echo me"
        assert addr == ("::1", 0, 0, 0)
        ident = p.getsockname()[1]
        assert struct.unpack("!H", data[4:6])[0] == ident
        seen = set()
        while len(seen) < 2:                                # the raw socket sees both
            m, _ = raw.recvfrom(200)
            seen.add(m[0])
        assert seen == {128, 129}
        with pytest.raises(OSError) as e:
            p.sendto(b"\x81\0\0\0\0\0\0\0", ("::1", 0))     # only echo requests
        assert e.value.errno == errno.EINVAL
        p.setsockopt(S.IPPROTO_IPV6, S.IPV6_UNICAST_HOPS, 9)
        assert p.getsockopt(S.IPPROTO_IPV6, S.IPV6_UNICAST_HOPS) == 9
        p.setsockopt(S.IPPROTO_IPV6, S.IPV6_TCLASS, 0x20)
        assert p.getsockopt(S.IPPROTO_IPV6, S.IPV6_TCLASS) == 0x20


def test_multicast_membership_on_lo0(knet) -> None:  # noqa: F811
    S = knet.socket
    lo = S.if_nametoindex("lo0")
    group = "ff12::4242"
    with _udp6(S) as rx, _udp6(S) as tx:
        rx.bind(("::", 0))
        port = rx.getsockname()[1]
        rx.settimeout(1)
        tx.sendto(b"nobody joined", (f"{group}%lo0", port))
        with pytest.raises(TimeoutError):
            rx.recvfrom(100)
        mreq = S.inet_pton(S.AF_INET6, group) + struct.pack("@I", lo)
        rx.setsockopt(S.IPPROTO_IPV6, S.IPV6_JOIN_GROUP, mreq)
        rx.settimeout(5)
        tx.setsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_IF, lo)
        tx.sendto(b"to the group", (group, port))
        data, addr = rx.recvfrom(100)
        assert data == b"to the group" and addr[0] == "fe80::1%lo0"     # same scope
        rx.setsockopt(S.IPPROTO_IPV6, S.IPV6_LEAVE_GROUP, mreq)
        with pytest.raises(OSError) as e:
            rx.setsockopt(S.IPPROTO_IPV6, S.IPV6_LEAVE_GROUP, mreq)
        assert e.value.errno == errno.EADDRNOTAVAIL


def test_names_and_text_forms(knet) -> None:  # noqa: F811
    S = knet.socket
    fams = [a[0] for a in S.getaddrinfo("localhost", 7, 0, S.SOCK_DGRAM)]
    assert fams == [S.AF_INET, S.AF_INET6]
    assert S.getaddrinfo("localhost", 7, S.AF_INET6, S.SOCK_DGRAM) == [
        (S.AF_INET6, S.SOCK_DGRAM, 17, "", ("::1", 7, 0, 0))]
    assert S.getaddrinfo("fe80::1%lo0", 7, S.AF_INET6, S.SOCK_DGRAM)[0][4] == (
        "fe80::1%lo0", 7, 0, S.if_nametoindex("lo0"))
    assert S.getaddrinfo(None, 7, S.AF_INET6, S.SOCK_DGRAM, 0, 1)[0][4][0] == "::"
    with pytest.raises(S.gaierror):
        S.getaddrinfo("127.0.0.1", 7, S.AF_INET6)
    packed = S.inet_pton(S.AF_INET6, "fd00:99::1")
    assert len(packed) == 16 and S.inet_ntop(S.AF_INET6, packed) == "fd00:99::1"
    assert S.has_ipv6 and S.if_indextoname(S.if_nametoindex("lo0")) == "lo0"


def test_netstat_and_sysctl_show_ipv6(knet) -> None:  # noqa: F811
    S = knet.socket
    with _udp6(S) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
        rows = [x for x in knet.socket.config.sockets() if x["proto"] == "udp6"]
        assert [x["local"] for x in rows] == [f"[::1]:{port}"]
    sysctl = knet.sys.sysctl
    assert sysctl("net.inet6.ip6.hlim") == 64
    if knet.k.net is not None and knet.mode == "local":
        old = sysctl("net.inet6.ip6.hlim", 33)
        assert old == 64 and sysctl("net.inet6.ip6.hlim") == 33
        with pytest.raises(OSError):
            sysctl("net.inet6.ip6.hlim", 0)
    names = knet.sys.sysctl_names("net.inet6.")
    assert "net.inet6.ip6.forwarding" in names and "net.inet6.udp6.stats.ipackets" in names


def test_a_kernel_without_ipv6() -> None:
    """net_inet without net_inet6 boots; AF_INET6 is EAFNOSUPPORT, names still resolve."""
    import rumpkernel

    k = rumpkernel.boot(components=["net_inet", "net_lo"])
    try:
        S = k.socket
        with pytest.raises(OSError) as e:
            S.socket(S.AF_INET6, S.SOCK_DGRAM)
        assert e.value.errno == errno.EAFNOSUPPORT
        assert [a[0] for a in S.getaddrinfo("localhost", 7, 0, S.SOCK_DGRAM)] == [
            S.AF_INET, S.AF_INET6]
        assert S.config.routes6() == [] and "addrs6" not in S.config.interfaces()[0]
        with pytest.raises(OSError) as e:
            S.config.address6("lo0", "fd00::1/64")
        assert e.value.errno == errno.EAFNOSUPPORT
    finally:
        k.halt()
