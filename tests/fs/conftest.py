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
# tmpfs also through a real rump_server process; tmpfs, ext4 and FAT32 also through the host's
# system calls on a FUSE mount of the kernel (tests/fuse/fsmode.py)
CLIENTS = ("local", "remote", "process", "fuse")
FUSE_DRIVERS = ("tmpfs", "ext4", "fat32")


def _wanted(driver: str, client: str) -> bool:
    if client == "process":
        return driver == "tmpfs"
    if client == "fuse":
        return driver in FUSE_DRIVERS
    return True


@pytest.fixture(params=[(d, c) for d in sorted(DRIVERS) for c in CLIENTS if _wanted(d, c)],
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
    elif client == "fuse":
        from tests.fuse.fsmode import FuseMode

        env.fuse = FuseMode(env, tmp_path)
    try:
        yield env
    finally:
        if env.fuse is not None:
            env.fuse.cleanup()
    env.close_remote()
    for _ in checks:
        pass
