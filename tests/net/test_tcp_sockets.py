"""TCP stream sockets through every call of the socket layer, in one kernel over lo0, through
local and remote (sysproxy) clients: connect/accept, blocking and non-blocking, MSG_PEEK,
MSG_WAITALL, shutdown both ways, poll readiness (POLLHUP, POLLERR), SO_LINGER, SO_REUSEADDR
with TIME_WAIT, keepalive and TCP options, TCP_INFO, buffers and memory, sysctl, netstat,
makefile and asyncio.  Each test that is about sockets runs over IPv4 and IPv6 (``fam``:
127.0.0.1 or ::1, same calls)."""

from __future__ import annotations

import asyncio
import errno
import select
import threading
import time
from typing import Any

import pytest

from rumpkernel.apps import rump_net
from rumpkernel.apps.rump_net_aio import run as aio_run
from rumpkernel.kern.syscall.structs import TCP_INFO
from tests.net.conftest import Fam

IN, OUT, ERR, HUP = select.POLLIN, select.POLLOUT, select.POLLERR, select.POLLHUP
PORT = 8080


V4 = Fam("inet")


def listener(S: Any, port: int = PORT, backlog: int = 8, reuse: bool = True,
             fam: Fam = V4) -> Any:
    srv = S.socket(fam.af(S), S.SOCK_STREAM)
    try:
        if reuse:
            srv.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
        srv.bind((fam.host, port))
        srv.listen(backlog)
    except BaseException:
        srv.close()
        raise
    return srv


def pair(S: Any, port: int = PORT, fam: Fam = V4) -> tuple[Any, Any, Any]:
    """(listener, client, accepted server side)."""
    srv = listener(S, port, fam=fam)
    c = S.create_connection((fam.host, port), timeout=10)
    a, addr = srv.accept()
    assert addr == c.getsockname()
    return srv, c, a


