from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import checked
from tests.fs.drivers import DRIVERS, FsEnv


@pytest.fixture(params=sorted(DRIVERS))
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FsEnv]:
    env = DRIVERS[request.param](tmp_path)
    for _ in checked(env.k):
        yield env
