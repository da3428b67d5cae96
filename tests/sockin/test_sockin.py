"""sockin: a kernel's AF_INET/AF_INET6 sockets served by the host's sockets.  A sockin kernel
and plain host programs on 127.0.0.1 talk both ways (TCP and UDP, client and server side),
local and remote clients; stream semantics (non-blocking connect, poll, shutdown, linger, resets,
close with bytes queued, accept queue limits); the component's exclusion of the inet stack."""

from __future__ import annotations

import errno
import select
import socket as hostsock
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import rumpkernel
from rumpkernel.kern import abi as K
from rumpkernel.kern.errno import Errno, KernelError
from rumpkernel.kern.syscall import structs as KS
from tests.sockin.conftest import SOCKIN

IN, OUT = select.POLLIN, select.POLLOUT


@contextmanager
def host_server(handler, kind: int = hostsock.SOCK_STREAM, count: int = 1
                ) -> Iterator[tuple[str, int]]:
    """A plain host server on 127.0.0.1 running ``handler(conn)`` (stream) or
    ``handler(sock)`` (datagram) in a thread; yields its address."""
    srv = hostsock.socket(hostsock.AF_INET, kind)
    srv.bind(("127.0.0.1", 0))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            if kind == hostsock.SOCK_DGRAM:
                handler(srv)
                return
            for _ in range(count):
                c, _ = srv.accept()
                with c:
                    handler(c)
        except BaseException as e:            # reported by the test thread
            errors.append(e)

    if kind == hostsock.SOCK_STREAM:
        srv.listen()
    srv.settimeout(10)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield srv.getsockname()
    finally:
        t.join(15)
        srv.close()
    assert not t.is_alive(), "host server did not finish"
    if errors:
        raise errors[0]


def recv_all(sock) -> bytes:
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


# ---- the component ---------------------------------------------------------------------------
def test_sockin_and_the_inet_stack_exclude_each_other() -> None:
    for names in (["net_inet", "net_sockin"], ["net_sockin", "net_lo"],
                  ["net_sockin", "net_wire"]):
        with pytest.raises(KernelError) as e:
            rumpkernel.boot(components=names)
        assert e.value.errno == Errno.EINVAL and "conflict" in str(e.value)
    from rumpkernel.kern.component import resolve

    every = {c.name for c in resolve(None)}
    assert "net_inet" in every and "net_sockin" not in every
    chosen = {c.name for c in resolve(SOCKIN)}
    assert "net_sockin" in chosen and "vfs" in chosen
    assert not chosen & {"net_inet", "net_inet6", "net_lo", "net_wire", "net_shmif",
                         "net_virtif"}


def test_sockin_needs_a_real_host() -> None:
    from rumpkernel import SimHost

    with pytest.raises(KernelError) as e:
        rumpkernel.boot(SimHost(seed=1), components=["net_sockin"])
    assert e.value.errno == Errno.ENODEV


def test_no_thread_per_socket(knet) -> None:
    S = knet.socket
    before = threading.active_count()
    socks = [S.socket(S.AF_INET, S.SOCK_DGRAM if i % 2 else S.SOCK_STREAM) for i in range(40)]
    try:
        for s in socks[1::2]:
            s.bind(("127.0.0.1", 0))
        assert threading.active_count() == before
        assert knet.k.net.sockin.comp.info()["sockets"] == 40
    finally:
        for s in socks:
            s.close()
    assert knet.k.net.sockin.comp.info()["sockets"] == 0


# ---- talking to host programs ------------------------------------------------------------------
def test_kernel_client_and_host_tcp_server(knet) -> None:
    payload = bytes(range(256)) * 4096                       # 1 MiB each way

    def echo(c) -> None:
        got = recv_all(c)
        c.sendall(got[::-1])

    with host_server(echo) as addr:
        S = knet.socket
        with S.create_connection(addr, timeout=10) as c:
            assert c.getpeername() == addr
            assert c.getsockname()[0] == "127.0.0.1"
            c.sendall(payload)
            c.shutdown(S.SHUT_WR)                            # the host sees EOF ...
            with pytest.raises(BrokenPipeError):
                c.send(b"more")
            assert recv_all(c) == payload[::-1]              # ... and still answers
            ev = dict(knet.sys.poll([(c.fileno(), IN)], 5000))[c.fileno()]
            assert ev & select.POLLHUP and ev & IN           # both ways closed


