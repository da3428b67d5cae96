from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import halt_report, leak_report
from tests.fs.drivers import DRIVERS, FsEnv


@pytest.fixture(params=sorted(DRIVERS))
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FsEnv]:
    env = DRIVERS[request.param](tmp_path)
    baseline = env.k.statistics()
    yield env
    k = env.k
    if not k.dead:
        problems = leak_report(k, baseline)
        k.halt()
        problems += halt_report(k)
        assert not problems, "kernel leaked: " + "; ".join(problems)
