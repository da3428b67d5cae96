"""Hijacked network programs: ``python -m http.server`` requests/s and UDP request/response
round trips/s under ``python -m rumpkernel.hijack``, beside the same unmodified programs on the
host's own stack (the reference, measured in the same run).

    python benchmarks/bench_hijack.py [--requests N] [--repeat R]

Rows:
  http.server, host client -> hijacked server over sockin, in-process kernel (--sockin)
  http.server, host client -> hijacked server over sockin, kernel in rump_server
  http.server + client both hijacked to one rump_server, over the kernel's own TCP (when the
      kernel has TCP sockets; the reference is the same two programs on the host)
  UDP echo: server + client both hijacked to one rump_server, the kernel's own UDP
Each HTTP request is a new connection (http.server speaks HTTP/1.0), as ``ab`` without -k.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                    ""))
HTTP_CLIENT = """
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
req = b"GET /index.txt HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n"
deadline = time.monotonic() + 30
while True:                                  # until the server is up
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
t0 = time.perf_counter()
for _ in range(n):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(req)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        assert got.startswith(b"HTTP/1.0 200"), got[:80]
print(time.perf_counter() - t0)
"""
UDP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""
UDP_CLIENT = """
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
dst = ("127.0.0.1", port)
deadline = time.monotonic() + 30
while True:                                  # until the server answers
    s.sendto(b"?", dst)
    try:
        s.recv(10)
        break
    except TimeoutError:
        if time.monotonic() > deadline:
            raise
s.settimeout(5)
t0 = time.perf_counter()
for _ in range(n):
    s.sendto(b"x" * 64, dst)
    s.recv(2048)
print(time.perf_counter() - t0)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hijack(mode: str | None) -> list[str]:
    if mode is None:
        return [sys.executable]
    pre = ["--sockin"] if mode == "sockin" else ["-u", mode]
    return [sys.executable, "-m", "rumpkernel.hijack", *pre]


def run_pair(server: list[str], client: list[str], cwd: str) -> float:
    """Start ``server``, run ``client`` (prints its elapsed seconds), stop the server."""
    srv = subprocess.Popen(server, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        out = subprocess.run(client, cwd=cwd, env=ENV, capture_output=True, text=True,
                             timeout=600)
        if out.returncode:
            raise RuntimeError(out.stderr)
        return float(out.stdout.split()[-1])
    finally:
        srv.terminate()
        srv.wait(30)


def rate(server_mode: str | None, client_mode: str | None, kind: str, n: int, repeat: int,
         tmp: str) -> float:
    times = []
    for _ in range(repeat):
        port = free_port()
        if kind == "http":
            server = [*hijack(server_mode), "-m", "http.server", str(port), "--bind",
                      "127.0.0.1"]
            client = [*hijack(client_mode), os.path.join(tmp, "http_client.py"), str(port),
                      str(n)]
        else:
            server = [*hijack(server_mode), os.path.join(tmp, "udp_server.py"), str(port)]
            client = [*hijack(client_mode), os.path.join(tmp, "udp_client.py"), str(port),
                      str(n)]
        times.append(run_pair(server, client, tmp))
    return n / statistics.median(times)


class RumpServer:
    def __init__(self, tmp: str, name: str, *libs: str) -> None:
        self.url = f"unix://{tmp}/{name}.sock"
        self.proc = subprocess.Popen([sys.executable, "-m", "rumpkernel.apps.rump_server",
                                      *libs, self.url], env=ENV, stderr=subprocess.DEVNULL)
        import rumpkernel

        deadline = time.monotonic() + 30
        while True:
            try:
                rumpkernel.connect(self.url, autofork=False).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def has_tcp(self) -> bool:
        import rumpkernel

        with rumpkernel.connect(self.url, autofork=False) as c:
            try:
                c.socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
            except OSError:
                return False
        return True

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def row(name: str, ours: float, ref: float, unit: str) -> str:
    return (f"{name:<58} ours {ours:9.1f} {unit:<9} ref {ref:9.1f} {unit:<9} "
            f"ratio {ours / ref:6.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    n, rep = a.requests, a.repeat
    with tempfile.TemporaryDirectory(prefix="bench-hijack-") as tmp:
        Path(tmp, "index.txt").write_text("hello from the benchmark\n")
        Path(tmp, "http_client.py").write_text(HTTP_CLIENT)
        Path(tmp, "udp_server.py").write_text(UDP_SERVER)
        Path(tmp, "udp_client.py").write_text(UDP_CLIENT)
        host_http = rate(None, None, "http", n, rep, tmp)
        print(f"host: python -m http.server + client on the host's loopback: {host_http:.1f} "
              "requests/s")
        print(row("http.server hijacked --sockin (in-process kernel)",
                  rate("sockin", None, "http", n, rep, tmp), host_http, "req/s"))
        sk = RumpServer(tmp, "sockin", "-l", "all", "-l", "rumpnet_sockin")
        try:
            print(row("http.server hijacked to rump_server (sockin)",
                      rate(sk.url, None, "http", n, rep, tmp), host_http, "req/s"))
        finally:
            sk.stop()
        st = RumpServer(tmp, "stack")
        try:
            if st.has_tcp():
                print(row("http.server + client hijacked, kernel's own TCP",
                          rate(st.url, st.url, "http", n, rep, tmp), host_http, "req/s"))
            else:
                print("http.server over the kernel's own TCP: skipped (no kernel TCP sockets)")
            host_udp = rate(None, None, "udp", n * 10, rep, tmp)
            print(row("UDP echo, server + client hijacked, kernel's own UDP",
                      rate(st.url, st.url, "udp", n * 10, rep, tmp), host_udp, "rtt/s"))
        finally:
            st.stop()


if __name__ == "__main__":
    main()
