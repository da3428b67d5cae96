"""Crash-point tests: tests marked ``slow`` (every crash point, or >= 1,000 states per
workload) run only when asked for: ``-m slow`` or RUMPKERNEL_SLOW=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or "") or os.environ.get("RUMPKERNEL_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or RUMPKERNEL_SLOW=1")
    here = Path(__file__).parent
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)
