"""Unmodified standard-library network programs under ``python -m rumpkernel.hijack``: an
``http.server`` answering host clients (curl, urllib) over sockin, locally and through
rump_server; ``urllib.request`` fetching from a host HTTP server; an asyncio echo server; a
``socketserver.UDPServer`` and its client as two processes on one kernel's own stack; TCP on the
kernel's own stack once the kernel has it.  The module runs in a private network namespace (root),
so the ports it uses are its own."""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rumpkernel.testing import netns
from tests.hijack.conftest import background, port_owner, run_hijacked, wait_port
from tests.remote.harness import ServerProcess

pytestmark = pytest.mark.skipif(not netns.available(),
                                reason="needs root for a private network namespace")


@pytest.fixture(scope="module", autouse=True)
def modns() -> Iterator[None]:
    with netns.private_netns(ports=(49152, 65535)):
        yield


@pytest.fixture(scope="module")
def sockin_server(tmp_path_factory: pytest.TempPathFactory, modns) -> Iterator[ServerProcess]:
    """A rump_server whose AF_INET/AF_INET6 sockets are sockin's (in this namespace)."""
    srv = ServerProcess(f"unix://{tmp_path_factory.mktemp('sk')}/sock", "-l", "all", "-l",
                        "rumpnet_sockin")
    yield srv
    assert srv.stop() == 0, srv.stderr


@pytest.fixture(scope="module")
def stack_server(tmp_path_factory: pytest.TempPathFactory, modns) -> Iterator[ServerProcess]:
    """A rump_server with the kernel's own network stack."""
    srv = ServerProcess(f"unix://{tmp_path_factory.mktemp('st')}/sock")
    yield srv
    assert srv.stop() == 0, srv.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webroot(tmp_path: Path) -> Path:
    (tmp_path / "index.txt").write_text("served from the host's file system\n")
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 4096)
    return tmp_path


def _mode(request: pytest.FixtureRequest, which: str) -> tuple[str, int | None]:
    """(hijack mode, the pid expected to hold the program's network sockets)."""
    if which == "remote":
        srv = request.getfixturevalue("sockin_server")
        return srv.url, srv.proc.pid
    return "sockin", None


# ---- http.server ------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["local", "remote"])
def test_http_server_over_sockin_answers_host_clients(request, which: str, webroot: Path
                                                      ) -> None:
    mode, owner = _mode(request, which)
    port = free_port()
    with background(mode, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                    "--directory", str(webroot), cwd=webroot) as p:
        wait_port(port, p)
        assert port_owner(port) == (owner or p.pid)       # remote: the kernel's process holds it
        url = f"http://127.0.0.1:{port}"
        assert urllib.request.urlopen(f"{url}/index.txt", timeout=10).read() == \
            b"served from the host's file system\n"
        assert urllib.request.urlopen(f"{url}/big.bin", timeout=10).read() == \
            (webroot / "big.bin").read_bytes()
        listing = urllib.request.urlopen(url + "/", timeout=10).read().decode()
        assert "index.txt" in listing and "big.bin" in listing
        if shutil.which("curl"):
            r = subprocess.run(["curl", "-sS", "--max-time", "10", f"{url}/index.txt"],
                               capture_output=True, text=True, timeout=20)
            assert r.stdout == "served from the host's file system\n", r.stderr
        p.terminate()
        _out, err = p.communicate(timeout=15)
    assert '"GET /big.bin HTTP/1.1" 200' in err


def test_http_server_dual_stack_over_sockin(webroot: Path) -> None:
    port = free_port()
    with background("sockin", "-m", "http.server", str(port), "--bind", "::",
                    "--directory", str(webroot), cwd=webroot) as p:
        wait_port(port, p)
        for host in ("127.0.0.1", "[::1]"):                 # one AF_INET6 kernel socket
            assert urllib.request.urlopen(f"http://{host}:{port}/index.txt",
                                          timeout=10).read().startswith(b"served from")
        p.terminate()
        _out, err = p.communicate(timeout=15)
    assert "::ffff:127.0.0.1" in err and "::1 - -" in err


# ---- urllib -----------------------------------------------------------------------------------
@contextlib.contextmanager
def host_http(root: Path) -> Iterator[int]:
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(root), **kw)
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None  # type: ignore
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)


FETCH = """
import hashlib, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    fd = r.fp.raw._sock.fileno()
    data = r.read()
print(fd, len(data), hashlib.sha256(data).hexdigest())
"""


@pytest.mark.parametrize("which", ["local", "remote"])
def test_urllib_fetches_from_a_host_http_server(request, which: str, webroot: Path,
                                                tmp_path: Path) -> None:
    import hashlib

    mode, _owner = _mode(request, which)
    script = tmp_path / "fetch.py"
    script.write_text(FETCH)
    with host_http(webroot) as port:
        out = run_hijacked(mode, str(script), f"http://127.0.0.1:{port}/big.bin",
                           cwd=tmp_path).stdout.split()
    big = (webroot / "big.bin").read_bytes()
    assert int(out[0]) >= 128                                   # a kernel socket
    assert out[1:] == [str(len(big)), hashlib.sha256(big).hexdigest()]


