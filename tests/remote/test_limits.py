"""rump_server under idle and hostile connections (issue #17, defect 22): idle connections cost
no threads, a connection that does not complete the handshake in time is dropped, past the
connection cap one more is refused with a reason -- and real clients are served throughout."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rumpkernel.client.sysproxy import messages as M
from rumpkernel.client.sysproxy import wire
from tests.remote.harness import ServerProcess, env, wait_for

THREAD_BOUND = 24       # IO thread + main + at most 16 idle pool workers + a few readers


def threads(srv: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{srv.proc.pid}/task"))


def _frames(s: socket.socket, timeout: float = 10.0) -> list[M.Message]:
    """Every frame the server sends until it closes (a bounded wait)."""
    s.settimeout(timeout)
    dec = wire.FrameDecoder()
    out: list[M.Message] = []
    while True:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return out
        dec.feed(data)
        while (f := dec.next()) is not None:
            out.append(M.decode(f))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_idle_connections_cost_no_threads(tmp_path: Path) -> None:
    """200 authenticated idle clients and 100 that never say anything: the server's threads
    stay bounded (on the old server: one thread per connection), and a client that works is
    served among them."""
    srv = ServerProcess(f"unix://{tmp_path}/s", "-l", "tmpfs", "-n", "400",
                        "--handshake-timeout", "30")
    idle, silent = [], []
    try:
        base = threads(srv)
        for _ in range(200):
            idle.append(srv.connect())
        for _ in range(100):
            s = socket.socket(socket.AF_UNIX)
            s.connect(srv.url[len("unix://"):])
            silent.append(s)
        with srv.connect() as c:
            assert wait_for(lambda: c.sys.sysctl("kern.sysproxy.connections") == 301)
            assert c.sys.sysctl("kern.sysproxy.handshaking") == 100
            fd = c.sys.open("/f", os.O_CREAT | os.O_RDWR, 0o644)   # served among them
            assert c.sys.write(fd, b"busy") == 4 and c.sys.pread(fd, 4, 0) == b"busy"
            c.sys.close(fd)
        assert wait_for(lambda: threads(srv) <= THREAD_BOUND), (base, threads(srv))
        assert all(c.sys.getpid() == c.pid for c in idle[::20])      # idle ones still work
        assert wait_for(lambda: threads(srv) <= THREAD_BOUND), (base, threads(srv))
    finally:
        for c in idle:
            c.close()
        for s in silent:
            s.close()
        assert srv.stop() == 0, srv.stderr[-3000:]


def test_handshake_deadline_drops_unauthenticated_tcp(tmp_path: Path) -> None:
    """Unauthenticated tcp connections -- silent, or trickling half a handshake -- are told
    ETIMEDOUT and closed at the deadline, holding no thread meanwhile; an authenticated
    client connects and works while they sit there."""
    secret = b"open sesame"
    (tmp_path / "secret").write_bytes(secret + b"\n")
    srv = ServerProcess(f"tcp://127.0.0.1:{_free_port()}", "-l", "tmpfs",
                        "--handshake-timeout", "1", "--auth-file", str(tmp_path / "secret"),
                        secret=secret)
    host, port = srv.url[len("tcp://"):].rsplit(":", 1)
    hostile: list[socket.socket] = []
    try:
        t0 = time.monotonic()
        for i in range(60):
            s = socket.create_connection((host, int(port)))
            if i % 3 == 0:       # slowloris: the first bytes of a handshake, then nothing
                s.sendall(M.Handshake(wire.VERSION, 0, "x", b"", b"n" * 32, b"m" * 32)
                          .encode()[:9])
            hostile.append(s)
        with srv.connect() as c:
            assert c.sys.getppid() == 1 and c.sys.mkdir("/ok") is None
            assert threads(srv) <= THREAD_BOUND
            for s in hostile:
                got = _frames(s)
                assert isinstance(got[0], M.Banner)
                assert isinstance(got[-1], M.HandshakeReply)
                assert got[-1].errno == 60 and "no handshake within 1 s" in got[-1].detail
            assert 0.9 < time.monotonic() - t0 < 15
            assert c.sys.sysctl("kern.sysproxy.timeouts") == 60
            assert c.sys.sysctl("kern.sysproxy.connections") == 1
            assert c.sys.rmdir("/ok") is None                  # the patient client still works
    finally:
        for s in hostile:
            s.close()
        assert srv.stop() == 0, srv.stderr[-3000:]


def test_connection_cap_refuses_with_a_reason(tmp_path: Path) -> None:
    srv = ServerProcess(f"unix://{tmp_path}/s", "-l", "tmpfs", "-n", "3")
    try:
        a, b = srv.connect(), srv.connect()
        raw = socket.socket(socket.AF_UNIX)               # a pending handshake counts too
        raw.connect(srv.url[len("unix://"):])
        assert wait_for(lambda: a.sys.sysctl("kern.sysproxy.connections") == 3)
        with pytest.raises(OSError) as ei:
            srv.connect()
        assert ei.value.errno == errno.EUSERS
        assert "server full (3 connections, rump_server --max-clients 3)" in str(ei.value)
        refused = socket.socket(socket.AF_UNIX)           # what a raw peer sees: the reason
        refused.connect(srv.url[len("unix://"):])
        got = _frames(refused)
        refused.close()
        assert [type(m) for m in got] == [M.Banner, M.HandshakeReply]
        assert got[1].errno == 68 and "server full" in got[1].detail
        tool = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rumptools", "ls", "-u",
                               srv.url, "/"], env=env(), capture_output=True, text=True,
                              timeout=60)
        assert tool.returncode == 1 and "server full (3 connections" in tool.stderr, tool.stderr
        assert a.sys.getpid() == a.pid and b.sys.getpid() == b.pid   # the others are served
        raw.close()
        b.close()
        assert wait_for(lambda: a.sys.sysctl("kern.sysproxy.connections") == 1)
        with srv.connect() as c:                          # room again
            assert c.sys.getppid() == 1
            assert c.sys.sysctl("kern.sysproxy.refused") == 3
        a.close()
    finally:
        assert srv.stop() == 0, srv.stderr[-3000:]


def test_limits_are_validated() -> None:
    for bad in (["-n", "0"], ["--handshake-timeout", "0"], ["-n", "x"]):
        r = subprocess.run([sys.executable, "-m", "rumpkernel.apps.rump_server", "-s", *bad,
                            "unix:///nonexistent/s"], env=env(), capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2 and "rump_server" in r.stderr, (bad, r.stderr)