def recv_exact(s: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(min(n - len(buf), 1 << 20))
        assert d, f"EOF after {len(buf)} of {n} bytes"
        buf += d
    return bytes(buf)


def recv_all(s: Any) -> bytes:
    buf = bytearray()
    while True:
        d = s.recv(1 << 20)
        if not d:
            return bytes(buf)
        buf += d


def fill(knet: Any, s: Any, chunk: int = 65536) -> int:
    """Send on non-blocking ``s`` until its buffer and the peer's are full; bytes sent."""
    sent = 0
    while True:
        try:
            sent += s.send(b"z" * chunk)
        except BlockingIOError:
            if not dict(knet.sys.poll([(s.fileno(), OUT)], 300)):
                return sent


def info(s: Any, S: Any) -> dict[str, int]:
    raw = s.getsockopt(S.IPPROTO_TCP, S.TCP_INFO, TCP_INFO.size)
    assert len(raw) == TCP_INFO.size
    return dict(zip(TCP_INFO.names, TCP_INFO.unpack(raw)))


def test_connect_accept_and_bytes_both_ways(knet, fam) -> None:
    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    with srv, c, a:
        assert c.getpeername() == fam.addr(PORT) == a.getsockname()
        assert c.getsockname()[1] >= 49152
        up = bytes(range(256)) * 1024                      # 256 KiB each way, at once
        down = bytes(reversed(range(256))) * 1024
        t = threading.Thread(target=c.sendall, args=(up,))
        t.start()
        a.sendall(down)
        assert recv_exact(a, len(up)) == up
        t.join(30)
        assert recv_exact(c, len(down)) == down
        assert srv.getsockopt(S.SOL_SOCKET, S.SO_ACCEPTCONN) == 1
        assert c.getsockopt(S.SOL_SOCKET, S.SO_TYPE) == S.SOCK_STREAM


def test_connect_refused_blocking_and_nonblocking(knet, fam) -> None:
    S = knet.socket
    with S.socket(fam.af(S), S.SOCK_STREAM) as s, pytest.raises(ConnectionRefusedError):
        s.connect((fam.host, 9))
    with S.socket(fam.af(S), S.SOCK_STREAM) as s:
        s.setblocking(False)
        assert s.connect_ex((fam.host, 9)) == errno.EINPROGRESS
        ready = dict(knet.sys.poll([(s.fileno(), OUT)], 5000))
        assert ready[s.fileno()] & (OUT | ERR)
        assert s.getsockopt(S.SOL_SOCKET, S.SO_ERROR) == errno.ECONNREFUSED
        assert s.getsockopt(S.SOL_SOCKET, S.SO_ERROR) == 0           # read once
        with pytest.raises(OSError) as e:
            s.send(b"x")
        assert e.value.errno == errno.ENOTCONN
    assert knet.socket.config.stats()["tcp"]["out_rsts"] >= 2


def test_nonblocking_connect_accept_and_eagain(knet, fam) -> None:
    S = knet.socket
    srv = listener(S, fam=fam)
    with srv, S.socket(fam.af(S), S.SOCK_STREAM) as c:
        srv.setblocking(False)
        with pytest.raises(BlockingIOError):
            srv.accept()
        c.setblocking(False)
        assert c.connect_ex((fam.host, PORT)) in (0, errno.EINPROGRESS)
        assert dict(knet.sys.poll([(c.fileno(), OUT)], 5000))[c.fileno()] == OUT
        assert c.getsockopt(S.SOL_SOCKET, S.SO_ERROR) == 0
        assert dict(knet.sys.poll([(srv.fileno(), IN)], 5000))[srv.fileno()] == IN
        a, _ = srv.accept()
        with a:
            a.setblocking(False)
            with pytest.raises(BlockingIOError):
                a.recv(10)
            sent = fill(knet, c)
            assert sent > 100_000                       # the peer's receive buffer and ours
            assert not dict(knet.sys.poll([(c.fileno(), OUT)], 0))
            got = 0
            while got < sent:
                if not dict(knet.sys.poll([(a.fileno(), IN)], 5000)):
                    break
                got += len(a.recv(1 << 20))
            assert got == sent
            assert dict(knet.sys.poll([(c.fileno(), OUT)], 5000)) == {c.fileno(): OUT}


def test_peek_waitall_and_fionread(knet, fam) -> None:
    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    with srv, c, a:
        c.sendall(b"0123456789")
        assert a.recv(4, S.MSG_PEEK | S.MSG_WAITALL) in (b"0123",)
        assert a.recv(4, S.MSG_PEEK) == b"0123"
        assert a.recv(4) == b"0123"
        t = threading.Thread(target=lambda: (c.sendall(b"abcdef"), c.sendall(b"ghij")))
        t.start()
        assert a.recv(16, S.MSG_WAITALL) == b"456789abcdefghij"
        t.join(10)
        c.sendall(b"xyz")
        assert dict(knet.sys.poll([(a.fileno(), IN)], 5000))
        c.shutdown(S.SHUT_WR)
        assert a.recv(100, S.MSG_WAITALL) == b"xyz"        # EOF ends a WAITALL read early


def test_shutdown_write_then_read_and_pollhup(knet, fam) -> None:
    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    with srv, c, a:
        c.sendall(b"request")
        c.shutdown(S.SHUT_WR)
        assert recv_all(a) == b"request"                  # EOF after the data
        with pytest.raises(BrokenPipeError):
            c.send(b"more")
        ev = dict(knet.sys.poll([(a.fileno(), IN | OUT)], 0))[a.fileno()]
        assert ev & IN and ev & OUT and not ev & HUP        # half closed: still writable
        a.sendall(b"response")
        a.shutdown(S.SHUT_WR)
        assert recv_all(c) == b"response"
        for s in (a, c):
            ev = dict(knet.sys.poll([(s.fileno(), IN)], 5000))[s.fileno()]
            assert ev & HUP and ev & IN
        assert info(c, S)["state"] in (5, 6)               # FIN_WAIT_2 or TIME_WAIT


def test_shutdown_read_discards(knet, fam) -> None:
    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    with srv, c, a:
        c.sendall(b"unread")
        assert dict(knet.sys.poll([(a.fileno(), IN)], 5000))
        a.shutdown(S.SHUT_RD)
        assert a.recv(10) == b""
        a.sendall(b"still sends")
        assert recv_exact(c, 11) == b"still sends"
    with S.socket(fam.af(S), S.SOCK_STREAM) as s, pytest.raises(OSError) as e:
        s.shutdown(S.SHUT_RDWR)
    assert e.value.errno == errno.ENOTCONN


def test_linger_zero_resets_and_peer_sees_pollerr(knet, fam) -> None:
    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    with srv, c:
        a.setsockopt(S.SOL_SOCKET, S.SO_LINGER, (1).to_bytes(4, "little") + bytes(4))
        a.close()
        assert dict(knet.sys.poll([(c.fileno(), IN)], 5000))      # the RST arrived
        ev = dict(knet.sys.poll([(c.fileno(), IN | OUT)], 0))[c.fileno()]
        assert ev == IN | OUT | ERR | HUP
        with pytest.raises(ConnectionResetError):
            c.recv(10)
        assert c.recv(10) == b""
        with pytest.raises(BrokenPipeError):
            c.send(b"x")
    assert knet.socket.config.stats()["tcp"]["in_rsts"] >= 1


def test_close_with_unread_data_resets(knet, fam) -> None:
    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    with srv, c:
        c.sendall(b"never read")
        assert dict(knet.sys.poll([(a.fileno(), IN)], 5000))
        a.close()
        c.settimeout(5)
        with pytest.raises(ConnectionResetError):
            c.recv(10)


def test_linger_waits_until_data_is_acknowledged(knet, fam) -> None:
    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    with srv, a:
        c.setsockopt(S.SOL_SOCKET, S.SO_LINGER, (1).to_bytes(4, "little")
                     + (5).to_bytes(4, "little"))
        data = b"L" * 300_000                   # more than the send buffer: close must wait
        t = threading.Thread(target=lambda: (c.sendall(data), c.close()))
        t.start()
        assert recv_all(a) == data
        t.join(10)
        assert not t.is_alive()


def test_reuseaddr_and_time_wait(knet, fam) -> None:
    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    a.close()                                   # the server closes first: its side TIME_WAITs
    assert recv_all(c) == b""
    c.close()
    srv.close()
    with S.socket(fam.af(S), S.SOCK_STREAM) as s, pytest.raises(OSError) as e:
        s.bind((fam.host, PORT))
    assert e.value.errno == errno.EADDRINUSE
    with listener(S, fam=fam) as again:                  # SO_REUSEADDR on both: allowed
        assert again.getsockname() == fam.addr(PORT)
        with pytest.raises(OSError) as e, listener(S, fam=fam):
            pass
        assert e.value.errno == errno.EADDRINUSE       # but not over a listener
    want = [(fam.text(PORT), "TIME_WAIT")]       # netstat lists the orphan, settled
    deadline = time.monotonic() + 10
    while True:
        rows = [(r["local"], r["tcp_state"]) for r in knet.socket.config.sockets()
                if r["proto"] == fam.proto]
        if rows == want or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert rows == want


def test_tcp_options(knet, fam) -> None:
    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    with srv, c, a:
        assert c.getsockopt(S.IPPROTO_TCP, S.TCP_NODELAY) == 0
        c.setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, 1)
        assert c.getsockopt(S.IPPROTO_TCP, S.TCP_NODELAY) == 1
        c.setsockopt(S.SOL_SOCKET, S.SO_KEEPALIVE, 1)
        for name, v in ((S.TCP_KEEPIDLE, 30), (S.TCP_KEEPINTVL, 5), (S.TCP_KEEPCNT, 4)):
            c.setsockopt(S.IPPROTO_TCP, name, v)
            assert c.getsockopt(S.IPPROTO_TCP, name) == v
        assert c.getsockopt(S.SOL_SOCKET, S.SO_KEEPALIVE) == 1
        with pytest.raises(OSError) as e:
            c.setsockopt(S.IPPROTO_TCP, S.TCP_KEEPCNT, 0)
        assert e.value.errno == errno.EINVAL
        assert c.getsockopt(S.IPPROTO_TCP, S.TCP_CONGESTION, 16).rstrip(b"\0") == b"cubic"
        c.setsockopt(S.IPPROTO_TCP, S.TCP_CONGESTION, b"newreno")
        assert c.getsockopt(S.IPPROTO_TCP, S.TCP_CONGESTION, 16).rstrip(b"\0") == b"newreno"
        with pytest.raises(FileNotFoundError):
            c.setsockopt(S.IPPROTO_TCP, S.TCP_CONGESTION, b"vegas")
        assert c.getsockopt(S.IPPROTO_TCP, S.TCP_MAXSEG) > 1000   # lo0's MTU is 33184
        c.sendall(b"x" * 100_000)
        recv_exact(a, 100_000)
        i = info(c, S)
        assert i["state"] == 1 and i["snd_cwnd"] >= 10 and i["rto"] >= 200_000
        assert i["rtt"] > 0 and i["snd_mss"] > 1000 and i["options"] & 7 == 7
        assert i["retransmits"] == 0 and i["snd_ssthresh"] > 0
        assert info(srv, S)["state"] == 10


