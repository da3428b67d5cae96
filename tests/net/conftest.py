"""Fixtures for the network tests: one kernel seen through a local or a remote (sysproxy)
client, so every socket test runs both ways (DESIGN: every socket test x local and remote)."""

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
    k = rumpkernel.boot(hostname="knet")
    baseline = k.statistics()
    if request.param == "local":
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


@pytest.fixture(scope="module")
def fuzz_kernel() -> Iterator[tuple[Any, Any]]:
    """One sim kernel with wire0 up, shared by a module's hypothesis examples."""
    from rumpkernel.testing import netkit

    _world, (k,) = netkit.sim_kernels(99, ["fz"])
    netkit.plug(k, "wire0", "fuzz-hub", "10.99.0.2/24")
    yield k, k.net.interfaces["wire0"]
    k.halt()
    assert not k.panicked
