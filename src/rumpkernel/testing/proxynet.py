"""Kit for rump_tcpproxy against Linux: two network namespaces the caller names uniquely --
"srv", where the proxy process runs and the host services listen on 127.0.0.1, and "cli",
where the proxy's TAP ends up and the untrusted clients live.  The clients can reach only
the kernel's address on the TAP; everything they say reaches the services through the proxy.

Interface:
    proxy_net(tag, proxy_args, subnet="10.99.61") -> context manager yielding a ProxyNet:
        runs ``rump_tcpproxy --tap TAP --addr <subnet>.2/24 *proxy_args`` in "srv" (the
        arguments carry the ``--listen`` mappings), waits for its "listening" lines, moves the
        TAP into "cli" and gives Linux <subnet>.1/24 there.  ``proxy_args=None``: the caller
        starts it: ``.start_proxy(args, configure=False)`` leaves out ``--addr`` and the move.
        .tap / .srv_ns / .cli_ns  the names (unique: tag and pid)
        .kernel / .linux          the kernel's and the client side's addresses
        .srv(*cmd, **popen_kw) / .cli(*cmd, **popen_kw) -> Popen   a process in a namespace
                                  (killed on exit if still running)
        .run_cli(*cmd, timeout=60) -> CompletedProcess (text, captured)
        .service(*args) -> Popen  ``python -m rumpkernel.testing.proxypeer serve ...`` in srv,
                                  after it printed "ready"
        .http_server(directory, port) -> Popen   Linux's http.server on 127.0.0.1 in srv
                                  (backlog 512: proxypeer's "serve http")
        .stats(timeout=10) -> dict   SIGUSR1, then the next statistics line parsed into ints
                                  (active, accepted, refused, failed, reset, idle, closed,
                                  peak, bytes_in, bytes_out, kernel_sockets)
        .wait_stats(pred, timeout) -> dict   polls .stats() until pred(stats)
        .stop(sig=SIGTERM, timeout=30) -> (returncode, seconds)
        .out / .err               the proxy's stdout / stderr lines so far
      Everything is removed on exit (processes killed, namespaces deleted), also on error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

PY = sys.executable


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], capture_output=True, timeout=30, check=check)


def _collect(stream: Any, lines: list[str], cond: threading.Condition) -> None:
    for raw in stream:
        with cond:
            lines.append(raw.rstrip("\n"))
            cond.notify_all()
    stream.close()


class ProxyNet:
    def __init__(self, tag: str, subnet: str) -> None:
        pid = os.getpid()
        self.srv_ns = f"rk-{tag}-s-{pid}"
        self.cli_ns = f"rk-{tag}-c-{pid}"
        self.tap = f"rkp{tag[:4]}{pid % 100000}"[:15]
        self.kernel = f"{subnet}.2"
        self.linux = f"{subnet}.1"
        self.subnet = subnet
        self.procs: list[subprocess.Popen] = []
        self.proxy: subprocess.Popen | None = None
        self.out: list[str] = []
        self.err: list[str] = []
        self.cond = threading.Condition()

    # ---- processes ----------------------------------------------------------------------------
    def _popen(self, ns: str, cmd: tuple[str, ...], kw: dict[str, Any]) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)
        self.procs.append(p)
        return p

    def srv(self, *cmd: str, **kw: Any) -> subprocess.Popen:
        return self._popen(self.srv_ns, cmd, kw)

    def cli(self, *cmd: str, **kw: Any) -> subprocess.Popen:
        return self._popen(self.cli_ns, cmd, kw)

    def run_cli(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.cli_ns, *cmd], capture_output=True,
                              text=True, timeout=timeout)

    def service(self, *args: str) -> subprocess.Popen:
        p = self.srv(PY, "-m", "rumpkernel.testing.proxypeer", "serve", *args,
                     stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"service {args} did not start: {line!r}")
        return p

    def http_server(self, directory: str, port: int, addr: str = "127.0.0.1"
                    ) -> subprocess.Popen:
        return self.service("http", f"{addr}:{port}", directory)

    # ---- the proxy ----------------------------------------------------------------------------
    def start_proxy(self, args: list[str], timeout: float = 30, configure: bool = True) -> None:
        """``configure=False``: no ``--addr``, and the TAP stays in "srv" as it is."""
        cmd = [PY, "-m", "rumpkernel.apps.rump_tcpproxy", "--tap", self.tap, *args]
        if configure:
            cmd[5:5] = ["--addr", f"{self.kernel}/24"]
        self.proxy = self.srv(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for stream, lines in ((self.proxy.stdout, self.out), (self.proxy.stderr, self.err)):
            threading.Thread(target=_collect, args=(stream, lines, self.cond),
                             daemon=True).start()
        want = sum(1 for a in args if a == "--listen")
        ok = self._wait(lambda: sum("listening" in ln for ln in self.err) >= want, timeout)
        if not ok:
            raise RuntimeError(f"rump_tcpproxy did not start: {self.err}")
        if not configure:
            return
        _ip("-n", self.srv_ns, "link", "set", self.tap, "netns", self.cli_ns)
        _ip("-n", self.cli_ns, "addr", "add", f"{self.linux}/24", "dev", self.tap)
        _ip("-n", self.cli_ns, "link", "set", self.tap, "up")

    def _wait(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0 or (self.proxy is not None and self.proxy.poll() is not None
                                 and not pred()):
                    return pred()
                self.cond.wait(min(left, 0.2))
        return True

    def stats(self, timeout: float = 10) -> dict[str, int]:
        assert self.proxy is not None
        with self.cond:
            before = len(self.out)
        self.proxy.send_signal(signal.SIGUSR1)
        if not self._wait(lambda: any(" stats " in ln for ln in self.out[before:]), timeout):
            raise RuntimeError(f"no statistics from rump_tcpproxy: {self.err}")
        line = next(ln for ln in self.out[before:] if " stats " in ln)
        return parse_stats(line)

    def wait_stats(self, pred: Callable[[dict[str, int]], bool],
                   timeout: float = 30) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats()
            if pred(st) or time.monotonic() > deadline:
                return st
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float]:
        assert self.proxy is not None
        t0 = time.monotonic()
        self.proxy.send_signal(sig)
        rc = self.proxy.wait(timeout)
        elapsed = time.monotonic() - t0
        self._wait(lambda: any(" stats " in ln for ln in self.out), 5)
        return rc, elapsed

    def cleanup(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
        _ip("netns", "del", self.cli_ns, check=False)
        _ip("netns", "del", self.srv_ns, check=False)


def parse_stats(line: str) -> dict[str, int]:
    words = line.split(" stats ", 1)[1].split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}


@contextlib.contextmanager
def proxy_net(tag: str, proxy_args: list[str] | None, subnet: str = "10.99.61"
              ) -> Iterator[ProxyNet]:
    net = ProxyNet(tag, subnet)
    _ip("netns", "add", net.srv_ns)
    try:
        _ip("netns", "add", net.cli_ns)
        for ns in (net.srv_ns, net.cli_ns):
            _ip("-n", ns, "link", "set", "lo", "up")
        if proxy_args is not None:
            net.start_proxy(proxy_args)
        yield net
    finally:
        net.cleanup()
