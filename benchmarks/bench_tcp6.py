"""TCP over IPv6 beside TCP over IPv4 on the same paths: bulk throughput and 1-byte
request/response transactions, kernel<->kernel on the in-process wire and kernel<->Linux over
a TAP (no offloads) in a network namespace.

    python benchmarks/bench_tcp6.py [--mib N] [--repeat R] [--seconds S] [--no-tap]

The reference is IPv4 measured in the same run: each round measures both families back to
back (alternating which goes first), so load swings on these shared machines hit both; the
report gives medians of ``--repeat`` rounds (default 5) and the ratio IPv6 / IPv4 (above 1:
IPv6 faster).  Paths:
  wire     two kernels in this process (10.99.53.0/24 and fd00:99:53::/64 on one hub)
  TAP out  this process's kernel -> ``socat`` in the namespace (to /dev/null)
  TAP in   ``socat`` in the namespace (from /dev/zero) -> the kernel
  TAP RR   the kernel's client <-> a Python echo server in the namespace (TCP_NODELAY), one
           byte each way per transaction
The TAP part needs root (skipped otherwise); the namespace is named with the pid and removed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tcp import CHUNK, mbps

import rumpkernel
from rumpkernel.testing import netkit
from rumpkernel.testing.tcpnet import linux_peer

PID = os.getpid()
V4 = ("10.99.53.1", "10.99.53.2")
V6 = ("fd00:99:53::1", "fd00:99:53::2")
ECHO = """
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 7300))
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while d := c.recv(1):
        c.sendall(d)
    c.close()
