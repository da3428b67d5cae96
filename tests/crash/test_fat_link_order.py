"""FAT chain growth under crashes (issue #15; found by ``test_fsu_kill``: a SIGKILLed
``fsu put --sync`` left a directory whose chain ran into a free cluster, so our driver refused
the directory -- every file fsync'd in it unreadable -- and ``fsck.fat`` had to cut the chain).

When a chain grows, the new clusters' entries (their links and end mark) must be on disk
before the entry of the old last cluster points at them: a crash between the two may leak the
new clusters, never link a chain into a free cluster.  The old code wrote the dirty FAT sectors
in ascending order, so a link in a lower sector than its new cluster's end mark reached the
disk first.  The workload grows a directory and an appending log after other files took the
clusters next to them (so the new clusters lie in other FAT sectors); every crash point, in
issue order (what a SIGKILL leaves) and reordered (a power cut), must pass ``fsck.fat -n``
with crash leftovers only and keep every fsync'd file readable through our driver.
"""

from __future__ import annotations

import random

import pytest

from rumpkernel.testing import crashbed
from tests.crash.test_fat_crash import Session, _fresh, _report, _verdicts
from tests.msdos.helpers import HAVE_TOOLS

pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="dosfstools")


def workload_far_links(s: Session) -> None:
    rnd = random.Random(17)
    s.v.mkdir("d")
    s.v.create("log.txt")
    log = rnd.randbytes(300)
    s.append("log.txt", log)
    s.fsync("log.txt", log, prefix=True)
    s.v.create("filler.bin", rnd.randbytes(70_000))      # the clusters after d and the log
    s.fs.sync()
    more = rnd.randbytes(2500)                           # the log grows into far clusters
    s.append("log.txt", more)
    log += more
    s.fsync("log.txt", log, prefix=True)
    for i in range(8):                                   # d grows past its first cluster
        path = f"d/file number {i} with a long name.txt"
        data = rnd.randbytes(100 + 50 * i)
        s.v.create(path, data)
        s.fsync(path, data)
    s.fs.unmount()


@pytest.fixture(scope="module")
def recorded() -> Session:
    s = Session(_fresh())
    workload_far_links(s)
    return s


def test_links_reach_the_disk_after_the_clusters_they_link(recorded: Session) -> None:
    s = recorded
    states = [crashbed.CrashState(p, tuple(crashbed._pending(s.rec.log, p, False, 512)),
                                  "in order") for p in crashbed.crash_points(s.rec.log)]
    bad = _verdicts(s, states)
    assert not bad, f"{len(bad)} of {len(states)} in-order crash states: {_report(bad)}"


def test_reordered_writes_never_link_into_a_free_cluster(recorded: Session) -> None:
    s = recorded
    rng = random.Random(5)
    states = crashbed.sample(crashbed.crash_states(s.rec.log, rng, per_point=3), 60, rng)
    bad = _verdicts(s, states)
    assert not bad, f"{len(bad)} of {len(states)} crash states: {_report(bad)}"
