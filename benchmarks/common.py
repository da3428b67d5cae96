"""Shared timing helpers: every benchmark prints the median of several repeats and a ratio
against a reference measured in the same run (these machines are noisy)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(name: str, ours: float, ref: float, unit: str = "s", scale: float = 1.0) -> str:
    return (f"{name:<44} ours {ours * scale:10.3f} {unit:<3} ref {ref * scale:10.3f} {unit:<3} "
            f"ratio {ours / ref:7.2f}x")
