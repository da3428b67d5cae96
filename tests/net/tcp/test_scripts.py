"""The packetdrill-style script suite (tests/net/tcp/scripts/*.pkt) against both targets: the
engine alone, and a whole kernel on the sim host (socket layer, TCP, IPv4, an interface)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rumpkernel.testing.packetdrill import EngineTarget, run_file
from rumpkernel.testing.packetdrill.kernel_target import KernelTarget

SCRIPTS = sorted((Path(__file__).parent / "scripts").glob("*.pkt"))


def test_there_are_enough_scripts() -> None:
    assert len(SCRIPTS) >= 60


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
@pytest.mark.parametrize("target", [EngineTarget, KernelTarget], ids=["engine", "kernel"])
def test_script(path: Path, target) -> None:
    result = run_file(path, target)
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