def test_buffer_sizes_autotuning_and_memory(knet, fam) -> None:
    S = knet.socket
    k = knet.k
    srv, c, a = pair(S, fam=fam)
    with srv, c, a:
        rcv0 = a.getsockopt(S.SOL_SOCKET, S.SO_RCVBUF)
        assert rcv0 == k.net.inet.tcp.stack.config.rmem_default
        data = b"A" * (4 << 20)
        t = threading.Thread(target=c.sendall, args=(data,))
        t.start()
        assert recv_exact(a, len(data)) == data
        t.join(30)
        assert rcv0 < a.getsockopt(S.SOL_SOCKET, S.SO_RCVBUF) <= 6 << 20   # autotuned
    srv = listener(S, PORT + 1, fam=fam)
    srv.setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 4096)        # accepted sockets inherit it
    with srv, S.socket(fam.af(S), S.SOCK_STREAM) as c:
        c.setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 8192)
        assert c.getsockopt(S.SOL_SOCKET, S.SO_SNDBUF) == 8192
        c.connect((fam.host, PORT + 1))
        a, _ = srv.accept()
        with a:
            assert a.getsockopt(S.SOL_SOCKET, S.SO_RCVBUF) == 4096
            c.setblocking(False)
            sent = fill(knet, c, 4096)
            assert 8192 <= sent <= 8192 + 4096              # both fixed buffers are small
            held = k.kmem.stats()["by_tag"].get("tcp", 0)
            assert held >= sent
            assert recv_exact(a, sent) == b"z" * sent
    deadline = time.monotonic() + 10               # orphans finish their closes on their own
    while k.kmem.stats()["by_tag"].get("tcp", 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert k.kmem.stats()["by_tag"].get("tcp", 0) == 0


def test_sysctl_tunables_and_counters(knet, fam) -> None:
    S, sys_ = knet.socket, knet.sys
    assert sys_.sysctl("net.inet.tcp.msl") == "30.0"
    assert sys_.sysctl("net.inet.tcp.sack") == 1
    old = sys_.sysctl("net.inet.tcp.initial_cwnd", 4)
    try:
        srv, c, a = pair(S, fam=fam)
        with srv, c, a:
            assert info(c, S)["snd_cwnd"] == 4
    finally:
        sys_.sysctl("net.inet.tcp.initial_cwnd", old)
    sys_.sysctl("net.inet.tcp.congestion_control", "newreno")
    try:
        with S.socket(fam.af(S), S.SOCK_STREAM) as s:
            assert s.getsockopt(S.IPPROTO_TCP, S.TCP_CONGESTION, 16).rstrip(b"\0") == \
                b"newreno"
        with pytest.raises(OSError):
            sys_.sysctl("net.inet.tcp.congestion_control", "bbr")
        with pytest.raises(OSError):
            sys_.sysctl("net.inet.tcp.msl", "soon")
    finally:
        sys_.sysctl("net.inet.tcp.congestion_control", "cubic")
    assert sys_.sysctl("net.inet.tcp.stats.active_opens") >= 1
    assert sys_.sysctl("net.inet.tcp.stats.passive_opens") >= 1


def test_netstat_shows_connections_states_and_counters(knet, fam) -> None:
    import io

    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    with srv, c, a:
        c.sendall(b"q" * 1000)
        assert dict(knet.sys.poll([(a.fileno(), IN)], 5000))
        out = io.StringIO()
        rump_net.netstat(knet, ["-a"], out)
        lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("tcp")]
        states = sorted(ln.split()[-1] for ln in lines)
        assert states == ["ESTABLISHED", "ESTABLISHED", "LISTEN"]
        assert any(ln.split()[1] == "1000" for ln in lines)         # Recv-Q of a
        out = io.StringIO()
        rump_net.netstat(knet, ["-s"], out)
        text = out.getvalue()
        assert "tcp:" in text and " segs_in" in text and " sack_recoveries" in text


