"""The packetdrill-style script suite (tests/net/tcp/scripts/*.pkt) against a whole kernel over
IPv6 (testing/packetdrill/kernel6_target.py): the same scripts, the peer an IPv6 neighbour."""

from __future__ import annotations

import pytest

from rumpkernel.testing.packetdrill import run_file
from rumpkernel.testing.packetdrill.kernel6_target import Kernel6Target
from tests.net.tcp.test_scripts import SCRIPTS


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_over_ipv6(path) -> None:
    result = run_file(path, Kernel6Target)
    assert result.events > 0


def test_the_kernel_sent_ipv6() -> None:
    """The target is what it says: the SYN-ACK left as an IPv6 datagram from pd0."""
    from rumpkernel.testing.packetdrill.runner import parse_script, run_script

    path = next(p for p in SCRIPTS if p.stem == "passive-handshake")
    t = Kernel6Target()
    assert t.k.net.interfaces["pd0"].in6 is not None
    assert "tcp6" not in t.k.net.stats                          # nothing yet
    run_script(parse_script(path.read_text(), path.name), t)    # closes the target
    st = t.k.net.stats
    assert st["tcp6"]["ipackets"] >= 2 and st["tcp6"]["opackets"] >= 1
