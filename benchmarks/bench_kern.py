"""Kernel core: boot time, memory per kernel, local null system call, poll scaling.

    python benchmarks/bench_kern.py

Prints boot time of a first and a second kern-only kernel, extra memory per additional kernel
(tracemalloc, kern only and with every component), and the cost of a local null syscall
(getpid) as a ratio against os.getpid() measured in the same run, and the cost of waking a
poll over 1,000 idle pipes and one busy one (a writer thread feeds the busy pipe; the poller
reads it), beside the same poll over the one busy pipe alone.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import row


def boot_times() -> None:
    t0 = time.perf_counter()
    import rumpkernel

    k1 = rumpkernel.boot(components=())
    first = time.perf_counter() - t0
    seconds = []
    kernels = [k1]
    for _ in range(20):
        t0 = time.perf_counter()
        kernels.append(rumpkernel.boot(components=()))
        seconds.append(time.perf_counter() - t0)
    print(f"boot, first kernel (kern only, imports included)   {first * 1000:8.2f} ms")
    print(f"boot, further kernels (kern only, median of 20)    "
          f"{statistics.median(seconds) * 1000:8.2f} ms   target <= 5 ms")
    full = []
    for _ in range(10):
        t0 = time.perf_counter()
        kernels.append(rumpkernel.boot())
        full.append(time.perf_counter() - t0)
    print(f"boot, further kernels (all components, median)     "
          f"{statistics.median(full) * 1000:8.2f} ms")
    for k in kernels:
        k.halt()


def memory_per_kernel() -> None:
    import rumpkernel

    for label, comps in (("kern only", ()), ("all components", None)):
        rumpkernel.boot(components=comps).halt()  # imports and caches warm
        tracemalloc.start()
        base = tracemalloc.take_snapshot()
        ks = [rumpkernel.boot(components=comps) for _ in range(10)]
        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(s.size_diff for s in snap.compare_to(base, "filename"))
        print(f"memory per additional kernel ({label:<14})        {grown / 10 / 1024:8.1f} KiB"
              f"   target <= 1024 KiB")
        for k in ks:
            k.halt()


def null_syscall() -> None:
    import rumpkernel

    k = rumpkernel.boot(components=())
    getpid = k.sys.getpid
    n = 200_000
    ours, ref = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            getpid()
        ours.append((time.perf_counter() - t0) / n)
        t0 = time.perf_counter()
        for _ in range(n):
            os.getpid()
        ref.append((time.perf_counter() - t0) / n)
    print(row("local null syscall (getpid) vs os.getpid()", statistics.median(ours),
              statistics.median(ref), "us", 1e6), "  target <= 2 us")
    k.halt()


def poll_scaling() -> None:
    """Round trips: the main thread polls, a helper thread writes one byte when told; with 1,000
    idle pipes beside the busy one, then with the busy one alone."""
    import select
    import threading

    import rumpkernel

    k = rumpkernel.boot(components=())
    idle = [k.sys.pipe() for _ in range(1000)]
    r, w = k.sys.pipe()
    go = threading.Semaphore(0)
    stop = False

    def writer() -> None:
        while True:
            go.acquire()
            if stop:
                return
            k.sys.write(w, b"x")

    t = threading.Thread(target=writer, daemon=True)
    t.start()

    def rounds(fds: list, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            go.release()
            k.sys.poll(fds, -1)
            k.sys.read(r, 1)
        return (time.perf_counter() - t0) / n

    many = [(fd, select.POLLIN) for fd, _ in idle] + [(r, select.POLLIN)]
    one = [(r, select.POLLIN)]
    big, small = [], []
    for _ in range(5):
        big.append(rounds(many, 300))
        small.append(rounds(one, 300))
    print(row("poll wake-up: 1,000 idle + 1 busy pipe vs 1 pipe", statistics.median(big),
              statistics.median(small), "us", 1e6))
    stop = True
    go.release()
    t.join()
    for a, b in [*idle, (r, w)]:
        k.sys.close(a)
        k.sys.close(b)
    k.halt()


if __name__ == "__main__":
    boot_times()
    memory_per_kernel()
    null_syscall()
    poll_scaling()
