from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import leak_report
from tests.fs.drivers import DRIVERS, FsEnv

# every driver, through a local client and through a remote (sysproxy) client
CLIENTS = ("local", "remote")


@pytest.fixture(params=[(d, c) for d in sorted(DRIVERS) for c in CLIENTS],
                ids=lambda p: p[0] if p[1] == "local" else f"{p[0]}-remote")
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FsEnv]:
    driver, client = request.param
    env = DRIVERS[driver](tmp_path, posix=client == "remote")
    baseline = env.k.statistics()
    if client == "remote":
        env.serve_remote(tmp_path)
    yield env
    env.close_remote()
    k = env.k
    if not k.dead:
        problems = leak_report(k, baseline)
        k.halt()
        assert not problems, "kernel leaked: " + "; ".join(problems)
