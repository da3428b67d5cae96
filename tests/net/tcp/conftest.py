"""TCP tests: soaks marked ``slow`` run only on request (``-m slow`` or RUMPKERNEL_SLOW=1)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if "slow" in (config.getoption("markexpr") or "") or os.environ.get("RUMPKERNEL_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow soak: run with -m slow or RUMPKERNEL_SLOW=1")
    for item in items:
        if "slow" in item.keywords and "tests/net/tcp/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)
