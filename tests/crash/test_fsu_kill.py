"""Whole-process crashes (issue #15): ``fsu put -r HOST_DIRS... IMAGE /copy`` as a real process,
SIGKILLed at seeded random moments, on ext4, ext3, ext2 and FAT32 (``testing/killbed.py``).
The image already holds a file and an older version of half the tree under /copy: fsu
creates new files and replaces old ones (a rename over them frees their blocks).

What must hold after each kill:
- the image is consistent: ext3/4 -- after journal replay (e2fsck's, and ours: a read-write
  mount and unmount) ``e2fsck -fn`` is clean; ext2 -- ``e2fsck -fy`` repairs only leaks and
  counts, never a block claimed twice, and is ``-fn`` clean after; FAT -- ``fsck.fat -n`` finds
  only leaked clusters, counts and the dirty bit -- never a file and its own fsu temporary
  sharing a chain (the temporary -> final rename is one directory-sector write on FAT);
- the file that was in the image before reads back exactly;
- every file under its final name is complete, the old version or the new one (fsu writes a
  temporary and renames it in place);
- with ``--sync`` (every other kill), every file ``fsu put -v`` named on stderr (it names a
  file once it is durable) is there with its new contents.  Without ``--sync`` fsu promises no
  file until it exits: which files got there is up to the file system's commits.

Reads go through our driver (fresh kernel, read-only: an ext journal replays in memory) and,
for a sample of the ext kills, through a Linux loop mount (root only).
3 kills per file system by default (one with ``--sync``); 60 each (half with it) behind
``-m slow``.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rumpkernel.testing import killbed

FSTYPES = ("ext4", "ext3", "ext2", "fat32")
KEEP = "/keep.bin"
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("mke2fs", "e2fsck",
                                                                  "mkfs.fat", "fsck.fat")),
                                reason="e2fsprogs and dosfstools")
STATS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def _tree(root: Path, rnd: random.Random, dirs: int = 8) -> dict[str, bytes]:
    files = {}
    for d in range(dirs):
        for f in range(30):
            rel = f"/dir {d}/file {f} with a long name.bin"
            files[rel] = rnd.randbytes(rnd.choice((0, 1, 700, 4096, 5000, 30_000)))
            (root / rel[1:]).parent.mkdir(parents=True, exist_ok=True)
            (root / rel[1:]).write_bytes(files[rel])
    return files


def _mkfs(img: Path, fstype: str) -> None:
    if fstype == "fat32":
        subprocess.run(["mkfs.fat", "-C", "-F", "32", str(img), "40000"], check=True,
                       capture_output=True)
        return
    block = {"ext4": "4096", "ext3": "2048", "ext2": "1024"}[fstype]
    subprocess.run(["mke2fs", "-q", "-F", "-t", fstype, "-b", block, "-E",
                    "lazy_itable_init=0", str(img), "48M"], check=True, capture_output=True)


def _fsu(*args: str) -> list[str]:
    return [sys.executable, "-m", "rumpkernel.apps.fsu", *args]


class Bed:
    """The host tree, a base image per file system (with KEEP in it), and how long a whole
    ``fsu put -r`` takes there, with and without ``--sync`` (the spans kill moments are
    drawn from)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        rnd = random.Random(5)
        self.files = _tree(base / "tree", rnd)
        self.old = _tree(base / "old", rnd, dirs=4)    # in the image before: replaced
        self.keep = rnd.randbytes(50_000)
        (base / "keep.bin").write_bytes(self.keep)
        self.images: dict[str, bytes] = {}
        self.span: dict[tuple[str, bool], float] = {}

    def argv(self, img: Path, sync: bool) -> list[str]:
        """``fsu put -r -v [--sync] IMAGE tree/dir* /copy``: into the existing /copy, over
        the old versions of the first four directories."""
        dirs = sorted(str(p) for p in (self.base / "tree").iterdir())
        return _fsu("put", "-r", "-v", *(["--sync"] if sync else []), str(img), *dirs, "/copy")

    def image(self, fstype: str) -> bytes:
        if fstype not in self.images:
            img = self.base / f"base-{fstype}.img"
            _mkfs(img, fstype)
            subprocess.run(_fsu("put", str(img), str(self.base / "keep.bin"), KEEP),
                           env=killbed.python_env(), check=True, capture_output=True)
            subprocess.run(_fsu("put", "-r", str(img), str(self.base / "old"), "/copy"),
                           env=killbed.python_env(), check=True, capture_output=True)
            self.images[fstype] = img.read_bytes()
            full = self.base / f"full-{fstype}.img"
            for sync in (False, True):
                full.write_bytes(self.images[fstype])
                t0 = time.monotonic()
                subprocess.run(self.argv(full, sync),
                               env=killbed.python_env(), check=True, capture_output=True,
                               timeout=300)
                self.span[fstype, sync] = time.monotonic() - t0
            full.unlink()
        return self.images[fstype]


