"""IPv6 beside IPv4 on the same path: two kernels on the in-process wire (posix host), UDP
throughput (datagrams/s and MB/s delivered, small and near-MTU datagrams), UDP request/response
transactions per second, ICMP echo round trips -- and TCP stream throughput and RR when the
kernel has SOCK_STREAM for both families.

    python benchmarks/bench_ipv6.py [--repeats R] [--count N]

The reference is IPv4 in the same run: each measurement alternates families across ``R``
rounds (so load swings on these shared machines hit both) and prints medians and the ratio
IPv6 / IPv4 (throughput: above 1 is IPv6 faster; round trips: above 1 is IPv6 slower).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import rumpkernel
from rumpkernel.testing import netkit

V4 = ("10.99.0.1", "10.99.0.2")
V6 = ("fd00:99::1", "fd00:99::2")


def pair() -> tuple:
    ka, kb = rumpkernel.boot(hostname="a"), rumpkernel.boot(hostname="b")
    hub = f"bench6-{os.getpid()}"
    for k, v4, v6 in ((ka, V4[0], V6[0]), (kb, V4[1], V6[1])):
        netkit.plug(k, "wire0", hub, f"{v4}/24")
        k.socket.config.address6("wire0", f"{v6}/64")
    deadline = time.monotonic() + 15
    for k in (ka, kb):                                    # DAD done
        while any(a["state"] == "tentative" for i in k.socket.config.interfaces()
                  for a in i.get("addrs6", ())):
            assert time.monotonic() < deadline, "DAD did not finish"
            time.sleep(0.05)
    for fam, dst in ((ka.socket.AF_INET, V4[1]), (ka.socket.AF_INET6, V6[1])):
        _rr(ka, kb, fam, dst, 3, 64)                      # neighbours resolved
    return ka, kb


def _udp(k, fam):
    S = k.socket
    return S.socket(fam, S.SOCK_DGRAM)


def udp_throughput(ka, kb, fam, dst: str, n: int, size: int) -> tuple[float, float]:
    """(datagrams/s delivered, MB/s delivered) for ``n`` datagrams of ``size`` bytes."""
    rx, tx = _udp(kb, fam), _udp(ka, fam)
    try:
        rx.setsockopt(kb.socket.SOL_SOCKET, kb.socket.SO_RCVBUF, 4 << 20)
        rx.bind(("::" if ":" in dst else "0.0.0.0", 9100))
        rx.settimeout(1.0)
        tx.connect((dst, 9100))
        got = [0]

        def count() -> None:
            try:
                while got[0] < n:
                    rx.recv(65536)
                    got[0] += 1
            except TimeoutError:
                pass

        t = threading.Thread(target=count)
        t.start()
        payload = b"x" * size
        t0 = time.perf_counter()
        for _ in range(n):
            tx.send(payload)
        t.join(60)
        elapsed = time.perf_counter() - t0 - (1.0 if got[0] < n else 0.0)
        return got[0] / elapsed, got[0] * size / elapsed / 1e6
    finally:
        rx.close()
        tx.close()


def _rr(ka, kb, fam, dst: str, n: int, size: int) -> float:
    """UDP request/response transactions per second."""
    srv, cli = _udp(kb, fam), _udp(ka, fam)
    stop = threading.Event()
    try:
        srv.bind(("::" if ":" in dst else "0.0.0.0", 9200))
        srv.settimeout(0.2)

        def echo() -> None:
            while not stop.is_set():
                try:
                    data, addr = srv.recvfrom(65536)
                except TimeoutError:
                    continue
                srv.sendto(data, addr)

        t = threading.Thread(target=echo)
        t.start()
        cli.settimeout(5)
        cli.connect((dst, 9200))
        payload = b"r" * size
        t0 = time.perf_counter()
        for _ in range(n):
            cli.send(payload)
            cli.recv(65536)
        rate = n / (time.perf_counter() - t0)
        stop.set()
        t.join(5)
        return rate
    finally:
        srv.close()
        cli.close()


def ping_rtt(ka, fam, dst: str, n: int) -> float:
    S = ka.socket
    proto, kind = (S.IPPROTO_ICMPV6, 128) if fam == S.AF_INET6 else (S.IPPROTO_ICMP, 8)
    rtts = []
    with S.socket(fam, S.SOCK_DGRAM, proto) as s:
        s.settimeout(2)
        for seq in range(n):
            t0 = time.perf_counter()
            s.sendto(bytes((kind, 0, 0, 0, 0, 0, seq >> 8, seq & 255)) + bytes(56), (dst, 0))
            s.recvfrom(200)
            rtts.append(time.perf_counter() - t0)
    return statistics.median(rtts)


def tcp_supported(k) -> bool:
    S = k.socket
    try:
        for fam in (S.AF_INET, S.AF_INET6):
            S.socket(fam, S.SOCK_STREAM).close()
    except OSError:
        return False
    return True


def tcp_throughput(ka, kb, fam, dst: str, nbytes: int) -> float:
    """MB/s of one stream."""
    A, B = ka.socket, kb.socket
    lst = B.socket(fam, B.SOCK_STREAM)
    lst.bind(("::" if ":" in dst else "0.0.0.0", 9300))
    lst.listen(1)
    got = [0]

    def sink() -> None:
        c, _ = lst.accept()
        with c:
            while True:
                d = c.recv(1 << 16)
                if not d:
                    return
                got[0] += len(d)

    t = threading.Thread(target=sink)
    t.start()
    c = A.create_connection((dst, 9300))
    chunk = b"t" * (1 << 16)
    t0 = time.perf_counter()
    sent = 0
    while sent < nbytes:
        c.sendall(chunk)
        sent += len(chunk)
    c.close()
    t.join(120)
    lst.close()
    return got[0] / (time.perf_counter() - t0) / 1e6


def _row(name: str, v4: list[float], v6: list[float], unit: str, higher_better: bool) -> None:
    a, b = statistics.median(v4), statistics.median(v6)
    ratio = b / a
    sense = "IPv6 faster" if (ratio > 1) == higher_better else "IPv6 slower"
    print(f"{name:<40} IPv4 {a:12.3f} {unit:<8} IPv6 {b:12.3f} {unit:<8} ratio {ratio:5.2f} "
          f"({sense})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--count", type=int, default=5000)
    a = ap.parse_args()
    ka, kb = pair()
    S = ka.socket
    fams = ((S.AF_INET, V4[1]), (S.AF_INET6, V6[1]))
    tests = [
        ("UDP 64-byte datagrams/s delivered", "dgram/s", True,
         lambda f, d: udp_throughput(ka, kb, f, d, a.count, 64)[0]),
        ("UDP 1400-byte throughput", "MB/s", True,
         lambda f, d: udp_throughput(ka, kb, f, d, a.count, 1400)[1]),
        ("UDP 8000-byte (fragmented) throughput", "MB/s", True,
         lambda f, d: udp_throughput(ka, kb, f, d, a.count // 5, 8000)[1]),
        ("UDP request/response (64 B) per s", "trans/s", True,
         lambda f, d: _rr(ka, kb, f, d, a.count // 5, 64)),
        ("ICMP echo round trip (median)", "ms", False,
         lambda f, d: ping_rtt(ka, f, d, 200) * 1000),
    ]
    if tcp_supported(ka):
        tests += [
            ("TCP stream throughput", "MB/s", True,
             lambda f, d: tcp_throughput(ka, kb, f, d, 32 << 20)),
        ]
    else:
        print("TCP: no SOCK_STREAM for both families in this kernel -- skipped")
    try:
        for name, unit, better, fn in tests:
            res: dict[int, list[float]] = {f: [] for f, _ in fams}
            for r in range(a.repeats):
                order = fams if r % 2 == 0 else fams[::-1]
                for f, d in order:
                    res[f].append(fn(f, d))
            _row(name, res[S.AF_INET], res[S.AF_INET6], unit, better)
    finally:
        ka.halt()
        kb.halt()


if __name__ == "__main__":
    main()
