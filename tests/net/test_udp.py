"""UDP and raw sockets in one kernel (over lo0), through local and remote clients."""

from __future__ import annotations

import errno
import socket as hostsock

import pytest


def test_sendto_recvfrom_over_loopback(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as a, S.socket(S.AF_INET, S.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 5000))
        assert a.getsockname() == ("127.0.0.1", 5000)
        assert b.sendto(b"hello", ("127.0.0.1", 5000)) == 5
        data, addr = a.recvfrom(100)
        assert data == b"hello"
        assert b.getsockname() == ("0.0.0.0", addr[1])      # bound by the send, any address
        assert addr[0] == "127.0.0.1" and addr[1] >= 49152
        a.sendto(b"back", addr)
        assert b.recvfrom(100) == (b"back", ("127.0.0.1", 5000))


def test_connected_socket_gets_econnrefused_from_port_unreachable(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", 9))               # nobody listens on 9
        assert s.getpeername() == ("127.0.0.1", 9)
        s.send(b"x")
        s.settimeout(5)
        with pytest.raises(ConnectionRefusedError):
            s.recv(10)
        assert s.getsockopt(S.SOL_SOCKET, S.SO_ERROR) == 0     # reported once
    assert knet.socket.config.stats()["udp"]["noport"] >= 1


def test_unconnected_socket_ignores_port_unreachable(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as s:
        s.sendto(b"x", ("127.0.0.1", 9))
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.recvfrom(10)


def test_bind_errors_and_reuse(knet) -> None:
    S = knet.socket
    a = S.socket(S.AF_INET, S.SOCK_DGRAM)
    b = S.socket(S.AF_INET, S.SOCK_DGRAM)
    try:
        a.bind(("0.0.0.0", 6000))
        with pytest.raises(OSError) as e:
            b.bind(("127.0.0.1", 6000))
        assert e.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError) as e:
            b.bind(("10.1.2.3", 6001))                 # not ours
        assert e.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(OSError) as e:
            a.bind(("0.0.0.0", 6002))                  # bound already
        assert e.value.errno == errno.EINVAL
    finally:
        a.close()
        b.close()
    c = S.socket(S.AF_INET, S.SOCK_DGRAM)
    d = S.socket(S.AF_INET, S.SOCK_DGRAM)
    try:
        for s in (c, d):
            s.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
            assert s.getsockopt(S.SOL_SOCKET, S.SO_REUSEADDR) == 1
            s.bind(("0.0.0.0", 6003))
    finally:
        c.close()
        d.close()


def test_ephemeral_ports_are_distinct(knet) -> None:
    S = knet.socket
    socks = [S.socket(S.AF_INET, S.SOCK_DGRAM) for _ in range(20)]
    try:
        for s in socks:
            s.bind(("0.0.0.0", 0))
        ports = {s.getsockname()[1] for s in socks}
        assert len(ports) == 20 and all(49152 <= p <= 65535 for p in ports)
    finally:
        for s in socks:
            s.close()


def test_flags_peek_trunc_dontwait(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as a, S.socket(S.AF_INET, S.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        with pytest.raises(BlockingIOError):
            a.recv(10, S.MSG_DONTWAIT)
        b.sendto(b"0123456789", a.getsockname())
        b.sendto(b"second", a.getsockname())
        assert a.recv(100, S.MSG_PEEK) == b"0123456789"
        data, _anc, flags, addr = a.recvmsg(4)
        assert data == b"0123" and flags & S.MSG_TRUNC and addr[1] == b.getsockname()[1]
        buf = bytearray(3)
        assert a.recv_into(buf, 3, S.MSG_TRUNC) == 6 and buf == b"sec"   # full length reported


def test_datagram_too_big_and_message_boundaries(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as a, S.socket(S.AF_INET, S.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        with pytest.raises(OSError) as e:
            b.sendto(b"x" * 65508, a.getsockname())
        assert e.value.errno == errno.EMSGSIZE
        big = bytes(range(256)) * 234               # 59,904 bytes: fragments on lo0
        b.sendto(big, a.getsockname())
        b.sendto(b"", a.getsockname())
        assert a.recv(65536) == big
        assert a.recv(10) == b""                    # an empty datagram is a datagram
    st = knet.socket.config.stats()["ip"]
    assert st["fragmented"] >= 1 and st["reassembled"] >= 1


def test_broadcast_needs_so_broadcast(knet) -> None:
    S = knet.socket
    cfg = S.config
    cfg.ifconfig("wire0", create=True, linkstr=f"udpbcast-{knet.mode}-{id(knet)}",
                 inet="10.99.7.1/24")
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as rx, S.socket(S.AF_INET, S.SOCK_DGRAM) as tx:
        rx.bind(("0.0.0.0", 7000))
        with pytest.raises(PermissionError):
            tx.sendto(b"all", ("10.99.7.255", 7000))
        tx.setsockopt(S.SOL_SOCKET, S.SO_BROADCAST, 1)
        tx.sendto(b"all", ("10.99.7.255", 7000))       # looped back to ourselves
        tx.sendto(b"everyone", ("<broadcast>", 7000))
        rx.settimeout(5)
        assert {rx.recv(10), rx.recv(10)} == {b"all", b"everyone"}


def test_connect_unspec_dissolves(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as a, S.socket(S.AF_INET, S.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.connect(a.getsockname())
        with pytest.raises(OSError) as e:
            b.sendto(b"x", a.getsockname())
        assert e.value.errno == errno.EISCONN
        raw = bytes((2, 0)) + bytes(14)                 # AF_UNSPEC
        knet.sys.sys_connect(b.fileno(), raw, 16)
        with pytest.raises(OSError) as e:
            b.getpeername()
        assert e.value.errno == errno.ENOTCONN
        with pytest.raises(OSError) as e:
            b.send(b"x")
        assert e.value.errno == errno.EDESTADDRREQ


def test_options_round_trip(knet) -> None:
    S = knet.socket
    import struct

    with S.socket(S.AF_INET, S.SOCK_DGRAM) as s:
        assert s.getsockopt(S.SOL_SOCKET, S.SO_TYPE) == hostsock.SOCK_DGRAM
        s.setsockopt(S.IPPROTO_IP, S.IP_TTL, 7)
        assert s.getsockopt(S.IPPROTO_IP, S.IP_TTL) == 7
        s.setsockopt(S.IPPROTO_IP, S.IP_TOS, 0x10)
        assert s.getsockopt(S.IPPROTO_IP, S.IP_TOS) == 0x10
        s.setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 12345)
        assert s.getsockopt(S.SOL_SOCKET, S.SO_RCVBUF) == 12345
        s.setsockopt(S.SOL_SOCKET, S.SO_LINGER, struct.pack("ii", 1, 3))
        assert struct.unpack("ii", s.getsockopt(S.SOL_SOCKET, S.SO_LINGER, 8)) == (1, 3)
        s.setsockopt(S.SOL_SOCKET, S.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
        assert struct.unpack("ll", s.getsockopt(S.SOL_SOCKET, S.SO_RCVTIMEO, 16)) == (0, 50_000)
        s.bind(("127.0.0.1", 0))
        with pytest.raises(BlockingIOError):          # SO_RCVTIMEO: EAGAIN after 50 ms
            s.recv(10)
        with pytest.raises(OSError) as e:
            s.setsockopt(S.SOL_SOCKET, S.SO_TYPE, 1)
        assert e.value.errno == errno.ENOPROTOOPT
        with pytest.raises(OSError) as e:
            s.setsockopt(S.IPPROTO_IP, S.IP_TTL, 300)
        assert e.value.errno == errno.EINVAL


def test_timeout_raises_timeouterror(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.05)
        assert s.gettimeout() == 0.05 and s.getblocking()
        with pytest.raises(TimeoutError):
            s.recvfrom(10)


def test_raw_icmp_ping_of_ourselves(knet) -> None:
    from rumpkernel.net.wire import icmp

    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_RAW, S.IPPROTO_ICMP) as r:
        r.settimeout(5)
        r.sendto(icmp.echo(icmp.ECHO, 77, 1, b"payload").emit(), ("127.0.0.1", 0))
        replies = []
        while len(replies) < 1:
            data, addr = r.recvfrom(1500)
            m = icmp.parse(data[20:])
            if m.type == icmp.ECHO_REPLY:
                replies.append(m)
        assert (replies[0].ident, replies[0].seq, replies[0].payload) == (77, 1, b"payload")
        assert addr == ("127.0.0.1", 0)


def test_raw_socket_needs_root(knet) -> None:
    S = knet.socket
    if knet.mode == "local":
        knet.sys.seteuid(1000)
        try:
            with pytest.raises(PermissionError):
                S.socket(S.AF_INET, S.SOCK_RAW, S.IPPROTO_ICMP)
        finally:
            knet.sys.seteuid(0)
    with pytest.raises(OSError) as e:
        S.socket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_UDP)
    assert e.value.errno == errno.EPROTONOSUPPORT


def test_icmp_echo_sockets_need_no_privilege(knet) -> None:
    import struct

    S = knet.socket
    if knet.mode == "local":
        knet.sys.seteuid(1000)
    try:
        with S.socket(S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_ICMP) as s:
            s.settimeout(5)
            s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 7) + b"unprivileged", ("127.0.0.1", 0))
            data, addr = s.recvfrom(100)
            kind, code, _csum, ident, seq = struct.unpack_from("!BBHHH", data)
            assert (kind, code, seq, data[8:]) == (0, 0, 7, b"unprivileged")
            assert ident == s.getsockname()[1] and addr == ("127.0.0.1", 0)
            with pytest.raises(OSError) as e:
                s.sendto(b"\x03\x00" + bytes(6), ("127.0.0.1", 0))    # not an echo request
            assert e.value.errno == errno.EINVAL
    finally:
        if knet.mode == "local":
            knet.sys.seteuid(0)