@pytest.fixture(scope="module")
def bed(tmp_path_factory) -> Bed:
    return Bed(tmp_path_factory.mktemp(f"fsukill{os.getpid()}"))


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".fsutmp")


def kill_once(bed: Bed, fstype: str, delay: float, sync: bool, n: int,
              linux: bool) -> list[str]:
    """One kill; the problems found ([] = fine)."""
    img = bed.base / f"kill-{fstype}-{os.getpid()}.img"
    img.write_bytes(bed.image(fstype))
    try:
        k = killbed.run_killed(bed.argv(img, sync), delay, wait_line=False)
        reported = {ln.split(": ", 1)[1] for ln in k.err if ln.startswith("fsu put: /copy/")}
        j = killbed.judge(img, fstype, bed.base)     # FAT: no rename window
        problems = list(j.problems)
        got = killbed.read_tree(j.readable or img, fstype, skip=_is_temp)
        problems += _check(bed, got, reported if sync else set())
        if linux and fstype != "fat32" and os.geteuid() == 0:
            problems += _check_linux(bed, j.readable or img, reported if sync else set())
        _count(fstype, k, j, {p: d for p, d in got.items() if d == bed.files.get(p[5:])}, sync,
               problems)
        return [f"kill {n} ({fstype}, {delay:.2f} s{', --sync' if sync else ''}): {p}"
                for p in problems]
    finally:
        img.unlink(missing_ok=True)
        for leftover in bed.base.glob(f"killbed-{os.getpid()}-*"):
            leftover.unlink()


def _check(bed: Bed, got: dict, reported: set[str]) -> list[str]:
    problems = []
    if got.get(KEEP) != bed.keep:
        problems.append(f"{KEEP} changed")
    for path, data in got.items():
        if path.startswith("/copy/") and data not in (bed.files.get(path[5:]),
                                                      bed.old.get(path[5:])):
            problems.append(f"{path}: {len(data) if isinstance(data, bytes) else data}, "
                            "neither the source's nor the old version")
    for path in sorted(reported):
        if path[5:] in bed.files and got.get(path) != bed.files[path[5:]]:
            problems.append(f"{path}: reported durable, missing or the old version")
    return problems[:20]


def _check_linux(bed: Bed, image: Path, reported: set[str]) -> list[str]:
    from tests.ext2.kimages import loop_mounted

    copy = bed.base / f"linux-{os.getpid()}.img"
    shutil.copyfile(image, copy)                   # Linux replays the journal on its copy
    problems = []
    try:
        with loop_mounted(copy, readonly=False) as mnt:
            if (mnt / KEEP[1:]).read_bytes() != bed.keep:
                problems.append(f"Linux: {KEEP} changed")
            for rel, data in bed.files.items():
                p = mnt / "copy" / rel[1:]
                if p.exists() and p.read_bytes() not in (data, bed.old.get(rel)):
                    problems.append(f"Linux: /copy{rel}: neither the source's nor the old")
                elif f"/copy{rel}" in reported and (not p.exists() or p.read_bytes() != data):
                    problems.append(f"Linux: /copy{rel}: reported durable, missing or old")
    finally:
        copy.unlink()
    return problems[:20]


def _count(fstype: str, k: killbed.Killed, j: killbed.Judged, got: dict[str, bytes],
           sync: bool, problems: list[str]) -> None:
    c = STATS[fstype]
    c["kills"] += 1
    c["killed while running"] += k.alive
    copied = sum(p.startswith("/copy/") for p in got)     # got: the new versions only
    c["files found after kills"] += copied
    c["kills mid-copy"] += bool(k.alive and copied)
    c["with --sync"] += sync
    c["kills with repairs"] += bool(j.repairs)
    c["failed kills"] += bool(problems)
    for kind in killbed.repair_kinds(j) if j else ():
        c[f"repair: {kind}"] += 1


def run_kills(bed: Bed, fstype: str, count: int, seed: int) -> list[str]:
    bed.image(fstype)
    rnd = random.Random(seed)
    problems = []
    for n in range(count):
        sync = n % 2 == 1
        delay = rnd.uniform(0.3, 1.05) * bed.span[fstype, sync]   # fsu starts in ~0.3 s
        problems += kill_once(bed, fstype, delay, sync, n, linux=n % 4 == 0)
    return problems


@pytest.mark.parametrize("fstype", FSTYPES)
def test_fsu_put_killed_at_random_moments(bed: Bed, fstype: str) -> None:
    problems = run_kills(bed, fstype, 3, seed=1)
    assert not problems, "\n".join(problems[:30])


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("fstype", FSTYPES)
def test_fsu_put_killed_sixty_times(bed: Bed, fstype: str) -> None:
    problems = run_kills(bed, fstype, 60, seed=2)
    print(f"\n{fstype}: {dict(STATS[fstype])}")
    assert not problems, "\n".join(problems[:30])