def test_listener_close_resets_queued_connections(knet, fam) -> None:
    S = knet.socket
    srv = listener(S, fam=fam)
    c = S.create_connection((fam.host, PORT), timeout=5)
    with c:
        srv.close()                         # c was never accepted
        with pytest.raises(ConnectionResetError):
            c.recv(10)


def test_many_connections_one_listener(knet, fam) -> None:
    S = knet.socket
    srv = listener(S, backlog=128, fam=fam)
    with srv:
        clients = [S.create_connection((fam.host, PORT), timeout=10) for _ in range(40)]
        servers = [srv.accept()[0] for _ in clients]
        by_port = {s.getpeername()[1]: s for s in servers}
        for i, c in enumerate(clients):
            c.sendall(f"client {i}".encode())
        for i, c in enumerate(clients):
            s = by_port[c.getsockname()[1]]
            assert s.recv(100) == f"client {i}".encode()
            s.sendall(b"bye %d" % i)
            assert c.recv(100) == b"bye %d" % i
        for s in clients + servers:
            s.close()


def test_makefile_lines(knet, fam) -> None:
    S = knet.socket
    srv, c, a = pair(S, fam=fam)
    with srv, c, a:
        w = c.makefile("wb")
        r = a.makefile("rb")
        w.write(b"line one\nline two\n")
        w.flush()
        assert r.readline() == b"line one\n" and r.readline() == b"line two\n"
        w.close()
        r.close()


