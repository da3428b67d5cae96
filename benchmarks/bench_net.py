"""Network faction: UDP datagrams/s and ping round trips between two kernels, over the
in-process wire and over shmif, beside the host's own stack; a chain of kernel processes.

    python benchmarks/bench_net.py [--chain N] [--count C]

References measured in the same run: the host's UDP over its loopback (datagrams/s), and the
host's ping over a veth pair between two network namespaces (needs root; skipped otherwise).
The chain (default 16 kernel processes, ``--chain 255`` for the dissertation's cluster) reports
its boot time and the end-to-end ping time, and the time per hop beside the dissertation's
15.5 us (Figure 4.15, C on 2011 hardware).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import rumpkernel
from rumpkernel.testing import netkit

N_DGRAMS = 20000
PAYLOAD = b"x" * 64


def _pair(kind: str, tmp: str) -> tuple:
    ka, kb = rumpkernel.boot(hostname="a"), rumpkernel.boot(hostname="b")
    link = f"bench-{os.getpid()}" if kind == "wire" else os.path.join(tmp, "bus")
    netkit.plug(ka, f"{kind}0", link, "10.99.0.1/24")
    netkit.plug(kb, f"{kind}0", link, "10.99.0.2/24")
    netkit.ping(ka, "10.99.0.2")                    # ARP resolved before measuring
    return ka, kb


def _udp_rate(send, recv_count, n: int) -> tuple[float, float]:
    got = [0]
    done = threading.Event()

    def rx() -> None:
        got[0] = recv_count(n, done)

    t = threading.Thread(target=rx)
    t.start()
    t0 = time.perf_counter()
    for _ in range(n):
        send()
    sent_s = time.perf_counter() - t0
    done.wait(30)
    elapsed = time.perf_counter() - t0
    t.join(35)
    return n / sent_s, got[0] / elapsed


def udp_kernels(kind: str, tmp: str) -> tuple[float, float]:
    ka, kb = _pair(kind, tmp)
    try:
        A, B = ka.socket, kb.socket
        rx = B.socket(B.AF_INET, B.SOCK_DGRAM)
        rx.setsockopt(B.SOL_SOCKET, B.SO_RCVBUF, 4 << 20)
        rx.bind(("0.0.0.0", 9000))
        rx.settimeout(1.0)
        tx = A.socket(A.AF_INET, A.SOCK_DGRAM)
        tx.connect(("10.99.0.2", 9000))

        def count(n: int, done: threading.Event) -> int:
            c = 0
            try:
                while c < n:
                    rx.recv(2048)
                    c += 1
            except TimeoutError:
                pass
            done.set()
            return c

        return _udp_rate(lambda: tx.send(PAYLOAD), count, N_DGRAMS)
    finally:
        ka.halt()
        kb.halt()


def udp_host() -> tuple[float, float]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(1.0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())

    def count(n: int, done: threading.Event) -> int:
        c = 0
        try:
            while c < n:
                rx.recv(2048)
                c += 1
        except TimeoutError:
            pass
        done.set()
        return c

    try:
        return _udp_rate(lambda: tx.send(PAYLOAD), count, N_DGRAMS)
    finally:
        rx.close()
        tx.close()


def ping_kernels(kind: str, tmp: str, count: int) -> float:
    ka, kb = _pair(kind, tmp)
    try:
        rtts = [r for r in netkit.ping(ka, "10.99.0.2", count) if r is not None]
        return statistics.median(rtts)
    finally:
        ka.halt()
        kb.halt()


def ping_veth(count: int) -> float | None:
    if os.geteuid() != 0:
        return None
    a, b = f"rkbA{os.getpid()}", f"rkbB{os.getpid()}"
    run = lambda *c: subprocess.run(c, capture_output=True, text=True, timeout=60)  # noqa: E731
    try:
        for ns in (a, b):
            run("ip", "netns", "add", ns)
        run("ip", "link", "add", "rkv0", "netns", a, "type", "veth", "peer", "name", "rkv1",
            "netns", b)
        for ns, dev, ip in ((a, "rkv0", "10.99.0.1/24"), (b, "rkv1", "10.99.0.2/24")):
            run("ip", "-n", ns, "addr", "add", ip, "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
        r = run("ip", "netns", "exec", a, "ping", "-c", str(count), "-i", "0.01", "10.99.0.2")
        m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
        return float(m.group(1)) / 1000 if m else None
    finally:
        for ns in (a, b):
            run("ip", "netns", "del", ns)


def chain(n: int, tmp: str, count: int) -> None:
    from rumpkernel.testing.netchain import Chain

    with Chain(n, tmp, boot_timeout=600) as ch:
        rtts = [r for r in ch.ping(count=count, timeout=60) if r is not None]
        print(f"chain of {n} kernel processes: boot {ch.boot_seconds:.2f} s, configure "
              f"{ch.config_seconds:.2f} s")
        if not rtts:
            print("  no reply came back")
            return
        med = statistics.median(rtts)
        hops = 2 * (n - 1)
        print(f"  end-to-end ping median {med * 1000:.2f} ms over {n - 1} hops each way: "
              f"{med / hops * 1e6:.0f} us per hop (dissertation, C: 15.5 us per hop)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain", type=int, default=16)
    ap.add_argument("--count", type=int, default=50)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        h_sent, h_got = udp_host()
        print(f"{'UDP 64-byte datagrams/s':<34}{'sent':>12}{'delivered':>12}   vs host loopback")
        print(f"{'  host (Linux loopback)':<34}{h_sent:12.0f}{h_got:12.0f}")
        for kind in ("wire", "shmif"):
            s, g = udp_kernels(kind, tmp)
            print(f"{'  two kernels, ' + kind:<34}{s:12.0f}{g:12.0f}   ratio "
                  f"{h_got / max(g, 1):6.1f}x slower")
        ref = ping_veth(a.count)
        print(f"{'ping round trip (median)':<34}{'':>12}{'ms':>12}")
        if ref is not None:
            print(f"{'  host (Linux ping over veth)':<34}{'':>12}{ref * 1000:12.3f}")
        else:
            print("  host (Linux ping over veth): needs root, skipped")
        for kind in ("wire", "shmif"):
            rtt = ping_kernels(kind, tmp, a.count)
            extra = f"   ratio {rtt / ref:6.1f}x" if ref else ""
            print(f"{'  two kernels, ' + kind:<34}{'':>12}{rtt * 1000:12.3f}{extra}")
        if a.chain >= 2:
            chain(a.chain, tmp, min(a.count, 10))


if __name__ == "__main__":
    main()
