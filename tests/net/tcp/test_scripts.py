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


def test_scripts_exercise_every_state_transition(monkeypatch) -> None:
    """Every entry of the transition table (tcp_fsm.TRANSITIONS) is taken by some script."""
    from rumpkernel.net.inet import tcp_engine, tcp_fsm, tcp_listener

    seen = set()
    real = tcp_fsm.next_state

    def recording(state, event):
        seen.add((state, event))
        return real(state, event)

    for module in (tcp_fsm, tcp_engine, tcp_listener):
        monkeypatch.setattr(module, "next_state", recording)
    for path in SCRIPTS:
        run_file(path)
    missing = [f"{s.name} --{e.value}-->" for s, e in tcp_fsm.TRANSITIONS if (s, e) not in seen]
    assert not missing, missing
