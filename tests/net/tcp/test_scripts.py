"""The packetdrill-style script suite (tests/net/tcp/scripts/*.pkt) against the engine target."""

from __future__ import annotations

from pathlib import Path

import pytest

from rumpkernel.testing.packetdrill import run_file

SCRIPTS = sorted((Path(__file__).parent / "scripts").glob("*.pkt"))


def test_there_are_enough_scripts() -> None:
    assert len(SCRIPTS) >= 60


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script(path: Path) -> None:
    result = run_file(path)
    assert result.events > 0