def test_host_client_and_kernel_tcp_server(knet) -> None:
    S = knet.socket
    with S.create_server(("127.0.0.1", 0)) as ls:
        addr = ls.getsockname()
        results: list[bytes] = []

        def client() -> None:
            with hostsock.create_connection(addr, timeout=10) as h:
                h.sendall(b"ping " * 20000)
                h.shutdown(hostsock.SHUT_WR)
                results.append(recv_all(h))

        t = threading.Thread(target=client)
        t.start()
        ls.settimeout(10)
        c, peer = ls.accept()
        with c:
            assert peer[0] == "127.0.0.1" and c.getpeername() == peer
            data = recv_all(c)
            c.sendall(b"got %d" % len(data))
        t.join(10)
        assert results == [b"got 100000"]


def test_udp_both_ways_with_host_programs(knet) -> None:
    S = knet.socket

    def answer(srv) -> None:
        data, peer = srv.recvfrom(100)
        srv.sendto(data.upper(), peer)

    with host_server(answer, hostsock.SOCK_DGRAM) as addr, \
            S.socket(S.AF_INET, S.SOCK_DGRAM) as u:
        u.settimeout(10)
        u.sendto(b"to the host", addr)
        assert u.recvfrom(100) == (b"TO THE HOST", addr)
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as u, \
            hostsock.socket(hostsock.AF_INET, hostsock.SOCK_DGRAM) as h:
        u.bind(("127.0.0.1", 0))
        h.settimeout(10)
        h.sendto(b"to the kernel", u.getsockname())
        u.settimeout(10)
        data, peer = u.recvfrom(100)
        assert data == b"to the kernel" and peer == ("127.0.0.1", h.getsockname()[1])
        u.sendto(b"back", peer)
        assert h.recv(100) == b"back"


def test_ipv6_datagrams_over_host_loopback(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET6, S.SOCK_DGRAM) as u, \
            hostsock.socket(hostsock.AF_INET6, hostsock.SOCK_DGRAM) as h:
        u.bind(("::1", 0))
        h.settimeout(10)
        h.sendto(b"v6 to the kernel", u.getsockname()[:2])
        u.settimeout(10)
        data, peer = u.recvfrom(100)
        assert data == b"v6 to the kernel" and peer[:2] == ("::1", h.getsockname()[1])
        u.sendto(b"and back", peer)
        assert h.recv(100) == b"and back"


def test_ipv6_stream_over_host_loopback(knet) -> None:
    sys_ = knet.sys
    srv = hostsock.socket(hostsock.AF_INET6, hostsock.SOCK_STREAM)
    srv.bind(("::1", 0))
    srv.listen()
    srv.settimeout(10)
    port = srv.getsockname()[1]
    fd = sys_.sys_socket(K.AF_INET6, K.SOCK_STREAM, 0)
    try:
        raw = KS.pack_sockaddr_in6(hostsock.inet_pton(hostsock.AF_INET6, "::1"), port)
        sys_.sys_connect(fd, raw, len(raw))
        c, peer = srv.accept()
        with c:
            sys_.write(fd, b"over v6")
            assert c.recv(100) == b"over v6"
            buf = bytearray(64)
            n = sys_.sys_getsockname(fd, buf, len(buf))
            fam, addr, lport, _flow, _scope = KS.unpack_sockaddr(bytes(buf[:n]))
            assert (fam, addr, lport) == (K.AF_INET6, bytes(15) + b"\1", peer[1])
    finally:
        sys_.close(fd)
        srv.close()


# ---- stream semantics -------------------------------------------------------------------------
def test_nonblocking_connect_poll_and_refusal(knet) -> None:
    S, sys_ = knet.socket, knet.sys
    with host_server(lambda c: c.sendall(b"hello")) as addr:
        s = S.socket(S.AF_INET, S.SOCK_STREAM)
        with s:
            s.setblocking(False)
            assert s.connect_ex(addr) in (0, errno.EINPROGRESS)
            assert dict(sys_.poll([(s.fileno(), OUT)], 10_000)) == {s.fileno(): OUT}
            assert s.getsockopt(S.SOL_SOCKET, S.SO_ERROR) == 0
            assert dict(sys_.poll([(s.fileno(), IN)], 10_000))[s.fileno()] & IN
            assert s.recv(10) == b"hello"
    dead = hostsock.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()                                            # nobody listens there now
    with S.socket(S.AF_INET, S.SOCK_STREAM) as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
    with S.socket(S.AF_INET, S.SOCK_STREAM) as s:
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sys_.poll([(s.fileno(), OUT)], 10_000)
        assert s.getsockopt(S.SOL_SOCKET, S.SO_ERROR) == errno.ECONNREFUSED
        assert s.getsockopt(S.SOL_SOCKET, S.SO_ERROR) == 0          # read once
        with pytest.raises(OSError) as e:
            s.send(b"x")
        assert e.value.errno == errno.ENOTCONN                       # not connected, not EPIPE


