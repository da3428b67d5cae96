"""Fixtures for sockin: kernels whose AF_INET/AF_INET6 sockets are the host's, seen through a
local or a remote client (the ``knet`` of tests/net, so its socket tests run here unchanged),
each test inside a private network namespace of its own (root: parallel runs never fight over
port numbers, and the namespace's ephemeral ports are BSD's 49152-65535 as the suite expects;
without root, the host's namespace)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import rumpkernel
from rumpkernel.testing import netns
from tests.net.conftest import NetView, fam, views_of  # noqa: F401  (fam: the suite's)

SOCKIN = ["all", "net_sockin"]
EPHEMERAL = (49152, 65535)         # the kernel stack's (BSD's) range, so the suite's checks hold
_NETNS = netns.available()


@pytest.fixture
def hostns() -> Iterator[bool]:
    """This test's thread in a private network namespace (True) or the host's (False)."""
    if not _NETNS:
        yield False
        return
    with netns.private_netns(ports=EPHEMERAL):
        yield True


def boot_sockin(**kw: object) -> rumpkernel.Kernel:
    return rumpkernel.boot(components=SOCKIN, **kw)


@pytest.fixture(params=["local", "remote"])
def knet(request: pytest.FixtureRequest, tmp_path: Path, hostns: bool) -> Iterator[NetView]:
    """A fresh sockin kernel as a local or a remote client."""
    yield from views_of(boot_sockin(hostname="knet"), request.param, tmp_path)