def test_asyncio_open_connection_and_start_server(knet, fam) -> None:
    S = knet.socket

    async def main() -> list[bytes]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, fam.host, 8081)
        out = []
        async with server:
            for i in range(3):
                reader, writer = await asyncio.open_connection(fam.host, 8081)
                writer.write(b"hello %d\n" % i)
                await writer.drain()
                out.append(await reader.read())
                writer.close()
                await writer.wait_closed()
        return out

    assert aio_run(asyncio.wait_for(main(), 30), S) == [b"HELLO 0\n", b"HELLO 1\n",
                                                         b"HELLO 2\n"]


def test_autotuning_stops_at_the_sysctl_limit(knet, fam) -> None:
    S, sys_ = knet.socket, knet.sys
    old = sys_.sysctl("net.inet.tcp.rmem_max", 256 << 10)
    try:
        srv, c, a = pair(S, fam=fam)
        with srv, c, a:
            data = b"B" * (4 << 20)
            t = threading.Thread(target=c.sendall, args=(data,))
            t.start()
            assert recv_exact(a, len(data)) == data
            t.join(30)
            assert a.getsockopt(S.SOL_SOCKET, S.SO_RCVBUF) == 256 << 10
            assert knet.socket.config.stats()["tcp"]["rcvbuf_grow"] >= 1
    finally:
        sys_.sysctl("net.inet.tcp.rmem_max", old)


def test_blocking_send_waits_for_memory_under_a_kernel_limit() -> None:
    """A kernel with 2 MiB of memory: 16 MiB through one connection, a slow reader -- the
    sender waits for acknowledgements to free memory (never ENOBUFS), nothing is lost, and
    the memory comes back."""
    import rumpkernel

    k = rumpkernel.boot(memlimit=2 << 20, hostname="tight")
    try:
        S = k.socket
        srv, c, a = pair(S)
        with srv, c, a:
            data = random_bytes(16 << 20)
            t = threading.Thread(target=c.sendall, args=(data,))
            t.start()
            got = bytearray()
            while len(got) < len(data):
                got += a.recv(8192)
            t.join(30)
            assert not t.is_alive()
            assert bytes(got) == data
            assert k.kmem.stats()["peak"] > 1 << 20         # the limit was what held it back
    finally:
        k.halt()
    assert k.kmem.stats()["in_use"] == 0


def random_bytes(n: int) -> bytes:
    import random

    return random.Random(n).randbytes(n)