def test_options_reach_the_host_socket(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_STREAM) as s:
        s.setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, 1)
        assert s.getsockopt(S.IPPROTO_TCP, S.TCP_NODELAY) == 1
        s.setsockopt(S.SOL_SOCKET, S.SO_KEEPALIVE, 1)
        assert s.getsockopt(S.SOL_SOCKET, S.SO_KEEPALIVE) == 1
        hs = _host_socket(knet, s)
        assert hs.getsockopt(hostsock.IPPROTO_TCP, hostsock.TCP_NODELAY) == 1
        assert hs.getsockopt(hostsock.SOL_SOCKET, hostsock.SO_KEEPALIVE) == 1
        s.setsockopt(S.IPPROTO_TCP, S.TCP_KEEPIDLE, 77)
        assert hs.getsockopt(hostsock.IPPROTO_TCP, hostsock.TCP_KEEPIDLE) == 77
        with pytest.raises(OSError) as e:
            s.setsockopt(S.IPPROTO_TCP, S.TCP_KEEPCNT, 0)        # the host's range check
        assert e.value.errno == errno.EINVAL
        cc = hs.getsockopt(hostsock.IPPROTO_TCP, hostsock.TCP_CONGESTION, 16).rstrip(b"\0")
        assert s.getsockopt(S.IPPROTO_TCP, S.TCP_CONGESTION, 16).rstrip(b"\0") == cc
        s.setsockopt(S.IPPROTO_TCP, S.TCP_CONGESTION, b"reno")   # bytes pass as they are
        assert hs.getsockopt(hostsock.IPPROTO_TCP, hostsock.TCP_CONGESTION, 16)[:4] == b"reno"
        info = s.getsockopt(S.IPPROTO_TCP, S.TCP_INFO, 8)        # Linux's layout, as ours
        assert len(info) == 8 and info[0] == 7                   # TCP_CLOSE: not connected
        with pytest.raises(OSError) as e:                           # BSD's, not passed on
            knet.sys.sys_getsockopt(s.fileno(), K.IPPROTO_TCP, K.TCP_KEEPINIT, bytearray(4), 4)
        assert e.value.errno == errno.ENOPROTOOPT


def _host_socket(knet, s) -> hostsock.socket:
    """The host socket behind kernel socket ``s`` (white box)."""
    with knet.k.net.lock:
        for so in knet.k.net.sockets.values():
            if so.pcb is not None and so.proto.name == "tcp":
                return so.pcb.hs.sock
    raise AssertionError("no sockin stream socket")


def test_linger_zero_resets_and_a_reset_reaches_the_kernel(knet) -> None:
    S = knet.socket
    seen: list[str] = []

    def peer(c) -> None:
        try:
            c.recv(10)
            seen.append("eof")
        except ConnectionResetError:
            seen.append("reset")

    with host_server(peer) as addr:
        s = S.create_connection(addr, timeout=10)
        s.setsockopt(S.SOL_SOCKET, S.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert seen == ["reset"]

    def resetter(c) -> None:
        c.setsockopt(hostsock.SOL_SOCKET, hostsock.SO_LINGER, struct.pack("ii", 1, 0))

    with host_server(resetter) as addr:
        s = S.socket(S.AF_INET, S.SOCK_STREAM)
        with s:
            try:
                s.connect(addr)
            except ConnectionResetError:       # the reset came before the sockin thread saw
                pass                           # the handshake complete: connect reports it
            else:
                with pytest.raises(ConnectionResetError):
                    while s.recv(10):
                        pass
                assert s.recv(10) == b""                   # reported once, then end of file


def test_bytes_queued_at_close_still_arrive(knet) -> None:
    S = knet.socket
    payload = b"z" * (3 << 20)
    got: list[int] = []

    def slow(c) -> None:
        import time

        time.sleep(0.3)                                    # the kernel closes first
        got.append(len(recv_all(c)))

    with host_server(slow) as addr:
        s = S.create_connection(addr, timeout=10)
        s.setblocking(False)
        sent = 0
        while sent < len(payload):
            try:
                sent += s.send(payload[sent:])
            except BlockingIOError:
                break
        s.close()
    assert got == [sent] and sent > 0


def test_accept_queue_full_waits_instead_of_refusing(knet) -> None:
    from tests.remote.harness import wait_for

    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_STREAM) as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)                       # kernel queue: 2; the host's holds 2 more
        hosts = [hostsock.create_connection(ls.getsockname(), timeout=10) for _ in range(4)]
        try:
            for i, h in enumerate(hosts):
                h.sendall(b"%d" % i)
            head = next(so for so in knet.k.net.sockets.values() if so.listening)
            assert wait_for(lambda: len(head.q) == 2 and head.pcb.paused, 10)
            ls.settimeout(10)
            seen = set()
            for _ in hosts:
                c, _ = ls.accept()
                with c:
                    c.settimeout(10)
                    seen.add(c.recv(10))
            assert seen == {b"%d" % i for i in range(4)}
        finally:
            for h in hosts:
                h.close()