# ---- asyncio ----------------------------------------------------------------------------------
ECHO = """
import asyncio, sys
async def main(n):
    done = asyncio.Event()
    served = 0
    async def handle(reader, writer):
        nonlocal served
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        served += 1
        if served == n:
            done.set()
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    sock = srv.sockets[0]
    print("listening", sock.getsockname()[1], sock.fileno(), flush=True)
    async with srv:
        await asyncio.wait_for(done.wait(), 30)
    print("served", served, flush=True)
asyncio.run(main(int(sys.argv[1])))
"""


@pytest.mark.parametrize("which", ["local", "remote"])
def test_asyncio_echo_server(request, which: str, tmp_path: Path) -> None:
    mode, _owner = _mode(request, which)
    script = tmp_path / "echo.py"
    script.write_text(ECHO)
    with background(mode, str(script), "3", cwd=tmp_path) as p:
        assert p.stdout is not None
        word, port, fd = p.stdout.readline().split()
        assert word == "listening" and int(fd) >= 128
        clients = [socket.create_connection(("127.0.0.1", int(port)), timeout=10)
                   for _ in range(3)]
        for i, c in enumerate(clients):                       # three at once
            c.sendall(b"line %d\nsecond\n" % i)
        for i, c in enumerate(clients):
            with c, c.makefile("rb") as f:
                assert f.readline() == b"LINE %d\n" % i and f.readline() == b"SECOND\n"
                c.shutdown(socket.SHUT_WR)
        assert p.stdout.readline().split() == ["served", "3"]
        assert p.wait(15) == 0


# ---- UDP on the kernel's own stack --------------------------------------------------------------
UDP_SERVER = """
import socketserver, sys
class Upper(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data.upper(), self.client_address)
with socketserver.UDPServer(("127.0.0.1", int(sys.argv[1])), Upper) as srv:
    print("ready", srv.socket.fileno(), flush=True)
    srv.serve_forever()
"""
UDP_CLIENT = """
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(10)
    for word in sys.argv[2:]:
        s.sendto(word.encode(), ("127.0.0.1", int(sys.argv[1])))
        print(s.recv(100).decode())
"""


def test_udp_socketserver_and_client_on_the_kernel_stack(stack_server, tmp_path: Path) -> None:
    (tmp_path / "srv.py").write_text(UDP_SERVER)
    (tmp_path / "cli.py").write_text(UDP_CLIENT)
    port = 7777
    with background(stack_server.url, "srv.py", str(port), cwd=tmp_path) as p:
        assert p.stdout is not None
        word, fd = p.stdout.readline().split()
        assert word == "ready" and int(fd) >= 128
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as h:
            h.bind(("127.0.0.1", port))                       # the host's port is still free
        out = run_hijacked(stack_server.url, "cli.py", str(port), "hello", "kernel",
                           cwd=tmp_path).stdout
    assert out.split() == ["HELLO", "KERNEL"]


FORK = """
import os, socket
a, b = socket.socketpair()                    # kernel AF_LOCAL: socket=all
pid = os.fork()
if pid == 0:                                  # the child's new connection is a host socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    b.send(b"child %d" % s.getsockname()[1])
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(a.fileno() >= 128, status, a.recv(100).decode())
"""


def test_the_client_librarys_own_sockets_stay_on_the_host(stack_server, tmp_path: Path
                                                          ) -> None:
    """With every family routed (socket=all), a forked child still reaches its server: the
    client library's transport keeps the host's socket module."""
    (tmp_path / "fork.py").write_text(FORK)
    out = run_hijacked(stack_server.url, "fork.py", cwd=tmp_path, policy="socket=all").stdout
    first, status, word, port = out.split()
    assert (first, status, word) == ("True", "0", "child") and int(port) >= 49152


# ---- TCP on the kernel's own stack (when the kernel has it) --------------------------------
def _kernel_has_tcp(srv: ServerProcess) -> bool:
    with srv.connect() as c:
        try:
            c.socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        except OSError:
            return False
    return True


FETCH_WHEN_UP = """
import hashlib, sys, time, urllib.error, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
            fd = r.fp.raw._sock.fileno()
            data = r.read()
        break
    except urllib.error.URLError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
print(fd, len(data), hashlib.sha256(data).hexdigest())
"""


def test_http_server_and_urllib_on_the_kernel_stack(stack_server, webroot: Path,
                                                    tmp_path: Path) -> None:
    """Two unmodified programs, both hijacked to one kernel: http.server and a urllib client
    talk over the kernel's own TCP (its lo0); the host never sees the port."""
    import hashlib

    if not _kernel_has_tcp(stack_server):
        pytest.skip("the kernel's own TCP sockets are not on this branch yet")
    script = tmp_path / "fetch.py"
    script.write_text(FETCH_WHEN_UP)
    port = 8080
    with background(stack_server.url, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                    "--directory", str(webroot), cwd=webroot):
        out = run_hijacked(stack_server.url, str(script), f"http://127.0.0.1:{port}/big.bin",
                           cwd=tmp_path).stdout.split()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), 1).close()   # not on the host
    big = (webroot / "big.bin").read_bytes()
    assert int(out[0]) >= 128
    assert out[1:] == [str(len(big)), hashlib.sha256(big).hexdigest()]
