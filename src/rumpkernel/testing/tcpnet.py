"""Kit for TCP against Linux: a kernel in this process whose virtif TAP lives in a network
namespace of its own, and stdlib servers and clients over kernel sockets.

Interface:
    linux_peer(tag, subnet="10.99.41", mode="local") -> context manager yielding a LinuxPeer:
        .S                 the kernel's socket module; .tcp_stats() its TCP counters
        .k                 a fresh kernel (posix host) with virt0 = <subnet>.2/24 (local
                           mode; mode="remote": a rump_server process in the namespace,
                           reached through sysproxy, and .k is None)
        .ns, .tap          the namespace and TAP names (unique: tag and pid)
        .url               the rump_server's URL (remote mode; hijacked programs can use it)
        .linux, .kernel    the addresses (<subnet>.1 is Linux's, on the TAP in the namespace)
        .linux6, .kernel6  with ``inet6=True``: fd00:99:<x>::1 and ::2 (/64, x the subnet's
                           last number), both settled (no DAD pending) before the yield
        .run(*cmd, timeout=60, check=True, **kw) -> CompletedProcess   ``cmd`` inside the
                           namespace;  .popen(*cmd, **kw) -> Popen  likewise
      Everything is removed on exit (the kernel halted, the namespace deleted), also on error.
      Needs root (CAP_NET_ADMIN): the TAP is created by the kernel in this process's namespace
      and then moved into the new one, which keeps the open descriptor working.
    KernelHTTPServer(S, addr, handler)   http.server.ThreadingHTTPServer on kernel sockets
        (an IPv6 literal in ``addr`` makes it an AF_INET6 server)
        (``S`` a client socket module such as ``k.socket``); .start() serves on a thread,
        .stop() ends it (bounded).  No host DNS lookups.
    KernelHTTPConnection(S, host, port, timeout)   http.client.HTTPConnection over ``S``
    quiet_handler(directory) -> SimpleHTTPRequestHandler class serving ``directory``, no logging
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import http.server
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import rumpkernel


class LinuxPeer:
    def __init__(self, k: Any, S: Any, ns: str, tap: str, subnet: str, mode: str) -> None:
        self.k = k                      # the kernel object (local mode), else None
        self.S = S                      # its socket module (k.socket or conn.socket)
        self.mode = mode
        self.ns = ns
        self.tap = tap
        self.linux = f"{subnet}.1"
        self.kernel = f"{subnet}.2"
        self.linux6 = self.kernel6 = ""
        self.url = ""

    def tcp_stats(self) -> dict[str, int]:
        """The kernel's TCP counters (netstat -s), through the client."""
        return self.S.config.stats()["tcp"]

    def run(self, *cmd: str, timeout: float = 60, check: bool = True,
            **kw: Any) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], timeout=timeout,
                              check=check, **kw)

    def popen(self, *cmd: str, **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd], **kw)


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], capture_output=True, timeout=30, check=check)


@contextlib.contextmanager
def linux_peer(tag: str, subnet: str = "10.99.41", mode: str = "local", offload: str = "on",
               inet6: bool = False, **boot: Any) -> Iterator[LinuxPeer]:
    """See the module docstring; ``mode="remote"``: the kernel is a rump_server process
    inside the namespace (its TAP made there) and the peer talks to it through sysproxy.
    ``offload``: virtif's virtio-net offloads ("on", "csum" or "off")."""
    pid = os.getpid()
    ns = f"rk-{tag}-{pid}"
    tap = f"rk{tag[:5]}{pid % 100000}"[:15]
    _ip("netns", "add", ns)
    k = conn = proc = None
    tmp = tempfile.mkdtemp(prefix=f"rk-{tag}-")
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        if mode == "local":
            k = rumpkernel.boot(hostname=tag, **boot)
            S = k.socket
            S.config.ifconfig("virt0", create=True, linkstr=f"{tap},offload={offload}",
                             inet=f"{subnet}.2/24")
            _ip("link", "set", tap, "netns", ns)
        else:
            from rumpkernel.testing.remote import env, wait_connectable

            url = f"unix://{tmp}/k.sock"
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                                     "rumpkernel.apps.rump_server", "-s", url], env=env(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            conn = wait_connectable(url, proc)
            S = conn.socket
            S.config.ifconfig("virt0", create=True, linkstr=f"{tap},offload={offload}",
                             inet=f"{subnet}.2/24")
        _ip("-n", ns, "addr", "add", f"{subnet}.1/24", "dev", tap)
        _ip("-n", ns, "link", "set", tap, "up")
        peer = LinuxPeer(k, S, ns, tap, subnet, mode)
        if mode != "local":
            peer.url = url
        if inet6:
            _add_inet6(peer, subnet)
        yield peer
    finally:
        if k is not None:
            k.halt()
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _ip("netns", "del", ns, check=False)
        _ip("link", "del", tap, check=False)      # in case it never moved
        shutil.rmtree(tmp, ignore_errors=True)


def _add_inet6(peer: LinuxPeer, subnet: str) -> None:
    import time

    prefix = f"fd00:99:{subnet.rsplit('.', 1)[1]}::"
    peer.linux6, peer.kernel6 = prefix + "1", prefix + "2"
    _ip("-n", peer.ns, "addr", "add", f"{peer.linux6}/64", "dev", peer.tap, "nodad")
    peer.S.config.address6("virt0", f"{peer.kernel6}/64")
    deadline = time.monotonic() + 20
    while True:
        addrs = next(i for i in peer.S.config.interfaces() if i["name"] == "virt0")["addrs6"]
        if len(addrs) >= 2 and all(a["state"] == "preferred" for a in addrs):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"virt0's IPv6 addresses did not settle: {addrs}")
        time.sleep(0.05)


class KernelHTTPServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer whose sockets are kernel sockets (socketserver creates a host socket
    in its constructor: it is replaced before binding)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, S: Any, addr: tuple[str, int], handler: Any) -> None:
        self._S = S
        super().__init__(addr, handler, bind_and_activate=False)
        self.socket.close()
        v6 = ":" in str(addr[0])                # an IPv6 literal: an AF_INET6 socket
        self.address_family = S.AF_INET6 if v6 else S.AF_INET
        self.socket = S.socket(self.address_family, S.SOCK_STREAM)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.socket.close()
            raise
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)   # no getfqdn: no DNS

    def start(self) -> KernelHTTPServer:
        self.socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, name="kernel-http", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._handle_request_noblock()      # accept times out: check the flag again

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.server_close()


class KernelHTTPConnection(http.client.HTTPConnection):
    def __init__(self, S: Any, host: str, port: int, timeout: float = 60) -> None:
        super().__init__(host, port, timeout=timeout)
        self._S = S

    def connect(self) -> None:
        S = self._S
        self.sock = S.create_connection((self.host, self.port), self.timeout)
        self.sock.setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, 1)


def quiet_handler(directory: str) -> Any:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

    return functools.partial(Handler, directory=directory)
