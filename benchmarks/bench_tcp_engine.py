"""TCP engine: checksum methods, engine-only bulk throughput, script-suite speed.

    python benchmarks/bench_tcp_engine.py [--mib N] [--repeat R]

1. The Internet checksum by bignum modulo (ours) against word sums via array, struct and
   memoryview, for a 1460-byte segment and a 64 KiB buffer.
2. Two sans-IO stacks joined by the in-memory link (1 ms one-way delay, no bandwidth limit,
   MSS 1448 with timestamps), moving N MiB one way: wall-clock MB/s of engine work (both
   engines, segment encode/checksum/parse included), median of R repeats, at 0/1/5% loss with
   CUBIC and NewReno.  Reference in the same run: the host kernel's TCP over 127.0.0.1 moving
   the same bytes with a Python send/recv loop.
3. The packetdrill-style script suite: milliseconds per script.
"""

from __future__ import annotations

import argparse
import array
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, row  # noqa: E402

from rumpkernel.net.inet.tcp_config import TcpConfig  # noqa: E402
from rumpkernel.net.wire.checksum import internet_checksum  # noqa: E402
from rumpkernel.testing.tcplink import (  # noqa: E402
    ADDR_A,
    ADDR_B,
    BulkTransfer,
    LinkConfig,
    TcpLinkNet,
)

BIG = sys.byteorder == "little"


def csum_array(buf: bytes) -> int:
    if len(buf) & 1:
        buf += b"\0"
    a = array.array("H", buf)
    if BIG:
        a.byteswap()
    s = sum(a)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def csum_struct(buf: bytes) -> int:
    if len(buf) & 1:
        buf += b"\0"
    s = sum(struct.unpack(f"!{len(buf) // 2}H", buf))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def csum_memoryview(buf: bytes) -> int:
    if len(buf) & 1:
        buf += b"\0"
    s = sum(memoryview(buf).cast("H"))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    s = ~s & 0xFFFF
    return ((s & 0xFF) << 8 | s >> 8) if BIG else s


def bench_checksum() -> None:
    print("== Internet checksum (per call) ==")
    for size in (1460, 65536):
        buf = bytes(range(256)) * (size // 256) + bytes(size % 256)
        ref = internet_checksum(buf)
        n = 20_000 if size < 4096 else 500
        ours = median_time(lambda buf=buf, n=n: [internet_checksum(buf) for _ in range(n)]) / n
        for name, fn in (("array('H') sum", csum_array), ("struct.unpack sum", csum_struct),
                         ("memoryview.cast sum", csum_memoryview)):
            assert fn(buf) == ref, name
            t = median_time(lambda fn=fn, buf=buf, n=n: [fn(buf) for _ in range(n)]) / n
            print(row(f"{size} B: int.from_bytes % 0xffff vs {name}", ours, t, "us", 1e6))


def engine_transfer(nbytes: int, loss: float, cc: str, seed: int = 1) -> float:
    cfg = TcpConfig(congestion_control=cc)
    net = TcpLinkNet(seed, LinkConfig(delay=0.001, loss=loss), cfg, TcpConfig(**{
        "congestion_control": cc}))
    lst = net.b.listen(ADDR_B, 80, 4)
    c = net.a.connect(ADDR_A, 40000, ADDR_B, 80, net.now)
    net.run(cond=lambda: lst.readable, until=60)
    s = lst.accept()
    t0 = time.perf_counter()
    x = BulkTransfer(net, c, s, nbytes)
    net.run(cond=lambda: x.done, until=1e6)
    dt = time.perf_counter() - t0
    assert x.exact
    return dt


def host_transfer(nbytes: int) -> float:
    lst = socket.create_server(("127.0.0.1", 0))
    port = lst.getsockname()[1]
    block = bytes(1 << 16)
    done = threading.Event()

    def sink() -> None:
        conn, _ = lst.accept()
        got = 0
        while got < nbytes:
            d = conn.recv(1 << 20)
            if not d:
                break
            got += len(d)
        conn.close()
        done.set()

    th = threading.Thread(target=sink)
    th.start()
    t0 = time.perf_counter()
    cli = socket.create_connection(("127.0.0.1", port))
    sent = 0
    while sent < nbytes:
        sent += cli.send(block[:min(len(block), nbytes - sent)])
    cli.close()
    done.wait(60)
    dt = time.perf_counter() - t0
    th.join()
    lst.close()
    return dt


def bench_engine(mib: int, repeat: int) -> None:
    n = mib << 20
    host = statistics.median(host_transfer(n) for _ in range(repeat))
    print(f"== engine-only bulk transfer, {mib} MiB one way, median of {repeat} ==")
    print(f"{'host kernel TCP over 127.0.0.1 (reference)':<44} {n / host / 1e6:10.1f} MB/s")
    for cc in ("cubic", "newreno"):
        for loss in (0.0, 0.01, 0.05):
            t = statistics.median(engine_transfer(n, loss, cc, seed=s) for s in range(repeat))
            print(f"{f'engine {cc}, {loss:.0%} loss':<44} {n / t / 1e6:10.1f} MB/s   "
                  f"ratio {host / t:6.3f} of host")


def bench_scripts() -> None:
    from rumpkernel.testing.packetdrill import run_file

    scripts = sorted((ROOT / "tests" / "net" / "tcp" / "scripts").glob("*.pkt"))
    t = median_time(lambda: [run_file(p) for p in scripts], repeat=3)
    print(f"== packetdrill-style suite: {len(scripts)} scripts in {t * 1000:.0f} ms "
          f"({t / len(scripts) * 1000:.1f} ms per script) ==")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bench_checksum()
    bench_engine(args.mib, args.repeat)
    bench_scripts()


if __name__ == "__main__":
    main()
