"""Whole-process crashes (issue #15): a program writing an ext4 image through our kernel
(``python -m rumpkernel.testing.killbed local IMAGE``: churn plus fsync'd files) is killed with
SIGKILL at a random moment.  Every write it issued reached the host file, so this is the crash a
journal must survive without a power cut: after replay the image is clean for e2fsck (its replay
and ours), and every file the program had fsync'd reads back exactly -- through our driver and
through a Linux loop mount.  (``tests/crash/`` does the same for ``fsu put`` and ``rump_server``
on every file system.)"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from rumpkernel.testing import killbed

from .conftest import mke2fs
from .kimages import loop_mounted

pytestmark = [pytest.mark.oracle, pytest.mark.root]


def run_and_kill(img: Path, rng: random.Random) -> int:
    """The last index the child reported as fsync'd (-1: none) when it was killed (it must
    still have been running)."""
    k = killbed.run_killed([sys.executable, "-m", "rumpkernel.testing.killbed", "local",
                            str(img)], rng.uniform(0.0, 1.2))
    assert k.alive, f"the writer died by itself: {k.err[-5:]}"
    return int(k.out[-1])


def check(img: Path, synced: int, tmp: Path, linux: bool) -> None:
    j = killbed.judge(img, "ext4", tmp)
    assert not j.problems, "\n".join(j.problems)
    got = killbed.read_tree(img, "ext4")            # our own replay (into memory)
    assert not killbed.broken_promises(got, synced, "ours")
    if linux:                                        # Linux's replay (on another copy)
        theirs = tmp / "linux.img"
        theirs.write_bytes(img.read_bytes())
        with loop_mounted(theirs, readonly=False) as mnt:
            got = {p: (mnt / p[1:]).read_bytes() for p in killbed.promised(synced)}
        assert not killbed.broken_promises(got, synced, "Linux")


def kills(tmp_path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    for n in range(count):
        img = mke2fs(tmp_path / "k.img", "ext4", "32M", None, "-b", "1024", "-I", "256")
        synced = run_and_kill(img, rng)
        check(img, synced, tmp_path, linux=n % 3 == 0)


def test_killed_writer_leaves_a_replayable_image(tmp_path):
    kills(tmp_path, 6, seed=1)


@pytest.mark.slow
def test_killed_writer_soak(tmp_path):
    kills(tmp_path, 60, seed=2)
