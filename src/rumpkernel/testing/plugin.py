"""The shipped testing kit as a pytest plugin, so an out-of-tree driver's tests reuse what the
project's own tests use: put ``pytest_plugins = ["rumpkernel.testing.plugin"]`` in a conftest
(or run ``pytest -p rumpkernel.testing.plugin``).

Fixtures:
    kernel          a fresh kernel with every component on a deterministic ``SimHost``; at
                    teardown it fails on leaked lwps, processes, descriptors, vnode references
                    or kernel memory (``checked``)
    posix_kernel    the same on the real host (``PosixHost``)
    sim_world       a ``SimWorld`` (seed 1234) for tests that wire several kernels together
    fs              the file-system matrix (``testing/fsmatrix.py``): each driver's test image
                    mounted at /mnt, through each client mode (local, remote, process, fuse)
    rump_server_process   one real rump_server process per session (the ``process`` mode)

Helpers:
    checked(k)               generator: yields ``k``, then checks it leaked nothing and halts it
    leak_report(k, base) / halt_report(k)
    need_tools(*tools)       skip -- or fail where oracles are required -- when a tool is missing
    need_root()              the same for tests that need root (loop mounts, namespaces)

Markers (one policy for all test folders):
    slow                 long soaks and scale runs: run only with ``-m slow`` or RUMPKERNEL_SLOW=1
    root                 needs root: ``need_root()`` applied
    oracle(*tools)       needs native tools: ``need_tools(*tools)`` applied
Where ``RUMPKERNEL_REQUIRE_ORACLES=1`` (the project's test command sets it, since it installs
every tool and runs as root in CI), a missing tool or missing root is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

SLOW_HINT = "slow: run with -m slow or RUMPKERNEL_SLOW=1"


def _required() -> bool:
    return os.environ.get("RUMPKERNEL_REQUIRE_ORACLES") == "1"


def need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    msg = f"needs {', '.join(missing)} (the test command installs them)"
    if _required():
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def need_root() -> None:
    if os.geteuid() == 0:
        return
    if _required():
        pytest.fail("needs root", pytrace=False)
    pytest.skip("needs root")


def leak_report(k: Any, baseline: dict[str, Any]) -> list[str]:
    s = k.statistics()
    problems = []
    for key in ("lwps", "processes", "open_files"):
        if s[key] != baseline[key]:
            problems.append(f"{key}: {baseline[key]} at boot, {s[key]} at teardown")
    if "vnodes_referenced" in s and s["vnodes_referenced"] != baseline.get("vnodes_referenced"):
        problems.append(f"referenced vnodes: {baseline.get('vnodes_referenced')} at boot, "
                        f"{s['vnodes_referenced']} at teardown")
    return problems


def halt_report(k: Any) -> list[str]:
    """After halt every accounted byte must be back: caches dropped, file systems unmounted."""
    mem = k.statistics()["memory"]
    if mem["in_use"]:
        return [f"{mem['in_use']} bytes of kernel memory still accounted after halt: "
                f"{mem['by_tag']}"]
    return []


def checked(k: Any) -> Iterator[Any]:
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
def kernel() -> Iterator[Any]:
    """A fresh kernel with every component on the deterministic sim host."""
    import rumpkernel
    from rumpkernel.hypercall.sim import SimHost

    yield from checked(rumpkernel.boot(SimHost(seed=1234)))


@pytest.fixture
def posix_kernel() -> Iterator[Any]:
    """A fresh kernel with every component on the real host."""
    import rumpkernel

    yield from checked(rumpkernel.boot())


@pytest.fixture
def sim_world() -> Any:
    from rumpkernel.hypercall.sim import SimWorld

    return SimWorld(1234)


def _fs_params() -> list[Any]:
    from rumpkernel.testing.fsmatrix import fs_params

    return fs_params()


def _fs_id(param: Any) -> str:
    from rumpkernel.testing.fsmatrix import fs_id

    return fs_id(param)


@pytest.fixture(params=_fs_params(), ids=_fs_id)
def fs(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    from rumpkernel.testing.fsmatrix import open_fs

    yield from open_fs(request, tmp_path, request.param)


@pytest.fixture(scope="session")
def rump_server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real rump_server process (every component) for the matrix's process-mode runs."""
    from rumpkernel.testing.remote import ServerProcess

    srv = ServerProcess(f"unix://{tmp_path_factory.mktemp('fsproc')}/rump.sock")
    yield srv
    assert srv.stop() == 0


def pytest_configure(config: pytest.Config) -> None:
    for line in ("slow: long soak or scale runs, not in the default test command",
                 "root: needs root (loop mounts, network namespaces)",
                 "oracle(*tools): needs native tools (e2fsprogs, dosfstools, mtools, fuse ...)"):
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or "") or os.environ.get("RUMPKERNEL_SLOW"):
        return
    skip = pytest.mark.skip(reason=SLOW_HINT)
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None:
        need_root()
    for mark in item.iter_markers("oracle"):
        if mark.args:
            need_tools(*mark.args)
