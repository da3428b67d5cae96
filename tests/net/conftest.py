"""Fixtures for the network tests: one kernel seen through a local or a remote (sysproxy)
client, so every socket test runs both ways (DESIGN: every socket test x local and remote);
``fam``: the address family a family-neutral socket test runs over (IPv4 and IPv6)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rumpkernel
from rumpkernel.client.socket import SocketModule
from rumpkernel.testing.plugin import halt_report


def leak_report(k: Any, baseline: dict) -> list[str]:
    """Leaked processes, files or client lwps (kernel threads the stack started on demand --
    softint, callouts, receive threads -- are not leaks)."""
    s = k.statistics()
    out = []
    for key in ("processes", "open_files"):
        if s[key] != baseline[key]:
            out.append(f"{key}: {baseline[key]} at boot, {s[key]} at teardown")
    if s["lwps"] - s["kthreads"] != baseline["lwps"] - baseline["kthreads"]:
        out.append(f"lwps: {baseline['lwps']} at boot, {s['lwps']} at teardown")
    if s.get("net", {}).get("sockets", 0):
        out.append(f"{s['net']['sockets']} sockets open at teardown")
    return out


class NetView:
    """``k``: the kernel; ``sys``/``socket``: the client view under test (local or remote)."""

    def __init__(self, k: Any, mode: str, sys: Any, remote: Any = None) -> None:
        self.k = k
        self.mode = mode
        self.sys = sys
        self.socket = SocketModule(sys)
        self.remote = remote


@pytest.fixture(params=["local", "remote"])
def knet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NetView]:
    """A fresh posix-host kernel with every component, as a local or a remote client."""
    yield from views_of(rumpkernel.boot(hostname="knet"), request.param, tmp_path)


def views_of(k: Any, mode: str, tmp_path: Path) -> Iterator[NetView]:
    """The kernel as a ``mode`` ("local"/"remote") client for one test; halted after it, and
    the test fails if it leaked (the knet fixtures' body, shared with sockin's)."""
    baseline = k.statistics()
    if mode == "local":
        yield NetView(k, "local", k.sys)
        problems = leak_report(k, baseline) if not k.dead else []
        k.halt()
    else:
        from tests.remote.harness import RemoteView

        view = RemoteView(k, tmp_path)
        try:
            yield NetView(k, "remote", view.sys, view)
        finally:
            view.close()
        problems = []
        k.halt()
    problems += halt_report(k)
    assert not problems, "kernel leaked: " + "; ".join(problems)


class Fam:
    """One address family's names for the suite: ``af(S)``, ``addr(port)`` (the tuple
    getsockname returns), ``text(port)`` (netstat's form), ``proto`` (netstat's name)."""

    def __init__(self, name: str) -> None:
        self.v6 = name == "inet6"
        self.host = "::1" if self.v6 else "127.0.0.1"
        self.proto = "tcp6" if self.v6 else "tcp"

    def af(self, S: Any) -> int:
        return S.AF_INET6 if self.v6 else S.AF_INET

    def addr(self, port: int) -> tuple:
        return (self.host, port, 0, 0) if self.v6 else (self.host, port)

    def text(self, port: int) -> str:
        return f"[{self.host}]:{port}" if self.v6 else f"{self.host}:{port}"

    def __repr__(self) -> str:
        return "inet6" if self.v6 else "inet"


@pytest.fixture(params=["inet", "inet6"])
def fam(request: pytest.FixtureRequest) -> Fam:
    return Fam(request.param)


@pytest.fixture(scope="module")
def fuzz_kernel() -> Iterator[tuple[Any, Any]]:
    """One sim kernel with wire0 up, shared by a module's hypothesis examples."""
    from rumpkernel.testing import netkit

    _world, (k,) = netkit.sim_kernels(99, ["fz"])
    netkit.plug(k, "wire0", "fuzz-hub", "10.99.0.2/24")
    yield k, k.net.interfaces["wire0"]
    k.halt()
    assert not k.panicked
