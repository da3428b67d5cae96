"""Whole-process crashes (issue #15): ``fsu put -r`` into a FAT32 image killed with SIGKILL at
random moments.  A killed process leaves the image as a prefix of its writes (the host kept
every write it was given): it must pass ``fsck.fat -n`` with only crash leftovers (leaked
clusters, counts, the dirty bit), a file that was in the image before reads back exactly, and
every file that reached its final name is complete (fsu installs each file under a temporary
name and renames it into place)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rumpkernel.testing import crashbed
from rumpkernel.vfs.bio import MemoryDevice
from tests.msdos.helpers import HAVE_TOOLS, MiniVfs, mkfs, mount_dev

pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="dosfstools")
SRC = Path(__file__).resolve().parents[2] / "src"
ENV = dict(os.environ, PYTHONPATH=str(SRC), TZ="UTC", LC_ALL="C", FSU_PROGRESS="0")


def _fsu(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rumpkernel.apps.fsu", *args], env=ENV,
                          capture_output=True, timeout=timeout, check=True)


def _tree(root: Path, rnd: random.Random) -> dict[str, bytes]:
    files = {}
    for d in range(5):
        for f in range(10):
            rel = f"dir {d}/file {f} with a long name.bin"
            files[rel] = rnd.randbytes(rnd.randrange(0, 30_000))
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(files[rel])
    return files


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp(f"fatkill{os.getpid()}")
    rnd = random.Random(5)
    files = _tree(base / "tree", rnd)
    img = mkfs(base / "base.img", 40000, "-F", "32")
    keep = rnd.randbytes(50_000)
    (base / "keep.bin").write_bytes(keep)
    _fsu("put", str(img), str(base / "keep.bin"), "/keep.bin")
    t0 = time.monotonic()
    full = base / "full.img"
    full.write_bytes(img.read_bytes())
    _fsu("put", "-r", str(full), str(base / "tree"), "/copy")
    return base, img.read_bytes(), files, keep, time.monotonic() - t0


def _kill_run(setup, delay: float, n: int) -> list[str]:
    base, image, files, keep, _ = setup
    img = base / f"kill{n}.img"
    img.write_bytes(image)
    p = subprocess.Popen([sys.executable, "-m", "rumpkernel.apps.fsu", "put", "-r", str(img),
                          str(base / "tree"), "/copy"], env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait(timeout=60)
    data = bytearray(img.read_bytes())
    img.unlink()
    problems = crashbed.fsck_fat(data)
    v = MiniVfs(mount_dev(MemoryDevice(data), readonly=True))
    if v.read("keep.bin") != keep:
        problems.append("keep.bin changed")
    got = v.walk("copy") if "copy" in v.listdir("") else {}
    for path, content in got.items():
        rel = path.removeprefix("copy/")
        if content is None or rel.endswith(".fsutmp"):
            continue
        if files.get(rel) != content:
            problems.append(f"{rel}: {len(content)} bytes, not the source's")
    return problems


def _delays(setup, count: int, seed: int) -> list[float]:
    total = setup[4]
    rnd = random.Random(seed)
    return [rnd.uniform(0.05, total * 1.1) for _ in range(count)]


def test_fsu_put_killed_at_random_moments(setup) -> None:
    bad = {d: p for n, d in enumerate(_delays(setup, 5, 1)) if (p := _kill_run(setup, d, n))}
    assert not bad, bad


@pytest.mark.slow
def test_fsu_put_killed_fifty_times(setup) -> None:
    bad = {d: p for n, d in enumerate(_delays(setup, 60, 2)) if (p := _kill_run(setup, d, n))}
    assert not bad, bad