"""


def connect_retry(S, addr: tuple, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return S.create_connection(addr, timeout=120)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def fam_of(S, host: str) -> int:
    return S.AF_INET6 if ":" in host else S.AF_INET


# ---- kernel <-> kernel on the wire -------------------------------------------------------------
class WirePair:
    def __init__(self) -> None:
        self.a = rumpkernel.boot(hostname="b6-a")
        self.b = rumpkernel.boot(hostname="b6-b")
        hub = f"benchtcp6-{PID}"
        for k, v4, v6 in ((self.a, V4[0], V6[0]), (self.b, V4[1], V6[1])):
            netkit.plug(k, "wire0", hub, f"{v4}/24")
            k.socket.config.address6("wire0", f"{v6}/64")
        deadline = time.monotonic() + 20
        for k in (self.a, self.b):
            while any(a["state"] != "preferred" for i in k.socket.config.interfaces()
                      if i["name"] == "wire0" for a in i["addrs6"]):
                if time.monotonic() > deadline:
                    raise TimeoutError("DAD did not finish")
                time.sleep(0.05)
        netkit.ping(self.a, V4[1])
        self.port = 5100

    def close(self) -> None:
        self.a.halt()
        self.b.halt()

    def _listener(self, host: str):
        self.port += 1
        S = self.b.socket
        return S.create_server((host, self.port), family=fam_of(S, host), backlog=8), self.port

    def bulk(self, host: str, nbytes: int) -> float:
        lst, port = self._listener(host)
        got = [0]

        def sink() -> None:
            c, _ = lst.accept()
            with c:
                while d := c.recv(1 << 20):
                    got[0] += len(d)

        t = threading.Thread(target=sink)
        t.start()
        c = connect_retry(self.a.socket, (host, port))
        t0 = time.perf_counter()
        send_bytes(c, nbytes)
        t.join(300)
        dt = time.perf_counter() - t0          # until the receiver has every byte
        lst.close()
        assert got[0] >= nbytes, (got[0], nbytes)
        return mbps(nbytes, dt)

    def rr(self, host: str, seconds: float) -> float:
        lst, port = self._listener(host)
        Sb = self.b.socket

        def echo() -> None:
            c, _ = lst.accept()
            c.setsockopt(Sb.IPPROTO_TCP, Sb.TCP_NODELAY, 1)
            with c:
                while d := c.recv(1):
                    c.sendall(d)

        t = threading.Thread(target=echo)
        t.start()
        rate = transactions(self.a.socket, (host, port), seconds)
        t.join(30)
        lst.close()
        return rate


def send_bytes(c, nbytes: int) -> None:
    """Send ``nbytes`` on ``c`` and close it."""
    buf = bytes(CHUNK)
    sent = 0
    while sent < nbytes:
        c.sendall(buf)
        sent += len(buf)
    c.close()


def transactions(S, addr: tuple, seconds: float) -> float:
    c = connect_retry(S, addr)
    c.setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, 1)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        c.sendall(b"x")
        if c.recv(1) != b"x":
            raise RuntimeError("echo lost a byte")
        n += 1
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


# ---- kernel <-> Linux over a TAP ----------------------------------------------------------------
def tap_out(peer, host: str, linux: str, nbytes: int) -> float:
    port = 7100 if ":" not in host else 7102
    spec = f"TCP6-LISTEN:{port},bind=[{linux}]" if ":" in linux else \
        f"TCP-LISTEN:{port},bind={linux}"
    sink = peer.popen("socat", "-u", f"{spec},reuseaddr", "OPEN:/dev/null",
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = connect_retry(peer.S, (linux, port))
        t0 = time.perf_counter()
        send_bytes(c, nbytes)
        sink.wait(120)
        return mbps(nbytes, time.perf_counter() - t0)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()


def tap_in(peer, kernel: str, nbytes: int) -> float:
    S = peer.S
    lst = S.create_server((kernel, 7101), family=fam_of(S, kernel))
    got = [0]

    def rx() -> None:
        c, _ = lst.accept()
        with c:
            while d := c.recv(1 << 20):
                got[0] += len(d)

    t = threading.Thread(target=rx)
    t.start()
    dst = f"TCP6:[{kernel}]:7101" if ":" in kernel else f"TCP:{kernel}:7101"
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", f"head -c {nbytes} /dev/zero | ip netns exec {peer.ns} "
                    f"socat -u STDIN {dst}"], timeout=300, check=True)
    t.join(120)
    dt = time.perf_counter() - t0
    lst.close()
    assert got[0] == nbytes, (got[0], nbytes)
    return mbps(nbytes, dt)


# ---- report -------------------------------------------------------------------------------------
def rounds(name: str, unit: str, fn4, fn6, repeat: int, out: list) -> None:
    v4: list[float] = []
    v6: list[float] = []
    for i in range(repeat):
        order = ((fn4, v4), (fn6, v6)) if i % 2 == 0 else ((fn6, v6), (fn4, v4))
        for fn, acc in order:
            acc.append(fn())
    m4, m6 = statistics.median(v4), statistics.median(v6)
    out.append((name, unit, m4, m6))
    print(f"{name:<28}{m4:>12.1f}{m6:>12.1f} {unit:<7}{m6 / m4:>8.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--no-tap", action="store_true")
    a = ap.parse_args()
    nbytes = a.mib << 20
    print(f"TCP over IPv6 beside IPv4: medians of {a.repeat} rounds, {a.mib} MiB per bulk "
          f"run, {a.seconds:.0f} s per RR run")
    print(f"{'':<28}{'IPv4':>12}{'IPv6':>12} {'unit':<7}{'v6/v4':>8}")
    rows: list = []
    pair = WirePair()
    try:
        rounds("wire bulk", "Mbit/s", lambda: pair.bulk(V4[1], nbytes),
               lambda: pair.bulk(V6[1], nbytes), a.repeat, rows)
        rounds("wire 1-byte RR", "trans/s", lambda: pair.rr(V4[1], a.seconds),
               lambda: pair.rr(V6[1], a.seconds), a.repeat, rows)
    finally:
        pair.close()
    if a.no_tap or os.geteuid() != 0:
        print("TAP: skipped (needs root)" if not a.no_tap else "TAP: skipped (--no-tap)")
        return
    with linux_peer("b6tap", subnet="10.99.54", inet6=True) as peer:
        echo = peer.popen("python3", "-c", ECHO, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
        try:
            assert echo.stdout.readline().strip() == b"ready"
            rounds("TAP kernel->Linux bulk", "Mbit/s",
                   lambda: tap_out(peer, peer.kernel, peer.linux, nbytes),
                   lambda: tap_out(peer, peer.kernel6, peer.linux6, nbytes), a.repeat, rows)
            rounds("TAP Linux->kernel bulk", "Mbit/s",
                   lambda: tap_in(peer, peer.kernel, nbytes),
                   lambda: tap_in(peer, peer.kernel6, nbytes), a.repeat, rows)
            rounds("TAP 1-byte RR", "trans/s",
                   lambda: transactions(peer.S, (peer.linux, 7300), a.seconds),
                   lambda: transactions(peer.S, (peer.linux6, 7300), a.seconds), a.repeat,
                   rows)
        finally:
            echo.kill()
            echo.wait()


if __name__ == "__main__":
    main()
