"""Whole-process crashes (issue #15): a program writing an ext4 image through our kernel is
killed with SIGKILL at a random moment.  Every write it issued reached the host file, so this
is the crash a journal must survive without a power cut: after replay the image is clean for
e2fsck, and every file the program had fsync'd reads back exactly -- through our driver and
through a Linux loop mount."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import mke2fs, mounted, resolve
from .kimages import loop_mounted

pytestmark = [pytest.mark.oracle, pytest.mark.root]

CHILD = r"""
import os, sys
import rumpkernel
k = rumpkernel.boot()
k.mount_image(sys.argv[1], "/m")
s = k.sys
i = 0
while True:
    body = (f"file {i} ".encode() * (1 + i * 37 % 900))
    fd = s.open(f"/m/tmp{i}", os.O_CREAT | os.O_WRONLY, 0o644)     # churn, never synced
    s.write(fd, body[::-1])
    s.close(fd)
    if i % 3 == 0:
        s.mkdir(f"/m/dir{i}")
    if i:
        s.rename(f"/m/tmp{i - 1}", f"/m/moved{i % 5}")   # over an older one: frees it
    fd = s.open(f"/m/f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
    s.write(fd, body)
    s.fsync(fd)
    s.close(fd)
    print(i, flush=True)
    i += 1
"""


def body(i: int) -> bytes:
    return f"file {i} ".encode() * (1 + i * 37 % 900)


def run_and_kill(img: Path, rng: random.Random) -> int:
    """The last index the child reported as fsync'd (-1: none) when it was killed (it must
    still have been running)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(img)], stdout=subprocess.PIPE,
                             env=env, text=True)
    try:
        first = child.stdout.readline()            # running: then let it go on a while
        assert first, "the writer did not start"
        time.sleep(rng.uniform(0.0, 1.2))
        alive = child.poll() is None
    finally:
        os.kill(child.pid, signal.SIGKILL)
        out = child.communicate(timeout=30)[0]
    assert alive, "the writer died by itself"
    lines = (first + out).split()
    return int(lines[-1]) if lines else -1


def check(img: Path, synced: int, tmp: Path, linux: bool) -> None:
    copy = tmp / "replayed.img"
    copy.write_bytes(img.read_bytes())
    subprocess.run(["e2fsck", "-E", "journal_only", "-y", str(copy)], capture_output=True)
    res = subprocess.run(["e2fsck", "-fn", str(copy)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-1500:]
    with mounted(img, readonly=True) as fs:          # our own replay (into memory)
        for i in range(synced + 1):
            node = resolve(fs, f"/f{i}")
            assert fs.read(node, 0, node.size) == body(i), f"f{i}"
    if linux:                                        # Linux's replay (on another copy)
        theirs = tmp / "linux.img"
        theirs.write_bytes(img.read_bytes())
        with loop_mounted(theirs, readonly=False) as mnt:
            for i in range(synced + 1):
                assert (mnt / f"f{i}").read_bytes() == body(i), f"f{i} (Linux)"


def kills(tmp_path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    for n in range(count):
        img = mke2fs(tmp_path / "k.img", "ext4", "32M", None, "-b", "1024", "-I", "256")
        synced = run_and_kill(img, rng)
        assert synced >= 0
        check(img, synced, tmp_path, linux=n % 3 == 0)


def test_killed_writer_leaves_a_replayable_image(tmp_path):
    kills(tmp_path, 6, seed=1)


@pytest.mark.slow
def test_killed_writer_soak(tmp_path):
    kills(tmp_path, 60, seed=2)