def test_kernel_rules_apply(knet) -> None:
    S = knet.socket
    with pytest.raises(OSError) as e:
        S.socket(S.AF_INET, S.SOCK_RAW, S.IPPROTO_ICMP)
    assert e.value.errno == errno.EPROTONOSUPPORT
    with pytest.raises(OSError) as e:
        S.socket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_UDP)
    assert e.value.errno == errno.EPROTONOSUPPORT
    if knet.mode == "local":
        knet.sys.seteuid(1000)
        try:
            with S.socket(S.AF_INET, S.SOCK_STREAM) as s, pytest.raises(PermissionError):
                s.bind(("127.0.0.1", 80))                  # the kernel's credentials decide
        finally:
            knet.sys.seteuid(0)


# ---- datagram semantics the suite checks with the kernel stack's counters ----------------------
def test_connected_udp_gets_econnrefused(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", 9))
        s.send(b"x")
        s.settimeout(5)
        with pytest.raises(ConnectionRefusedError):
            s.recv(10)
        assert s.getsockopt(S.SOL_SOCKET, S.SO_ERROR) == 0


def test_datagram_sizes_and_boundaries(knet) -> None:
    S = knet.socket
    with S.socket(S.AF_INET, S.SOCK_DGRAM) as a, S.socket(S.AF_INET, S.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        with pytest.raises(OSError) as e:
            b.sendto(b"x" * 65508, a.getsockname())
        assert e.value.errno == errno.EMSGSIZE
        big = bytes(range(256)) * 234
        b.sendto(big, a.getsockname())
        b.sendto(b"", a.getsockname())
        a.settimeout(5)
        assert a.recv(65536) == big
        assert a.recv(10) == b""


def test_halt_drains_what_closed_sockets_queued(hostns) -> None:
    k = rumpkernel.boot(components=SOCKIN)
    got: list[int] = []

    def slow(c) -> None:
        import time

        time.sleep(0.3)
        got.append(len(recv_all(c)))

    with host_server(slow) as addr:
        s = k.socket.create_connection(addr, timeout=10)
        s.setblocking(False)
        sent = 0
        try:
            while True:
                sent += s.send(b"q" * 65536)
        except BlockingIOError:
            pass
        s.close()
        k.halt()
    assert got == [sent]


def test_close_with_unread_data_and_unaccepted_connections_reset(knet) -> None:
    S = knet.socket
    seen: list[str] = []

    def peer(c) -> None:
        c.sendall(b"unread by the kernel's user")
        c.settimeout(10)
        try:
            seen.append("eof" if c.recv(10) == b"" else "data")
        except ConnectionResetError:
            seen.append("reset")

    with host_server(peer) as addr:
        s = S.create_connection(addr, timeout=10)
        assert dict(knet.sys.poll([(s.fileno(), IN)], 10_000))     # the bytes arrived
        s.close()                                                   # ... and were not read
    assert seen == ["reset"]
    with S.socket(S.AF_INET, S.SOCK_STREAM) as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen()
        h = hostsock.create_connection(ls.getsockname(), timeout=10)
        with h:
            head = next(so for so in knet.k.net.sockets.values() if so.listening)
            from tests.remote.harness import wait_for

            assert wait_for(lambda: len(head.q) == 1, 10)
            ls.close()                                              # h was never accepted
            with pytest.raises(ConnectionResetError):
                h.recv(10)
