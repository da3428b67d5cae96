"""Shared fixtures: fresh kernels per test, leak checks at teardown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import rumpkernel
from rumpkernel import SimHost


def leak_report(k: rumpkernel.Kernel, baseline: dict) -> list[str]:
    s = k.statistics()
    problems = []
    for key in ("lwps", "processes", "open_files"):
        if s[key] != baseline[key]:
            problems.append(f"{key}: {baseline[key]} at boot, {s[key]} at teardown")
    if "vnodes_referenced" in s and s["vnodes_referenced"] != baseline.get("vnodes_referenced"):
        problems.append(f"referenced vnodes: {baseline.get('vnodes_referenced')} at boot, "
                        f"{s['vnodes_referenced']} at teardown")
    return problems


def halt_report(k: rumpkernel.Kernel) -> list[str]:
    """After halt every accounted byte must be back: caches dropped, file systems unmounted."""
    mem = k.statistics()["memory"]
    if mem["in_use"]:
        return [f"{mem['in_use']} bytes of kernel memory still accounted after halt: "
                f"{mem['by_tag']}"]
    return []


def checked(k: rumpkernel.Kernel) -> Iterator[rumpkernel.Kernel]:
    """Yield ``k``; afterwards fail on leaked lwps, processes, open files, vnode references or
    kernel memory (checked again after halt)."""
    baseline = k.statistics()
    yield k
    if not k.dead:
        problems = leak_report(k, baseline)
        k.halt()
        problems += halt_report(k)
        assert not problems, "kernel leaked: " + "; ".join(problems)


@pytest.fixture
def kernel() -> Iterator[rumpkernel.Kernel]:
    """A fresh kernel with every component on the deterministic sim host."""
    yield from checked(rumpkernel.boot(SimHost(seed=1234)))


@pytest.fixture
def posix_kernel() -> Iterator[rumpkernel.Kernel]:
    """A fresh kernel with every component on the real host."""
    yield from checked(rumpkernel.boot())
