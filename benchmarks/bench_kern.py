"""Kernel core: boot time, memory per kernel, local null system call.

    python benchmarks/bench_kern.py

Prints boot time of a first and a second kern-only kernel, extra memory per additional kernel
(tracemalloc, kern only and with every component), and the cost of a local null syscall
(getpid) as a ratio against os.getpid() measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import row  # noqa: E402


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


if __name__ == "__main__":
    boot_times()
    memory_per_kernel()
    null_syscall()
