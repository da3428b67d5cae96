from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rumpkernel.testing.plugin import checked
from tests.fs.drivers import DRIVERS, FsEnv


@pytest.fixture(scope="session")
def rump_server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One real rump_server process (every component) for the suite's process-mode runs."""
    from tests.remote.harness import ServerProcess

    srv = ServerProcess(f"unix://{tmp_path_factory.mktemp('fsproc')}/rump.sock")
    yield srv
    assert srv.stop() == 0


# every driver through a local client and through a remote (sysproxy) client served in-process;
# tmpfs also through a real rump_server process
CLIENTS = ("local", "remote", "process")


@pytest.fixture(params=[(d, c) for d in sorted(DRIVERS) for c in CLIENTS
                        if c != "process" or d == "tmpfs"],
                ids=lambda p: p[0] if p[1] == "local" else f"{p[0]}-{p[1]}")
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FsEnv]:
    driver, client = request.param
    env = DRIVERS[driver](tmp_path, posix=client != "local")
    checks = checked(env.k)
    next(checks)                      # the baseline is taken before any connection exists
    if client == "remote":
        env.serve_remote(tmp_path)
    elif client == "process":
        env.serve_process(request.getfixturevalue("rump_server_process"))
    yield env
    env.close_remote()
    for _ in checks:
        pass
