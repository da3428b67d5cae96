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
    problems = _fsck(data)
    v = MiniVfs(mount_dev(MemoryDevice(data), readonly=True))
    if v.read("keep.bin") != keep:
        problems.append("keep.bin changed")
    for rel, content in _installed(v).items():
        if files.get(rel) != content:
            problems.append(f"{rel}: {len(content)} bytes, not the source's")
    return problems


def _allowed(b: crashbed.FsckBlock) -> bool:
    """Crash leftovers, and fsu's rename window: a file and its own temporary name sharing
    the chain (the new entry is durable before the old one goes)."""
    if crashbed.fat_block_allowed(b):
        return True
    if len(b.paths) != 2:
        return False
    a, t = sorted(b.paths, key=lambda p: p.endswith(".fsutmp"))
    head, _, name = a.rpartition("/")
    return (t.startswith(f"{head}/.{name}.") and t.endswith(".fsutmp")
            and set(b.messages) <= {"share clusters.", "Truncating second to 0 bytes."})


def _fsck(data: bytearray) -> list[str]:
    """Unallowed findings; a file fsck truncated because it shared its chain with its own
    temporary name (its data stays under that name) is part of the window too."""
    blocks = crashbed.fsck_fat_blocks(data)
    shared = {p for b in blocks if len(b.paths) == 2 and _allowed(b) for p in b.paths}
    zeroed = {"Truncating file to 0 bytes."}
    return [" / ".join(b.paths + b.messages) for b in blocks
            if not _allowed(b) and not (
                len(b.paths) == 1 and b.paths[0] in shared
                and all(m in zeroed or m.endswith("cluster chain length is 0 bytes.")
                        for m in b.messages))]


def _installed(v: MiniVfs) -> dict[str, bytes]:
    """Files under /copy that reached their final names (temporaries are not opened: one
    may share its chain with its final name, which the driver refuses to load twice)."""
    out: dict[str, bytes] = {}
    if "copy" not in v.listdir(""):
        return out
    for d in v.listdir("copy"):
        for name in v.listdir(f"copy/{d}"):
            if not name.endswith(".fsutmp"):
                out[f"{d}/{name}"] = v.read(f"copy/{d}/{name}")
    return out


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
